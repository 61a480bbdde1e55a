"""Fit a round's two training steps to the rows its filters left (docs/design.md §14).

On a corpus the profile was not sized for, filtering can leave fewer rows than a step's batch (96 pseudo-queries →
26 kept → 15 after the round trip, against a global batch of 16). Before a training step starts, the driver reads
how many rows its input stage kept (that stage's manifest) and either runs the step as configured, runs it with its
per-device batch sized down to the rows it has, or skips it: the round then carries its input model forward
unchanged, the step's manifest says why, and the round still ends with its evaluation, report and label-free
choice. A round never fails minutes in on a count it could have read first.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference.manifest import read_manifest, write_manifest

# DPO needs one preference pair; contrastive training one row per process (its in-batch and hard negatives come
# with the row's group, so a per-device batch of 1 still trains).
MIN_ROWS = {"train_generator": 1, "train_retriever": 1}
BATCH_DEFAULTS = {"train_generator": 4, "train_retriever": 8}  # the trainers' own per-device defaults
SKIPPED = "skipped"


@dataclass
class Fit:
    step: str
    rows: int | None                                   # None: the input stage has not run yet
    action: str = "run"                                # run | resized | skipped
    reason: str = ""
    options: dict = field(default_factory=dict)        # overrides of the step's configured options

    def as_dict(self) -> dict:
        return asdict(self)


def input_rows(step: str, dirs: dict[str, Path], distilling: bool) -> int | None:
    """Rows the step will train on: the kept count of the stage that wrote its input file."""
    source = {"train_generator": "generator_data",
              "train_retriever": "distill" if distilling else "retriever_data"}[step]
    manifest = read_manifest(dirs[source]) or {}
    if manifest.get("status") != "complete":
        return None
    return int(manifest.get("counts", {}).get("kept", 0))


def fit_step(step: str, rows: int | None, options: dict, processes: int = 1) -> Fit:
    """Run, size down the per-device batch, or skip, from the rows the step will have."""
    if rows is None:
        return Fit(step, rows)
    per_device = int(options.get("per_device_train_batch_size", BATCH_DEFAULTS[step]))
    processes = max(1, processes)
    if rows < MIN_ROWS[step] * processes:
        return Fit(step, rows, "skipped", f"{rows} training row(s) for {processes} process(es); the round keeps "
                                         "its input model")
    if rows < per_device * processes:
        fitted = max(1, rows // processes)
        return Fit(step, rows, "resized", f"{rows} training rows cannot fill a global batch of "
                                          f"{per_device * processes}; per-device batch {per_device} → {fitted}",
                   {"per_device_train_batch_size": fitted})
    return Fit(step, rows)


def skip_step(out: Path, step: str, fit: Fit, model: str, parameters: dict) -> None:
    """The step's output folder as a finished no-op: its manifest names the model the round carries forward."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_manifest(out, step, "complete", skipped=fit.reason, model=model, parameters=parameters,
                   counts={"rows": fit.rows, "fit": fit.action})


def output_model(out: Path, trained: str) -> str:
    """The model a training step leaves: ``trained`` (its output), or its input model where it was skipped."""
    manifest = read_manifest(out) or {}
    if manifest.get("status") == "complete" and manifest.get("skipped"):
        return str(manifest["model"])
    return trained
