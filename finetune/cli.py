"""Shared pieces of the ``torchrun -m finetune.<trainer>`` entry points: data file lists, checkpoints, manifests.

Options come from :func:`inference.config.parse_args` (the one option system of every CLI), given the trainer's
model / data / training dataclasses together."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from inference.errors import UserError


@dataclass
class RunArguments:
    auto_resume: bool = field(default=True, metadata={"help": "continue from the newest checkpoint in output_dir"})
    skip_if_complete: bool = field(default=True, metadata={"help": "a finished run (manifest complete) is a no-op"})


def parse_trainer_args(classes: tuple[type, type, type], argv: Sequence[str], prog: str) -> tuple:
    """A trainer's ``(model, data, training, run)`` arguments from one option namespace (the model / data /
    training ``classes`` plus :class:`RunArguments`); every trainer needs ``--train_data``."""
    from inference.config import parse_args

    model_args, data_args, train_args, run_args = parse_args((*classes, RunArguments), argv, prog=prog)
    if not data_args.train_data:
        raise UserError("required", field="train_data")
    return model_args, data_args, train_args, run_args


def data_files(paths: list[str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        out += sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    return out


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` whose ``trainer_state.json`` is whole. The Trainer writes that file last, so a
    checkpoint killed mid-save (model written, state not) is passed over, never resumed from."""
    def complete(path: Path) -> bool:
        try:
            json.loads((path / "trainer_state.json").read_text())
            return True
        except (OSError, ValueError):
            return False

    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if complete(path):
            return str(path)
    return None


def resume_checkpoint(train_args, auto_resume: bool) -> str | None:
    """``--resume_from_checkpoint`` if given, else (auto-resume) the newest complete ``checkpoint-*``."""
    import logging

    resume = train_args.resume_from_checkpoint
    if resume is None and auto_resume and Path(train_args.output_dir).is_dir():
        resume = last_complete_checkpoint(train_args.output_dir)
        if resume:
            logging.getLogger(__name__).info("auto-resuming from %s", resume)
    return resume


def replica_drift(model) -> float:
    """Largest difference between ranks of any parameter tensor's sum (0.0 on one process). Data-parallel replicas
    apply the same averaged gradients, so anything but 0 means gradients were not synchronised (each rank trained
    alone and only rank 0's model was saved). Collective: every rank must call it. ZeRO-3 shards are skipped."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 0.0
    params = [p for p in model.parameters() if not hasattr(p, "ds_id")]
    sums = torch.stack([p.detach().double().sum() for p in params]) if params else torch.zeros(1, dtype=torch.double)
    parts = [torch.empty_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sums)
    return max(float((part - parts[0]).abs().max()) for part in parts)


def write_training_manifest(stage: str, trainer, result, model_args, data_args, train_args, models: dict,
                            rows: int, drift: float) -> None:
    """``manifest.json`` beside the saved model (rank 0 writes it): inputs with hashes, parameters, counts,
    versions, and ``drift`` (:func:`replica_drift`, taken right after training, before rank 0 merges or saves)."""
    import logging
    import os
    from dataclasses import asdict

    from inference.io import file_sha256
    from inference.manifest import write_manifest

    if not trainer.is_world_process_zero():
        return
    if drift > 0:
        logging.getLogger(__name__).error("the %d ranks' models differ after training (largest parameter-sum "
                                          "difference %.3g): gradients were not averaged across ranks",
                                          int(os.environ.get("WORLD_SIZE", "1")), drift)
    write_manifest(train_args.output_dir, stage, "complete",
                   inputs={str(p): file_sha256(p) for p in data_files(data_args.train_data)}, models=models,
                   parameters={"model": asdict(model_args), "data": asdict(data_args),
                               "training": {k: v for k, v in train_args.to_dict().items() if "token" not in k}},
                   world_size=int(os.environ.get("WORLD_SIZE", "1")), replica_drift=drift,
                   counts={"rows": rows, "steps": trainer.state.global_step}, train_loss=result.training_loss,
                   # the RetrievalEvaluatorCallback's records, one per epoch (none without --eval_dataset)
                   evaluation=[h for h in trainer.state.log_history if "evaluator" in h])


def training_main(argv: Sequence[str], parse, train, what: str) -> int:
    """Parse; skip a finished run (its manifest says complete) unless ``--skip_if_complete false``; train."""
    import logging
    import os

    from inference.manifest import is_complete

    model_args, data_args, train_args, run_args = parse(argv)
    if run_args.skip_if_complete and is_complete(train_args.output_dir):  # and its training files unchanged
        logging.getLogger(__name__).info("%s training already complete in %s (--skip_if_complete false to retrain)",
                                         what, train_args.output_dir)
        return 0
    # Seeded before the model is built: a fresh head or LoRA adapters start the same on every run (the Trainer
    # seeds only later, in its constructor).
    from transformers import set_seed

    set_seed(train_args.seed)
    summary = train(model_args, data_args, train_args, run_args)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {summary['global_step']} steps, mean loss {summary['train_loss']:.4f}")
    return 0


def apply_lora(model, rank: int, alpha: int, dropout: float, target_modules: list[str]):
    """Wrap ``model`` with LoRA adapters on those of ``target_modules`` it has (an error if it has none)."""
    from peft import LoraConfig, get_peft_model

    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    targets = [t for t in target_modules if t in names]
    if not targets:
        raise UserError(f"none of {target_modules} are modules of this model", field="lora_target_modules")
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets))
