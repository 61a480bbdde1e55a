"""Corpus encoding throughput: our Embedder vs sentence-transformers' encode, side by side in one run.

    python -m benchmarks.encode --dataset ../shared/data/scifact [--docs 1000] [--batch_size 32] [--repeats 1]

Same model (bundled all-MiniLM-L6-v2), same documents (the first N of the corpus, "title text"), same batch
size, same threads; both warmed up first; the order alternates between repeats. Prints docs/s and the
ratio ours / sentence-transformers (goal ≥ 1.0), and checks the vectors agree.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from benchmarks.common import MINILM, first_documents, parse_args, print_rates, timed
from inference.embedder import Embedder
from inference.resolver import bundled_minilm_path

OURS, ST = "reinforced-ir Embedder", "sentence-transformers"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("encode", __doc__, argv, docs=1000, batch_size=32, repeats=1)
    docs = first_documents(args.dataset, args.docs)
    from sentence_transformers import SentenceTransformer

    ours = Embedder(MINILM, batch_size=args.batch_size, show_progress=False)
    st = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    runners = {
        OURS: lambda texts: ours.encode_corpus(texts),
        ST: lambda texts: st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True,
                                    show_progress_bar=False),
    }
    for run in runners.values():  # warm-up: allocator, thread pools, tokenizer caches
        run(docs[:64])
    seconds = {name: 0.0 for name in runners}
    outputs = {}
    for r in range(args.repeats):
        for name in (list(runners) if r % 2 == 0 else list(reversed(runners))):
            outputs[name], took = timed(runners[name], docs)
            seconds[name] += took
    diff = float(np.abs(outputs[OURS] - outputs[ST]).max())
    print_rates(f"{len(docs)} documents of {args.dataset.name} x {args.repeats}, batch {args.batch_size}, "
                f"{torch.get_num_threads()} threads",
                {name: len(docs) * args.repeats / s for name, s in seconds.items()}, "docs/s", (OURS, ST),
                goal=1.0, notes=[f"max |difference| of the vectors: {diff:.1e}"])


if __name__ == "__main__":
    main()
