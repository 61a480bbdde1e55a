"""Retriever fine-tuning (stage F): contrastive + distillation + answer losses with ``transformers.Trainer``.

    torchrun --nproc_per_node N -m finetune.retriever.train --config CONFIG [--flag value ...]
    python -m finetune.retriever.train ...          # one process

CONFIG: a YAML of the options below, e.g. ``runs/cpu-demo-scifact/round_1/configs/train_retriever.yaml``, which
``python -m scripts.self_boost --config configs/cpu-demo/scifact.yaml --emit_commands`` writes from the profile's
``train_retriever`` block (the one place those settings live) and the round's model and rows.

Flags override the YAML; unknown keys are errors. The run resumes automatically from the newest
``checkpoint-*`` in ``output_dir`` (``--auto_resume false`` to start over). The saved model is a
sentence-transformers folder that ``Embedder`` / ``Reinforced_IR_Model`` load with the same pooling.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from finetune.cli import (apply_lora, parse_trainer_args, replica_drift, resume_checkpoint, training_main,
                          write_training_manifest)
from inference.errors import UserError, run_cli

from .arguments import (KD_LOSS_TYPES, TRAINING_TYPES, RetrieverTrainDataArguments, RetrieverModelArguments,
                        RetrieverTrainingArguments)

logger = logging.getLogger(__name__)


def parse(argv: Sequence[str]):
    model_args, data_args, train_args, run_args = parse_trainer_args(
        (RetrieverModelArguments, RetrieverTrainDataArguments, RetrieverTrainingArguments), argv,
        "python -m finetune.retriever.train")
    if train_args.kd_loss_type not in KD_LOSS_TYPES:
        raise UserError(f"must be one of {', '.join(KD_LOSS_TYPES)}", field="kd_loss_type")
    if train_args.training_type not in TRAINING_TYPES:
        raise UserError(f"must be one of {', '.join(TRAINING_TYPES)}", field="training_type")
    if data_args.train_group_size < 1:
        raise UserError("must be ≥ 1", field="train_group_size")
    return model_args, data_args, train_args, run_args


def build_model(model_args: RetrieverModelArguments):
    from transformers import AutoModel, AutoTokenizer

    from inference.embedder import sentence_transformers_defaults
    from inference.resolver import resolve_model_path

    from .modeling import EmbeddingModel

    path = resolve_model_path(model_args.retriever)
    defaults = sentence_transformers_defaults(Path(path), model_args.pooling_method is None) \
        if Path(path).is_dir() else {}
    pooling = model_args.pooling_method or defaults.get("pooling_method", "cls")
    normalize = model_args.normalize_embeddings if model_args.normalize_embeddings is not None else \
        defaults.get("normalize", True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
        backbone = AutoModel.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model: {str(exc).splitlines()[0]}",
                        field=f"retriever {model_args.retriever}") from None
    if pooling == "last":
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    if model_args.use_lora:
        backbone = apply_lora(backbone, model_args.lora_rank, model_args.lora_alpha, model_args.lora_dropout,
                              model_args.lora_target_modules)
    return EmbeddingModel(backbone, pooling, normalize), tokenizer, defaults


def evaluation_callbacks(data_args, collator, seed: int) -> list:
    """A ``RetrievalEvaluatorCallback`` when ``--eval_dataset`` is given (built on every rank: bad input
    stops all of them before training)."""
    if not data_args.eval_dataset:
        return []
    from evaluation.evaluator import RetrievalEvaluator

    from .evaluation import RetrievalEvaluatorCallback

    evaluator = RetrievalEvaluator.from_dataset(data_args.eval_dataset, data_args.eval_split,
                                                data_args.eval_query_ids_file, data_args.eval_max_queries, seed)
    return [RetrievalEvaluatorCallback(evaluator, collator)]


def train(model_args, data_args, train_args, run_args) -> dict:
    from .data import RetrieverCollator, RetrieverTrainDataset, load_train_files
    from .trainer import EpochCallback, RetrieverTrainer

    use_teacher = train_args.knowledge_distillation
    files = load_train_files(data_args.train_data, need_scores=use_teacher)
    model, tokenizer, base_defaults = build_model(model_args)
    # Inference keeps the base model's own max length: training may truncate harder (speed) than retrieval should.
    max_seq_length = base_defaults.get("max_length") or data_args.passage_max_len
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dataset = RetrieverTrainDataset(files, data_args.train_group_size,
                                    train_args.per_device_train_batch_size * world, train_args.seed,
                                    data_args.same_dataset_within_batch, use_teacher)
    if len(dataset) < train_args.per_device_train_batch_size * world:
        raise UserError(f"{len(dataset)} training rows cannot fill one global batch of "
                        f"{train_args.per_device_train_batch_size * world}", field="train_data")
    collator = RetrieverCollator(tokenizer, data_args.query_max_len, data_args.passage_max_len,
                                 model_args.query_instruction or None,
                                 model_args.passage_instruction or None,
                                 model_args.query_instruction_format,
                                 with_answers="answer" in train_args.training_type)
    if train_args.gradient_checkpointing:
        train_args.gradient_checkpointing_kwargs = train_args.gradient_checkpointing_kwargs or {"use_reentrant": False}
    trainer = RetrieverTrainer(model=model, args=train_args, train_dataset=dataset, data_collator=collator,
                               processing_class=tokenizer, max_seq_length=max_seq_length,
                               callbacks=[EpochCallback(dataset), *evaluation_callbacks(data_args, collator,
                                                                                      train_args.seed)])
    resume = resume_checkpoint(train_args, run_args.auto_resume)
    result = trainer.train(resume_from_checkpoint=resume)
    drift = replica_drift(trainer.model)  # every rank, right after training
    trainer.save_model(train_args.output_dir)
    summary = {"global_step": trainer.state.global_step, "train_loss": result.training_loss,
               "log_history": trainer.state.log_history, "resumed_from": resume}
    write_training_manifest("train_retriever", trainer, result, model_args, data_args, train_args,
                            {"base": model_args.retriever, "pooling": model.pooling_method,
                             "normalize": model.normalize}, len(dataset), drift)
    return summary


def main(argv: Sequence[str]) -> int:
    return training_main(argv, parse, train, "retriever")


if __name__ == "__main__":
    run_cli(main)
