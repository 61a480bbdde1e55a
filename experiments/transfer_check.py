"""No collapse: does a retriever adapted to one corpus still retrieve on others?

    python -m experiments.transfer_check --round_retriever runs/cpu-demo-scifact/round_1/retriever \
        --datasets ../shared/data/msmarco-5k --output_dir runs/transfer-check

Both the adapted model and its base are loaded with plain ``sentence_transformers.SentenceTransformer(path)``
(what a user downstream does with the saved folder, not our ``Embedder``) and scored on each corpus's full
``split``: nDCG@10 of each, the difference with a paired randomization p-value and a bootstrap 95% interval. A
corpus passes when the adapted model loses at most ``max_loss`` points (default: at most 0.5 point lost). Output:
``results.json`` and ``results.md`` in ``output_dir``; exit status 0 either way (the verdict is in the files).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from evaluation.evaluator import RetrievalEvaluator
from evaluation.stats import compare
from inference.config import parse_args
from inference.errors import UserError, run_cli
from inference.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class TransferCheckArguments:
    """Score an adapted retriever and its base, both through plain sentence-transformers, on other corpora."""
    round_retriever: str = field(default="", metadata={
        "help": "the adapted retriever's folder (sentence-transformers form)", "aliases": ("model",)})
    datasets: list[str] = field(default_factory=list, metadata={"help": "BEIR folders it was not adapted on"})
    output_dir: str = ""
    base_retriever: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={
        "help": "the retriever it started from", "aliases": ("base",)})
    split: str = "test"
    max_loss: float = field(default=0.5, metadata={"help": "nDCG@10 points the adapted model may lose"})
    retriever_batch_size: int = field(default=64, metadata={"help": "texts per encoding batch",
                                                            "aliases": ("batch_size",)})
    top_k: int = 100
    seed: int = 0

    def validate(self) -> None:
        for name in ("round_retriever", "datasets", "output_dir"):
            if not getattr(self, name):
                raise UserError("required", field=name)
        if not Path(self.round_retriever).is_dir():
            raise UserError("not a model folder", file=self.round_retriever, field="round_retriever")


class SentenceTransformerEncoder:
    """``SentenceTransformer(path)`` as the encoder ``RetrievalEvaluator`` calls (no prompts: MiniLM uses none)."""

    def __init__(self, name_or_path: str, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        from inference.resolver import resolve_model_path

        # the bundled MiniLM's hub name maps to its local copy (no network here); a folder loads as it is
        self.model = SentenceTransformer(resolve_model_path(name_or_path), device="cpu")
        self.batch_size = batch_size

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                 show_progress_bar=len(texts) > 1000).astype(np.float32)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(queries)

    def encode_corpus(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


def passes(delta: float, max_loss_points: float) -> bool:
    """``delta`` (adapted − base nDCG@10, a fraction) loses no more than ``max_loss_points`` points."""
    return 100 * delta >= -max_loss_points - 1e-9


def check(args: TransferCheckArguments) -> dict:
    encoders = {"base": SentenceTransformerEncoder(args.base_retriever, args.retriever_batch_size),
                "adapted": SentenceTransformerEncoder(args.round_retriever, args.retriever_batch_size)}
    corpora = {}
    for path in args.datasets:
        evaluator = RetrievalEvaluator.from_dataset(path, args.split, top_k=args.top_k)
        logger.info("%s: %d queries, %d documents", evaluator.name, len(evaluator.query_ids), len(evaluator.corpus))
        scored = {name: evaluator(encoder) for name, encoder in encoders.items()}
        paired = compare("adapted", scored["adapted"].per_query, "base", scored["base"].per_query, seed=args.seed)
        corpora[evaluator.name] = {"base": scored["base"].metrics, "adapted": scored["adapted"].metrics,
                                   "comparison": paired.as_dict(), "passes": passes(paired.delta, args.max_loss)}
    return {"round_retriever": args.round_retriever, "base_retriever": args.base_retriever,
            "loaded_with": "sentence_transformers.SentenceTransformer",
            "max_loss_points": args.max_loss, "corpora": corpora, "parameters": asdict(args)}


def markdown(results: dict) -> str:
    lines = [f"Adapted `{results['round_retriever']}` vs base `{results['base_retriever']}`, both loaded with plain "
             f"`SentenceTransformer(path)`; nDCG@10 on each corpus's full split.", "",
             "| corpus | queries | base | adapted | Δ points | 95% CI | paired p | loses ≤ "
             f"{results['max_loss_points']} |", "|---|---|---|---|---|---|---|---|"]
    for name, c in results["corpora"].items():
        p = c["comparison"]
        lo, hi = p["delta_ci95"]
        lines.append(f"| {name} | {p['queries']} | {c['base']['ndcg@10']:.4f} | {c['adapted']['ndcg@10']:.4f} | "
                     f"{100 * p['delta']:+.2f} | [{100 * lo:+.2f}, {100 * hi:+.2f}] | {p['p_value']:.3g} | "
                     f"{'yes' if c['passes'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args = parse_args(TransferCheckArguments, argv, prog="python -m experiments.transfer_check")
    results = check(args)
    out = Path(args.output_dir)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results))
    print(markdown(results), end="")
    return 0


if __name__ == "__main__":
    run_cli(main)
