"""Generator DPO (stage C) through LLaMA-Factory: write its YAML, run ``llamafactory-cli train`` (LoRA),
``llamafactory-cli export`` (merge), and save the base tokenizer + chat template beside the merged weights.

    python -m finetune.generator.train --config CONFIG [--flag value ...]

CONFIG: a YAML of the options below, e.g. ``runs/cpu-demo-scifact/round_1/configs/train_generator.yaml``, which
``python -m scripts.self_boost --config configs/cpu-demo/scifact.yaml --emit_commands`` writes from the profile's
``train_generator`` block (the one place those settings live) and the round's model and pairs.

Defaults are the paper's: DPO with the sigmoid loss, β 0.1, LoRA r 32 / α 64 on all linear layers, lr 1e-5,
cosine schedule, one epoch. Fixed by default (docs/design.md §10.12): ``val_size 0`` (the reference silently
dropped 5% of the pairs) and no DeepSpeed scheduler overriding the cosine schedule (our ZeRO configs in
``configs/deepspeed/`` carry no scheduler). The merged model loads by path with transformers, vLLM and our
``hf`` backend. A rerun after a crash resumes from LLaMA-Factory's newest checkpoint; a finished run is a no-op.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from data_generation.stage import require_complete_stage
from inference.config import asdict_public, parse_args
from inference.errors import UserError, run_cli
from inference.io import atomic_write_text
from inference.manifest import input_record, is_complete, write_manifest
from inference.resolver import resolve_model_path

logger = logging.getLogger(__name__)
STAGE = "train_generator"
TEMPLATES = (("smollm2", "smollm2"), ("llama-3", "llama3"), ("llama3", "llama3"), ("qwen", "qwen"),
             ("mistral", "mistral"), ("gemma", "gemma"))


@dataclass
class GeneratorTrainArguments:
    """DPO-train the generator on RLRF pairs with LLaMA-Factory, then merge the LoRA adapter."""
    generator: str = field(default="HuggingFaceTB/SmolLM2-135M-Instruct", metadata={
        "help": "the generator to DPO-train: name or path", "aliases": ("model_name_or_path",)})
    output_dir: str = ""
    generator_data_dir: str | None = field(default=None, metadata={"help": "output_dir of generate_generator_data"})
    llamafactory_dataset_dir: str | None = field(default=None, metadata={
        "help": "or: a LLaMA-Factory dataset_dir ...", "aliases": ("dataset_dir",)})
    # LLaMA-Factory's dataset name, not a dataset folder (--dataset elsewhere): a name, not a path (option_checks)
    llamafactory_dataset: str | None = field(default=None, metadata={
        "help": "... and the dataset name in its dataset_info.json", "path": None, "aliases": ("dataset",)})
    template: str = field(default="auto", metadata={"help": "LLaMA-Factory chat template (auto: from the model name)"})
    pref_beta: float = 0.1
    pref_loss: str = "sigmoid"
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_target: str = "all"
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.0
    num_train_epochs: float = 1.0
    max_steps: int | None = None
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    cutoff_len: int = 1024
    bf16: bool = False
    save_steps: int = 500
    logging_steps: int = 1
    deepspeed: str | None = None
    seed: int = 42
    val_size: float = 0.0
    extra: dict | None = field(default=None, metadata={"help": "more LLaMA-Factory train keys, passed through"})
    overwrite: bool = False

    def validate(self) -> None:
        if not self.output_dir:
            raise UserError("required", field="output_dir")
        if not self.generator_data_dir and not (self.llamafactory_dataset_dir and self.llamafactory_dataset):
            raise UserError("give generator_data_dir (stage B output) or llamafactory_dataset_dir + "
                            "llamafactory_dataset",
                            field="generator_data_dir")


def pick_template(name: str, model_path: str) -> str:
    lowered = (name + " " + model_path).lower()
    for needle, template in TEMPLATES:
        if needle in lowered:
            return template
    raise UserError("cannot infer the LLaMA-Factory chat template from the model name; pass --template",
                    field="template")


def llamafactory_cli() -> list[str]:
    """``python -m llamafactory.cli`` in this interpreter when it has LLaMA-Factory (the environment whose pins
    this stage runs under; what the ``llamafactory-cli`` script runs, with the same exit status), else the
    ``llamafactory-cli`` on PATH."""
    if importlib.util.find_spec("llamafactory") is not None:
        return [sys.executable, "-m", "llamafactory.cli"]
    found = shutil.which("llamafactory-cli")
    if not found:
        raise UserError("llamafactory-cli not found: pip install --no-deps llamafactory==0.9.5 (see README)")
    return [found]


def run_llamafactory(command: str, config: dict, config_path: Path) -> None:
    atomic_write_text(config_path, yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "DISABLE_VERSION_CHECK": "1", "LLAMAFACTORY_VERBOSITY": "WARN"}
    env.pop("FORCE_TORCHRUN", None)
    logger.info("llamafactory-cli %s %s", command, config_path)
    proc = subprocess.run([*llamafactory_cli(), command, str(config_path)], env=env)
    if proc.returncode != 0:
        raise UserError(f"llamafactory-cli {command} failed with exit code {proc.returncode} (its output is above)",
                        file=config_path)


def resolve_dataset(args: GeneratorTrainArguments) -> tuple[Path, str, dict]:
    if args.generator_data_dir:
        folder = Path(args.generator_data_dir)
        manifest = require_complete_stage(folder / "train.jsonl", "generate_generator_data")
        info = manifest.get("llamafactory") or {}
        return folder / info.get("dataset_dir", "llamafactory"), info.get("dataset", ""), manifest
    return Path(args.llamafactory_dataset_dir), args.llamafactory_dataset, {}


def dpo_config(args: GeneratorTrainArguments, base: str, template: str, dataset: str, dataset_dir: Path,
               adapter: Path) -> dict:
    """LLaMA-Factory's DPO + LoRA training config."""
    config = {
        "model_name_or_path": base, "stage": "dpo", "do_train": True, "finetuning_type": "lora",
        "lora_target": args.lora_target, "lora_rank": args.lora_rank, "lora_alpha": args.lora_alpha,
        "pref_beta": args.pref_beta, "pref_loss": args.pref_loss, "dataset": dataset,
        "dataset_dir": str(dataset_dir), "template": template, "cutoff_len": args.cutoff_len,
        "overwrite_cache": True, "preprocessing_num_workers": 1, "output_dir": str(adapter),
        "logging_steps": args.logging_steps, "save_steps": args.save_steps, "plot_loss": False,
        "overwrite_output_dir": False, "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "learning_rate": args.learning_rate,
        "num_train_epochs": args.num_train_epochs, "lr_scheduler_type": args.lr_scheduler_type,
        "warmup_ratio": args.warmup_ratio, "bf16": args.bf16, "val_size": args.val_size, "report_to": "none",
        "seed": args.seed, "save_only_model": False,
    }
    if args.max_steps:
        config["max_steps"] = args.max_steps
    if args.deepspeed:
        config["deepspeed"] = args.deepspeed
    config.update(args.extra or {})
    return config


def dataset_entry(dataset_dir: Path, dataset: str) -> dict:
    info_file = dataset_dir / "dataset_info.json"
    if not info_file.is_file():
        raise UserError("dataset_info.json not found", file=info_file)
    entry = yaml.safe_load(info_file.read_text()).get(dataset)
    if entry is None:
        raise UserError(f"dataset {dataset!r} is not in dataset_info.json", file=info_file)
    if not isinstance(entry, dict) or not entry.get("file_name"):
        raise UserError(f"dataset {dataset!r} has no file_name", file=info_file, field="file_name")
    return entry


def export_merged(base: str, adapter: Path, template: str, out: Path, merged: Path) -> None:
    """LoRA merged into the base weights, written beside and renamed into place (never half a model)."""
    tmp = out / ".merged_model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    run_llamafactory("export", {
        "model_name_or_path": base, "adapter_name_or_path": str(adapter), "template": template,
        "finetuning_type": "lora", "export_dir": str(tmp), "export_size": 2, "export_device": "cpu",
        "export_legacy_format": False}, out / "llamafactory_export.yaml")
    save_base_tokenizer(base, tmp)
    os.replace(tmp, merged)


def train(args: GeneratorTrainArguments) -> dict:
    started = time.perf_counter()
    out = Path(args.output_dir)
    merged, adapter = out / "merged_model", out / "adapter"
    params = asdict_public(args)
    if args.overwrite and out.exists():
        shutil.rmtree(out)
    if is_complete(out, parameters=params) and merged.is_dir():
        logger.info("%s already complete in %s", STAGE, out)
        return {"merged_model": str(merged), "skipped": True}
    dataset_dir, dataset, data_manifest = resolve_dataset(args)
    data_file = dataset_dir / dataset_entry(dataset_dir, dataset)["file_name"]
    base = resolve_model_path(args.generator)
    template = args.template if args.template != "auto" else pick_template(args.generator, base)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, STAGE, "running", parameters=params)
    if not (adapter / "adapter_model.safetensors").is_file():
        if adapter.is_dir() and not any(adapter.glob("checkpoint-*")):
            shutil.rmtree(adapter)  # an aborted start with nothing to resume from
        run_llamafactory("train", dpo_config(args, base, template, dataset, dataset_dir, adapter),
                         out / "llamafactory_train.yaml")
    if not (merged / "config.json").is_file():
        export_merged(base, adapter, template, out, merged)
    write_manifest(out, STAGE, "complete", parameters=params, inputs={"dataset": input_record(data_file)},
                   models={"base": args.generator, "base_path": base, "template": template},
                   previous_stage={"generate_generator_data": data_manifest.get("output")} if data_manifest else {},
                   output={"merged_model": "merged_model", "adapter": "adapter"},
                   wall_seconds=round(time.perf_counter() - started, 1))
    return {"merged_model": str(merged), "adapter": str(adapter)}


def save_base_tokenizer(base: str, target: Path) -> None:
    """The base model's tokenizer, special tokens, chat template and generation config, so prompting and
    stopping match the base model (the export may rewrite the tokenizer by the LLaMA-Factory template)."""
    from transformers import AutoTokenizer, GenerationConfig

    AutoTokenizer.from_pretrained(base).save_pretrained(target)
    try:
        GenerationConfig.from_pretrained(base).save_pretrained(target)
    except OSError:
        pass


def main(argv: Sequence[str]) -> int:
    args = parse_args(GeneratorTrainArguments, argv, prog="python -m finetune.generator.train")
    result = train(args)
    print(f"merged generator: {result['merged_model']}")
    return 0


if __name__ == "__main__":
    run_cli(main)
