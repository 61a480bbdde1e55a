"""``make demo``: evaluate the bundled MiniLM on SciFact and write a report.

Until the self-boost round lands (issue 6) this runs the foundation's evaluation: raw MiniLM on the full
test split, plus (``--with_generation``) HyDE / Query2doc / Reinforced-IR augmentation with the bundled
SmolLM2 on a seeded query subset, every method scored on that same subset.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from evaluation.download import ensure_beir_dataset
from evaluation.evaluate import EvaluateArguments, format_table, run_evaluation
from inference.config import parse_args
from inference.errors import run_cli
from inference.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class DemoArguments:
    """Foundation demo: MiniLM on SciFact (and optional generative baselines)."""
    data: str | None = field(default=None, metadata={"help": "SciFact folder (default: shared copy or download)"})
    output_dir: str = "runs/demo"
    with_generation: bool = False
    max_queries: int = 50
    seed: int = 0


def main(argv: Sequence[str]) -> int:
    args = parse_args(DemoArguments, argv, prog="python -m scripts.demo")
    data = ensure_beir_dataset("scifact", args.data)
    out = Path(args.output_dir)
    raw = run_evaluation(EvaluateArguments(dataset=str(data), method="raw", output=str(out / "raw.json")))
    tables = {"raw (full test split)": raw["metrics"]}
    sections = [f"## Raw MiniLM, full test split ({raw['run']['queries_evaluated']} queries)\n",
                format_table({"raw": raw["metrics"]})]
    if args.with_generation:
        gen = run_evaluation(EvaluateArguments(
            dataset=str(data), methods=["raw", "hyde", "query2doc", "reinforced_ir"],
            generator="HuggingFaceTB/SmolLM2-135M-Instruct", generator_backend="hf", max_queries=args.max_queries,
            seed=args.seed, output=str(out / "generative.json")))
        sections += [f"\n## Same seeded subset of {gen['run']['queries_evaluated']} test queries (seed {args.seed})\n",
                     format_table(gen["methods"])]
        tables.update({f"{m} (subset)": v for m, v in gen["methods"].items()})
    report = "# reinforced-ir demo: SciFact\n\n" + "\n".join(sections) + "\n"
    atomic_write_text(out / "report.md", report)
    atomic_write_json(out / "report.json", {"results": tables, "data": str(data)})
    print("\n" + report)
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
