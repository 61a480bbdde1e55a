"""Cross-encoder reranker fine-tuning: listwise cross-entropy over one positive + (group − 1) negatives.

    torchrun --nproc_per_node N -m finetune.rerank --config configs/cpu-demo/train_reranker.yaml [--flag value ...]
    python -m finetune.rerank ...                 # one process

Reads the retriever trainer's rows (``{query, pos, neg}`` or Open-Retrievals' ``{query, positive, negative}``),
with the same seeded per-epoch grouping. Starting from a plain encoder adds a fresh one-logit head. The run
resumes from the newest ``checkpoint-*`` in ``output_dir``; the saved folder loads with
``inference.reranker.CrossEncoderReranker`` and ``evaluation.evaluate --rerank``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from finetune.cli import (apply_lora, parse_trainer_args, replica_drift, resume_checkpoint, training_main,
                          write_training_manifest)
from inference.errors import UserError, run_cli
from inference.io import atomic_write_json

from .arguments import RerankerDataArguments, RerankerModelArguments, RerankerTrainingArguments

logger = logging.getLogger(__name__)


def parse(argv: Sequence[str]):
    model_args, data_args, train_args, run_args = parse_trainer_args(
        (RerankerModelArguments, RerankerDataArguments, RerankerTrainingArguments), argv, "python -m finetune.rerank")
    if model_args.model_type not in ("cross-encoder", "colbert", "llm"):
        raise UserError("must be cross-encoder, colbert or llm", field="model_type")
    if data_args.train_group_size < 2:
        raise UserError("must be ≥ 2 (a positive and at least one negative)", field="train_group_size")
    return model_args, data_args, train_args, run_args


def build_model(model_args: RerankerModelArguments):
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from inference.resolver import resolve_model_path

    path = resolve_model_path(model_args.reranker)
    remote = model_args.trust_remote_code
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
        if model_args.model_type == "llm":
            model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=remote)
        elif model_args.model_type == "colbert":
            model = AutoModel.from_pretrained(path, trust_remote_code=remote)
            if getattr(model, "pooler", None) is not None:  # unused by MaxSim; DDP rejects unused parameters
                model.pooler = None
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, trust_remote_code=remote)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model: {str(exc).splitlines()[0]}",
                        field=f"reranker {model_args.reranker}") from None
    if tokenizer.pad_token is None:  # decoder checkpoints
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    if model_args.model_type == "llm" and model_args.use_lora:
        model = apply_lora(model, model_args.lora_rank, model_args.lora_alpha, model_args.lora_dropout,
                           model_args.lora_target_modules)
    return model, tokenizer


def train(model_args, data_args, train_args, run_args) -> dict:
    from finetune.retriever.data import RetrieverCollator, RetrieverTrainDataset, load_train_files
    from finetune.retriever.trainer import EpochCallback

    from .trainer import LLMRerankCollator, RerankerCollator, RerankerTrainer

    use_teacher = train_args.knowledge_distillation
    files = load_train_files(data_args.train_data, need_scores=use_teacher)
    model, tokenizer = build_model(model_args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dataset = RetrieverTrainDataset(files, data_args.train_group_size,
                                    train_args.per_device_train_batch_size * world, train_args.seed, False,
                                    use_teacher)
    if len(dataset) < train_args.per_device_train_batch_size * world:
        raise UserError(f"{len(dataset)} training rows cannot fill one global batch of "
                        f"{train_args.per_device_train_batch_size * world}", field="train_data")
    yes_no = None
    if model_args.model_type == "llm":
        from inference.reranker import yes_no_token_ids

        yes_no = yes_no_token_ids(tokenizer)
        collator = LLMRerankCollator(tokenizer, data_args.max_length, model_args.task_instruction)
    elif model_args.model_type == "colbert":
        collator = RetrieverCollator(tokenizer, data_args.query_max_len, data_args.max_length)
    else:
        collator = RerankerCollator(tokenizer, data_args.max_length)
    trainer = RerankerTrainer(model=model, yes_no_ids=yes_no, args=train_args, train_dataset=dataset,
                              data_collator=collator,
                              processing_class=tokenizer, callbacks=[EpochCallback(dataset)])
    resume = resume_checkpoint(train_args, run_args.auto_resume)
    result = trainer.train(resume_from_checkpoint=resume)
    drift = replica_drift(trainer.model)  # every rank, before rank 0 merges LoRA into its copy
    trainer.save_model(train_args.output_dir)
    if trainer.is_world_process_zero():
        if hasattr(model, "merge_and_unload"):  # LoRA: a plain model that loads without peft, adapters merged
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(train_args.output_dir, safe_serialization=True)
            tokenizer.save_pretrained(train_args.output_dir)
            for name in ("adapter_model.safetensors", "adapter_config.json"):
                (Path(train_args.output_dir) / name).unlink(missing_ok=True)
        # tells inference.reranker.load_reranker which kind of reranker this folder is
        atomic_write_json(Path(train_args.output_dir) / "reranker_config.json",
                          {"kind": model_args.model_type, "max_length": data_args.max_length,
                           "query_max_length": data_args.query_max_len})
    write_training_manifest("train_reranker", trainer, result, model_args, data_args, train_args,
                            {"base": model_args.reranker, "kind": model_args.model_type}, len(dataset),
                            drift)
    return {"global_step": trainer.state.global_step, "train_loss": result.training_loss}


def main(argv: Sequence[str]) -> int:
    return training_main(argv, parse, train, "reranker")


if __name__ == "__main__":
    run_cli(main)
