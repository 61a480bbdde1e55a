"""Corpus encoding throughput: our Embedder vs sentence-transformers' encode, side by side in one run.

    python benchmarks/encode.py [--data ../shared/data/scifact] [--docs 1000] [--batch_size 32] [--repeats 1]

Same model (bundled all-MiniLM-L6-v2), same documents (the first N of SciFact, "title text"), same batch
size, same threads; both warmed up first; the order alternates between repeats. Prints docs/s and the
ratio ours / sentence-transformers (goal ≥ 1.0), and checks the vectors agree.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.embedder import Embedder, document_text  # noqa: E402
from inference.resolver import bundled_minilm_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    docs = []
    with open(Path(args.data) / "corpus.jsonl") as fh:
        for line in fh:
            docs.append(document_text(json.loads(line)))
            if len(docs) == args.docs:
                break
    from sentence_transformers import SentenceTransformer

    ours = Embedder("sentence-transformers/all-MiniLM-L6-v2", batch_size=args.batch_size, show_progress=False)
    st = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    runners = {
        "reinforced-ir Embedder": lambda texts: ours.encode_corpus(texts),
        "sentence-transformers": lambda texts: st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True,
                                                        show_progress_bar=False),
    }
    for run in runners.values():  # warm-up: allocator, thread pools, tokenizer caches
        run(docs[:64])
    seconds = {name: 0.0 for name in runners}
    outputs = {}
    for r in range(args.repeats):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for name in order:
            start = time.perf_counter()
            outputs[name] = runners[name](docs)
            seconds[name] += time.perf_counter() - start
    rates = {name: args.docs * args.repeats / s for name, s in seconds.items()}
    diff = float(np.abs(outputs["reinforced-ir Embedder"] - outputs["sentence-transformers"]).max())
    print(f"{args.docs} SciFact documents x {args.repeats}, batch {args.batch_size}, {torch.get_num_threads()} threads")
    for name, rate in rates.items():
        print(f"  {name:24s} {rate:7.1f} docs/s")
    ratio = rates["reinforced-ir Embedder"] / rates["sentence-transformers"]
    print(f"  ratio ours / sentence-transformers: {ratio:.2f}  (goal >= 1.0); max |difference| {diff:.1e}")


if __name__ == "__main__":
    main()
