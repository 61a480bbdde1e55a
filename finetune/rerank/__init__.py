"""Cross-encoder reranker training: ``torchrun --nproc_per_node N -m finetune.rerank --config …``."""
