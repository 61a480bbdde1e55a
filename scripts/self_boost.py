"""Self-boost driver: rounds 1..K of RLRF + RLGF, each step a visible command, resumable, evaluated per round.

    python -m scripts.self_boost --config configs/cpu-demo/scifact.yaml --rounds 1
    python -m scripts.self_boost --config configs/cpu-demo/scifact.yaml --round 2 --emit_commands   # used by round.sh

Round k reads round k−1's generator and retriever (round 1: the base models). Steps:
queries (round 1 only; later rounds reuse them) → generator_data (RLRF) → train_generator (DPO + merge) →
retriever_data → distill (RLGF; left out when the retriever does not distill) → train_retriever → evaluate.
A step whose ``manifest.json`` says complete *with the parameters of its config now and inputs whose hashes still
match* is skipped, so a rerun after a crash continues; a finished step whose parameters or inputs changed is
refused, naming what changed, and redone from scratch with ``--overwrite``. After each round
the held-out pseudo-queries (no human labels) decide early stopping. Output:
``runs/<name>/round_<k>/{configs,synthetic,generator,retriever,eval}`` plus ``report.md``, ``report.json`` and
``ndcg_by_round.png`` in ``runs/<name>``.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from inference.config import canonical_options, option_aliases, parse_args
from inference.option_checks import check_step_options
from inference.errors import UserError, run_cli
from inference.io import atomic_write_json, atomic_write_text
from inference.manifest import canonical_parameters, changed_inputs, read_manifest

from .fit import Fit, fit_step, input_rows, output_model, skip_step
from .steps import STEPS, RoundArguments, torchrun_command

logger = logging.getLogger(__name__)


@dataclass
class SelfBoostConfig(RoundArguments):
    """Run Reinforced-IR self-boost rounds."""
    name: str = "run"
    runs_dir: str = "runs"
    rounds: int = 1
    round: int | None = field(default=None, metadata={"help": "run (or emit) only this round"})
    nproc_per_node: int = field(default=1, metadata={"help": "torchrun processes for retriever training"})
    generation_python: str | None = field(default=None, metadata={
        "help": "Python that runs the generating steps (queries, RLRF, retriever data, RLGF, evaluation), e.g. "
                ".venv-vllm/bin/python for the vllm backend, whose transformers cannot share LLaMA-Factory's "
                "environment; default: this interpreter"})
    seed: int = 42
    early_stopping: bool = True
    min_improvement: float = 0.0
    overwrite: bool = field(default=False, metadata={
        "help": "redo finished steps whose parameters or inputs changed (their output folders are deleted)"})
    emit_commands: bool = field(default=False, metadata={
        "help": "print 'step<TAB>todo|complete<TAB>command' lines and exit"})
    queries: dict = field(default_factory=dict)
    generator_data: dict = field(default_factory=dict)
    train_generator: dict = field(default_factory=dict)
    retriever_data: dict = field(default_factory=dict)
    distill: dict = field(default_factory=dict)
    train_retriever: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not self.dataset:
            raise UserError("required", field="dataset")
        if self.rounds < 1:
            raise UserError("must be ≥ 1", field="rounds")
        if self.generation_python and not os.access(self.generation_python, os.X_OK):
            raise UserError(f"{self.generation_python} is not an executable Python (make test-vllm builds "
                            ".venv-vllm)", field="generation_python")
        for step in STEPS:  # a step's options under their one name (an alias is noted and renamed)
            setattr(self, step.name, canonical_options(getattr(self, step.name), option_aliases(step.classes()),
                                                       step.name))
        for step, known in stage_option_names().items():
            unknown = sorted(set(getattr(self, step)) - known)
            if unknown:
                raise UserError(f"unknown option(s) for step '{step}': {', '.join(unknown)}", field=step)
        for step in STEPS:  # and their values (numbers, paths' kinds), before the steps ahead of them run
            check_step_options(step.classes(), getattr(self, step.name), step.name)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def stage_option_names() -> dict[str, set[str]]:
    """Option names each step accepts, so a typo in the driver config fails before any work starts."""
    return {step.name: step.option_names() for step in STEPS}


def round_dir(cfg: SelfBoostConfig, k: int) -> Path:
    return cfg.run_dir / f"round_{k}"


def models_for_round(cfg: SelfBoostConfig, k: int) -> tuple[str, str]:
    """(generator, retriever) that round k starts from."""
    if k == 1:
        return cfg.base_generator, cfg.base_retriever
    prev = round_dir(cfg, k - 1)  # a step the previous round skipped hands on the model it was given
    return (output_model(prev / "generator", str(prev / "generator" / "merged_model")),
            output_model(prev / "retriever", str(prev / "retriever")))


def step_values(cfg: SelfBoostConfig, k: int, dirs: dict[str, Path]) -> dict[str, dict]:
    """Each step's options for round k: the profile's section over what the round wires in (models, paths)."""
    generator, retriever = models_for_round(cfg, k)
    new_generator = output_model(dirs["train_generator"], str(dirs["train_generator"] / "merged_model"))
    new_retriever = output_model(dirs["train_retriever"], str(dirs["train_retriever"]))
    queries = str(dirs["queries"] / "queries.jsonl")
    gen_common = {"task": cfg.task, "seed": cfg.seed, "generator_backend": cfg.generator_backend}
    cache = {"embedding_cache": cfg.embedding_cache or "none"}  # the steps that encode the corpus share one cache
    retriever_rows = (dirs["distill"] / "train_distill.jsonl" if distilling(cfg)
                      else dirs["retriever_data"] / "train.jsonl")
    fits = training_fits(cfg, dirs)  # a batch sized down to the rows filtering left
    return {
        "queries": {**gen_common, "generator": cfg.base_generator, "dataset": cfg.dataset, **cfg.queries},
        "generator_data": {**gen_common, "generator": generator, "retriever": retriever, "queries_path": queries,
                           **cfg.generator_data},
        "train_generator": {"generator": generator, "generator_data_dir": str(dirs["generator_data"]),
                            "seed": cfg.seed, **cfg.train_generator, **fits["train_generator"].options},
        "retriever_data": {**gen_common, **cache, "generator": new_generator, "retriever": retriever,
                           "queries_path": queries, "dataset": cfg.dataset, **cfg.retriever_data},
        "distill": {**gen_common, **cache, "generator": new_generator, "retriever": retriever,
                    "dataset": cfg.dataset,
                    "retriever_data_path": str(dirs["retriever_data"] / "train.jsonl"), **cfg.distill},
        "train_retriever": {"retriever": retriever, "seed": cfg.seed, "use_cpu": True,
                            "train_data": [str(retriever_rows)], **cfg.train_retriever,
                            **fits["train_retriever"].options},
        "evaluate": {**cache, "dataset": cfg.dataset, "task": cfg.task, "split": cfg.split,
                     "base_retriever": cfg.base_retriever, "base_generator": cfg.base_generator,
                     "round_retriever": new_retriever, "round_generator": new_generator,
                     "generator_backend": cfg.generator_backend, "baselines": k == 1,
                     "heldout_path": str(dirs["queries"] / "heldout.jsonl"), **cfg.evaluate},
    }


def distilling(cfg: SelfBoostConfig) -> bool:
    """RLGF's teacher scores only matter to a distilling retriever: without KD the distill step is skipped and the
    retriever trains on the mined rows directly (a profile choice, recorded in the report)."""
    return bool(cfg.train_retriever.get("knowledge_distillation", False))


def training_fits(cfg: SelfBoostConfig, dirs: dict[str, Path]) -> dict[str, Fit]:
    """Each training step run as configured, sized down, or skipped, from the rows its input stage kept."""
    processes = {"train_generator": 1, "train_retriever": max(1, cfg.nproc_per_node)}
    return {step: fit_step(step, input_rows(step, dirs, distilling(cfg)), getattr(cfg, step), processes[step])
            for step in processes}


def round_dirs(cfg: SelfBoostConfig, k: int) -> dict[str, Path]:
    return {step.name: step.directory(cfg.run_dir, k) for step in STEPS}


def step_plan(cfg: SelfBoostConfig, k: int) -> list[tuple[str, Path, list[str]]]:
    """``(step, output_dir, command)`` for round k; writes each step's YAML config under round_k/configs."""
    dirs = round_dirs(cfg, k)
    options = step_values(cfg, k, dirs)
    plan = []
    for step in STEPS:
        if (step.first_round_only and k != 1) or (step.name == "distill" and not distilling(cfg)):
            continue
        values = {"output_dir": str(dirs[step.name]), **options[step.name]}
        if step.name == "train_retriever" and torch_cuda_available():
            values.pop("use_cpu", None)
        path = round_dir(cfg, k) / "configs" / f"{step.name}.yaml"
        atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))
        if step.name == "train_retriever" and cfg.nproc_per_node > 1:
            cmd = torchrun_command(cfg.nproc_per_node, step.module, ["--config", str(path)])
        else:  # LLaMA-Factory / torchrun always run in this interpreter's environment
            python = sys.executable if step.training else (cfg.generation_python or sys.executable)
            cmd = [python, "-m", step.module, "--config", str(path)]
        plan.append((step.name, dirs[step.name], cmd))
    return plan


def torch_cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


TRAINING_PARAMETER_GROUPS = ("model", "data", "training")  # the trainers' manifests group their parameters


def _normalised(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def step_state(out: Path, config_path: Path) -> tuple[str, list[str]]:
    """``("todo" | "complete" | "changed", what changed)`` of a step, from its manifest and its config now."""
    try:
        manifest = read_manifest(out) or {}
    except UserError:  # unreadable: the step is redone
        manifest = {}
    if manifest.get("status") != "complete":
        return "todo", []
    recorded: dict = {}
    for key, value in (manifest.get("parameters") or {}).items():
        recorded.update(value if key in TRAINING_PARAMETER_GROUPS and isinstance(value, dict) else {key: value})
    recorded = canonical_parameters(recorded)  # a step recorded under an option's old name compares by value
    config = yaml.safe_load(config_path.read_text()) or {}
    changed = sorted(k for k, v in config.items() if k in recorded and _normalised(recorded[k]) != _normalised(v))
    changed += [f"input {p}" for p in changed_inputs(manifest)]
    return ("changed" if changed else "complete"), changed


def run_round(cfg: SelfBoostConfig, k: int, timings: dict) -> None:
    upstream_redone = None
    for name in [planned for planned, _, _ in step_plan(cfg, k)]:
        # planned again before each step: what a finished step kept or skipped sizes and wires the next ones
        step, out, cmd = next(entry for entry in step_plan(cfg, k) if entry[0] == name)
        key = f"round_{k}/{step}"
        state, changed = step_state(out, round_dir(cfg, k) / "configs" / f"{step}.yaml")
        if state == "complete" and upstream_redone:
            state, changed = "changed", [f"its input step '{upstream_redone}' was redone"]
        if state == "complete":
            print(f"[round {k}] {step}: complete, skipped ({out})", flush=True)
            continue
        if state == "changed":
            if not cfg.overwrite:
                raise UserError(f"round {k}, step '{step}' finished with other parameters or inputs than now "
                                f"({', '.join(changed)}); rerun with --overwrite true to redo it and the steps after "
                                "it", field=step)
            print(f"[round {k}] {step}: changed ({', '.join(changed)}), redone from scratch", flush=True)
            shutil.rmtree(out)
        upstream_redone = upstream_redone or step
        if fitted(cfg, k, step, out, timings):
            continue
        print(f"[round {k}] {step}: + {shlex.join(cmd)}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # MiB, largest child so far
        timings[key] = {**timings.get(key, {}), "seconds": round(seconds, 1), "peak_rss_mib_so_far": round(peak)}
        atomic_write_json(cfg.run_dir / "timings.json", timings)
        if proc.returncode != 0:
            raise UserError(f"round {k}, step '{step}' failed with exit code {proc.returncode}; fix it and rerun "
                            "the same command to continue from this step", field=step)


def fitted(cfg: SelfBoostConfig, k: int, step: str, out: Path, timings: dict) -> bool:
    """Say how a training step fits its rows; True where it is skipped (its folder then hands its input model on)."""
    fit = training_fits(cfg, round_dirs(cfg, k)).get(step)
    timings.get(f"round_{k}/{step}", {}).pop("fit", None)  # an earlier run's fit no longer holds
    if fit is None or fit.action == "run":
        return False
    print(f"[round {k}] {step}: {fit.action}: {fit.reason}", flush=True)
    timings[f"round_{k}/{step}"] = {"seconds": 0.0, "fit": fit.as_dict()}
    atomic_write_json(cfg.run_dir / "timings.json", timings)
    if fit.action != "skipped":
        return False
    config = yaml.safe_load((round_dir(cfg, k) / "configs" / f"{step}.yaml").read_text()) or {}
    generator, retriever = models_for_round(cfg, k)
    skip_step(out, step, fit, generator if step == "train_generator" else retriever, config)
    return True


def heldout_score(cfg: SelfBoostConfig, k: int) -> float | None:
    path = round_dir(cfg, k) / "eval" / "results.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("heldout", {}).get("round_raw")


def main(argv: Sequence[str]) -> int:
    cfg = parse_args(SelfBoostConfig, argv, prog="python -m scripts.self_boost")
    rounds = [cfg.round] if cfg.round else list(range(1, cfg.rounds + 1))
    if cfg.emit_commands:
        for k in rounds:
            for step, out, cmd in step_plan(cfg, k):
                state, changed = step_state(out, round_dir(cfg, k) / "configs" / f"{step}.yaml")
                detail = f" ({', '.join(changed)})" if changed else ""
                print(f"{step}\t{state}{detail}\t{shlex.join(cmd)}")
        return 0
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg.run_dir / "config.yaml", yaml.safe_dump(
        {k: v for k, v in vars(cfg).items() if k not in ("emit_commands", "round")}, sort_keys=False))
    timings_path = cfg.run_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    best = None
    for k in rounds:
        run_round(cfg, k, timings)
        score = heldout_score(cfg, k)
        print(f"[round {k}] held-out pseudo-query nDCG@10: {score if score is None else round(score, 4)}", flush=True)
        if cfg.early_stopping and score is not None and best is not None and score <= best + cfg.min_improvement:
            print(f"[round {k}] held-out nDCG@10 stopped improving ({score:.4f} ≤ {best:.4f}); stopping early")
            break
        best = score if best is None or (score is not None and score > best) else best
    from .report import write_report

    print(write_report(cfg.run_dir))
    return 0


if __name__ == "__main__":
    run_cli(main)
