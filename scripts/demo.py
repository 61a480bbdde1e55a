"""``make demo`` / ``make demo-full``: one self-boost round on SciFact with the bundled models on CPU.

Finds SciFact (``--data``, else ``../shared/data/scifact``, else a one-time download into the cache), runs
``scripts.self_boost`` with the profile's config, and prints nDCG@10 before and after.
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
from inference.errors import run_cli

from . import self_boost

logger = logging.getLogger(__name__)


@dataclass
class DemoArguments:
    """One self-boost round on SciFact with the bundled MiniLM and SmolLM2."""
    data: str | None = field(default=None, metadata={"help": "SciFact folder (default: shared copy or download)"})
    run_config: str = "configs/cpu-demo/scifact.yaml"
    rounds: int = 1


def main(argv: Sequence[str]) -> int:
    args = parse_args(DemoArguments, argv, prog="python -m scripts.demo")
    data = ensure_beir_dataset("scifact", args.data)
    self_boost.main(["--config", args.run_config, "--dataset_path", str(data), "--rounds", str(args.rounds)])
    config = yaml.safe_load(Path(args.run_config).read_text())
    run_dir = Path(config.get("runs_dir", "runs")) / config["name"]
    report = json.loads((run_dir / "report.json").read_text())
    q = report["query_set"]
    print(f"\nSciFact {q['split']}, paired subset of {q['queries']} queries (seed {q['seed']}): nDCG@10 before "
          f"{report['before']['ndcg@10']:.4f} → after {report['after']['ndcg@10']:.4f} "
          f"(HyDE {report['hyde']['ndcg@10']:.4f}, Query2doc {report['query2doc']['ndcg@10']:.4f}); full split, "
          f"retriever only: {report['full_split']['before']['ndcg@10']:.4f} → "
          f"{report['full_split']['after_retriever_only']['ndcg@10']:.4f}")
    print(f"report: {run_dir / 'report.md'}  ({report['total_seconds'] / 60:.1f} min, peak RSS "
          f"{report['peak_rss_mib']} MiB)")
    return 0


if __name__ == "__main__":
    run_cli(main)
