"""Query-likelihood scoring throughput (pairs/s): fp32 vs bf16, the same (claim, passage) pairs, one run.

    python benchmarks/query_likelihood.py [--queries 8] [--passages 8] [--batch_size 16]

Pairs are seeded SciFact test claims x corpus passages, scored as `--rerank_type query_likelihood` scores them
(SmolLM2-135M, 192 passage tokens). Also prints how far bf16 moves the scores and the Spearman correlation of the
two orders. Goal: bf16 >= 2x fp32 where the CPU computes bf16 natively (`native_bf16()`, which `dtype auto`
follows); elsewhere bf16 is emulated and `auto` stays fp32.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evaluation.data import load_dataset  # noqa: E402
from inference.embedder import document_text  # noqa: E402
from inference.generators.base import native_bf16  # noqa: E402
from inference.prompts import get_task  # noqa: E402
from inference.reranker import load_reranker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--passages", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    ds = load_dataset(args.data, split="test")
    rng = random.Random(0)
    queries = rng.sample(sorted(ds.queries), args.queries)
    docs = rng.sample(sorted(ds.corpus), args.passages)
    pairs = [(ds.queries[q], document_text(ds.corpus[d])) for q in queries for d in docs]
    rates, scores = {}, {}
    for dtype in ("fp32", "bf16"):
        reranker = load_reranker("HuggingFaceTB/SmolLM2-135M-Instruct", "query_likelihood", task=get_task("scifact"),
                                 batch_size=args.batch_size, dtype=dtype, show_progress=False)
        reranker.score_pairs(pairs[:2])  # warm-up
        start = time.perf_counter()
        scores[dtype] = reranker.score_pairs(pairs)
        rates[dtype] = len(pairs) / (time.perf_counter() - start)
    print(f"{len(pairs)} SciFact (claim, passage) pairs, SmolLM2-135M query likelihood on CPU, batch {args.batch_size}; "
          f"native bf16: {native_bf16()}")
    for dtype, rate in rates.items():
        print(f"  {dtype}: {rate:5.2f} pairs/s")
    print(f"  bf16 vs fp32: max |score difference| {np.abs(scores['bf16'] - scores['fp32']).max():.3f} nats, "
          f"Spearman {spearmanr(scores['bf16'], scores['fp32'])[0]:.4f}")
    print(f"  ratio bf16 / fp32: {rates['bf16'] / rates['fp32']:.2f}  (goal >= 2.0 where bf16 is native)")


if __name__ == "__main__":
    main()
