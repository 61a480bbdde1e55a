"""Query-likelihood scoring throughput (pairs/s): fp32 vs bf16, the same (claim, passage) pairs, one run.

    python -m benchmarks.query_likelihood --dataset ../shared/data/scifact [--queries 8] [--passages 8]
        [--batch_size 16]

Pairs are seeded test claims x corpus passages, scored as `--rerank_type query_likelihood` scores them
(SmolLM2-135M, 192 passage tokens). Also prints how far bf16 moves the scores and the Spearman correlation of the
two orders. Goal: bf16 >= 2x fp32 where the CPU computes bf16 natively (`native_bf16()`, which `dtype auto`
follows); elsewhere bf16 is emulated and `auto` stays fp32.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
from scipy.stats import spearmanr

from benchmarks.common import SMOLLM2, parse_args, print_rates, timed
from evaluation.data import load_dataset
from inference.embedder import document_text
from inference.generators.base import native_bf16
from inference.prompts import get_task
from inference.reranker import load_reranker


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("query_likelihood", __doc__, argv, queries=8, passages=8, batch_size=16)
    ds = load_dataset(args.dataset, split="test")
    rng = random.Random(0)
    queries = rng.sample(sorted(ds.queries), args.queries)
    docs = rng.sample(sorted(ds.corpus), args.passages)
    pairs = [(ds.queries[q], document_text(ds.corpus[d])) for q in queries for d in docs]
    rates, scores = {}, {}
    for dtype in ("fp32", "bf16"):
        reranker = load_reranker(SMOLLM2, "query_likelihood", task=get_task("scifact"),
                                 batch_size=args.batch_size, dtype=dtype, show_progress=False)
        reranker.score_pairs(pairs[:2])  # warm-up
        scores[dtype], seconds = timed(reranker.score_pairs, pairs)
        rates[dtype] = len(pairs) / seconds
    print_rates(f"{len(pairs)} (claim, passage) pairs of {args.dataset.name}, SmolLM2-135M query likelihood on "
                f"CPU, batch {args.batch_size}; native bf16: {native_bf16()}", rates, "pairs/s", ("bf16", "fp32"),
                goal=2.0, goal_note=" where bf16 is native", digits=2,
                notes=[f"bf16 vs fp32: max |score difference| {np.abs(scores['bf16'] - scores['fp32']).max():.3f} "
                       f"nats, Spearman {spearmanr(scores['bf16'], scores['fp32'])[0]:.4f}"])


if __name__ == "__main__":
    main()
