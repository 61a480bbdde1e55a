"""``make demo`` / ``make demo-full``: one self-boost round with the bundled models on CPU (SciFact by default).

Finds the data (``--dataset``, else ``../shared/data/scifact``, else a one-time download into the cache), runs
``scripts.self_boost`` with the profile's config, and prints nDCG@10 before and after, BM25, the hybrid and the
label-free choice. ``--dataset DIR --task NAME`` runs the same profile on any BEIR-layout folder (the run is then
named after the task, e.g. ``runs/cpu-demo-msmarco``); ``NAME`` picks the prompts' task vocabulary
(``configs/prompts``).
"""
from __future__ import annotations

import json
import logging

import yaml
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from evaluation.download import ensure_beir_dataset
from inference.config import parse_args
from inference.errors import UserError, run_cli
from inference.prompts import get_task

from . import self_boost

logger = logging.getLogger(__name__)


@dataclass
class DemoArguments:
    """One self-boost round on SciFact with the bundled MiniLM and SmolLM2."""
    dataset: str | None = field(default=None, metadata={
        "help": "BEIR folder (default: SciFact, shared copy or download)", "aliases": ("data",)})
    task: str | None = field(default=None, metadata={"help": "prompt task of --dataset (default: the profile's)"})
    run_config: str = "configs/cpu-demo/scifact.yaml"
    rounds: int = 1


def main(argv: Sequence[str]) -> int:
    args = parse_args(DemoArguments, argv, prog="python -m scripts.demo")
    config = yaml.safe_load(Path(args.run_config).read_text())
    task = args.task or config.get("task", "scifact")
    get_task(task)  # an unknown task fails now, in a line, not minutes into the run (add one via RIR_PROMPTS_DIR)
    data = ensure_beir_dataset("scifact", args.dataset) if task == "scifact" or not args.dataset else Path(args.dataset)
    if not data.is_dir():
        raise UserError("dataset folder not found", file=data, field="dataset")
    profile_task = config.get("task", "scifact")
    name = config["name"] if task == profile_task else f"{config['name'].removesuffix('-' + profile_task)}-{task}"
    run_dir = Path(config.get("runs_dir", "runs")) / name
    self_boost.main(["--config", args.run_config, "--dataset", str(data), "--rounds", str(args.rounds),
                     "--task", task, "--name", name, "--embedding_cache", str(run_dir / "cache" / "embeddings")])
    report = json.loads((run_dir / "report.json").read_text())
    print_summary(report, task, run_dir)
    return 0


def print_summary(report: dict, task: str, run_dir: Path) -> None:
    q = report["query_set"]
    print(f"\n{task} {q['split']}, paired subset of {q['queries']} queries (seed {q['seed']}): nDCG@10 before "
          f"{report['before']['ndcg@10']:.4f} → after {report['after']['ndcg@10']:.4f} "
          f"(HyDE {report['hyde']['ndcg@10']:.4f}, Query2doc {report['query2doc']['ndcg@10']:.4f}); full split, "
          f"retriever only: {report['full_split']['before']['ndcg@10']:.4f} → "
          f"{report['full_split']['after_retriever_only']['ndcg@10']:.4f}")
    choice = report.get("label_free_choice")
    if choice:
        print(f"full split: BM25 {report['bm25']['ndcg@10']:.4f}; hybrid 0.5 / 0.5 with the base retriever "
              f"{report['hybrid']['base']['ndcg@10']:.4f}, with the round retriever "
              f"{report['hybrid']['round']['ndcg@10']:.4f}; label-free choice ({choice['retriever']} retriever, BM25 "
              f"weight {choice['weight']:g}) {choice['ndcg@10']:.4f}, paired p = {choice['p_value_vs_base']:.3g} "
              "against the base retriever")
    print(f"report: {run_dir / 'report.md'}  ({report['total_seconds'] / 60:.1f} min, peak RSS "
          f"{report['peak_rss_mib']} MiB)")


if __name__ == "__main__":
    run_cli(main)
