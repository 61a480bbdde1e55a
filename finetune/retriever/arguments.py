"""Typed arguments for ``python -m finetune.retriever.train`` (Tevatron style: model / data / training)."""
from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

KD_LOSS_TYPES = ("m3_kd_loss", "kl_div")
TRAINING_TYPES = ("retrieval", "retrieval_answer", "answer")


@dataclass
class RetrieverModelArguments:
    retriever: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={
        "help": "the retriever to fine-tune: name or path", "aliases": ("model_name_or_path",)})
    pooling_method: str | None = field(default=None, metadata={"help": "cls | mean | last (default: model folder)"})
    normalize_embeddings: bool | None = field(default=None, metadata={"help": "default: model folder, else True"})
    query_instruction: str | None = None
    passage_instruction: str | None = None
    query_instruction_format: str = "{}{}"
    use_lora: bool = field(default=False, metadata={"help": "LoRA for decoder embedders (pooling last)"})
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj"])
    trust_remote_code: bool = False


@dataclass
class RetrieverTrainDataArguments:
    train_data: list[str] = field(default_factory=list, metadata={"help": "JSONL files or folders"})
    train_group_size: int = 8
    query_max_len: int = 64
    passage_max_len: int = 256
    same_dataset_within_batch: bool = False
    eval_dataset: str | None = field(default=None, metadata={
        "help": "BEIR / AIR-Bench folder scored at each epoch's end (RetrievalEvaluator); train or dev, never test",
        "aliases": ("eval_dataset_path",), "path": "dir", "what": "a BEIR / AIR-Bench dataset"})
    eval_split: str = "dev"
    eval_query_ids_file: str | None = field(default=None, metadata={
        "help": "score only these query ids, e.g. rows_from_qrels' heldout_query_ids.txt"})
    eval_max_queries: int | None = None


@dataclass
class RetrieverTrainingArguments(TrainingArguments):
    temperature: float = field(default=0.02, metadata={"help": "τ for query–passage scores", "min_exclusive": 0})
    negatives_cross_device: bool = field(default=False, metadata={"help": "all-gather passages over ranks"})
    use_inbatch_neg: bool = field(default=True, metadata={"help": "other queries' passages as negatives"})
    knowledge_distillation: bool = False
    kd_loss_type: str = field(default="m3_kd_loss", metadata={"help": "m3_kd_loss (reference) | kl_div"})
    teacher_temperature: float = field(default=1.0, metadata={"help": "kl_div only: softmax(t / T)"})
    training_type: str = field(default="retrieval", metadata={"help": "retrieval | retrieval_answer | answer"})
    answer_temperature: float = 0.05
    normalize_answer: bool = field(default=True, metadata={"help": "add MSE(‖a‖, 1) when answers are used"})
    output_dir: str = field(default="runs/retriever")
    dataloader_drop_last: bool = True
    remove_unused_columns: bool = False
    ddp_find_unused_parameters: bool = False
    save_safetensors: bool = True
