"""Label-free additions to the BM25 + dense hybrid, scored on the *train* qrels (never on test): BM25's k1 / b, and
Rocchio pseudo-relevance feedback in embedding space (the query vector moved toward the mean of the top-k
documents of the hybrid, or of the dense ranking alone), each paired against the default 0.5 / 0.5 hybrid (dense
feedback rows: against dense).

    python -m experiments.dev_label_free_addons --dataset ../shared/data/scifact --output_dir runs/dev-label-free-addons

Full corpus, every judged train query; the base retriever's corpus vectors come from the embedding cache. Output:
``results.json`` and ``results.md`` (nDCG@10, Δ vs the row's reference in points, 95% interval, paired p).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from evaluation.data import load_dataset
from evaluation.evaluator import RetrievalEvaluator
from evaluation.search import bm25_index_cached, encode_corpus_cached
from evaluation.stats import compare
from inference.config import EmbeddingCacheArguments, parse_args
from inference.embedder import Embedder
from inference.errors import UserError, run_cli
from inference.hybrid import HybridCandidates
from inference.io import atomic_write_json, atomic_write_text
from inference.search import exact_search, results_to_run
from inference.sparse import BM25Config

logger = logging.getLogger(__name__)
REFERENCE = "hybrid 0.5 / 0.5 (k1 1.2, b 0.75)"


@dataclass
class LabelFreeAddonsArguments(EmbeddingCacheArguments):
    """Score BM25 settings and embedding PRF beside the default hybrid on train qrels."""
    dataset: str = field(default="", metadata={"help": "BEIR folder"})
    output_dir: str = field(default="", metadata={"help": "results.json / results.md go here"})
    split: str = field(default="train", metadata={"help": "qrels split (never test)"})
    retriever: str = "sentence-transformers/all-MiniLM-L6-v2"
    bm25_settings: list[str] = field(default_factory=lambda: ["0.9:0.4", "1.5:0.75", "1.2:0.9", "2.0:0.75"],
                                     metadata={"help": "k1:b pairs, comma-separated"})
    prf_depths: list[int] = field(default_factory=lambda: [3, 5, 10])
    prf_betas: list[float] = field(default_factory=lambda: [0.3, 0.5, 1.0])

    def validate(self) -> None:
        for name in ("dataset", "output_dir"):
            if not getattr(self, name):
                raise UserError("required", field=name)
        if self.split == "test":
            raise UserError("settings are tried on train (or dev) qrels, never on test", field="split")


def rocchio(query_emb: np.ndarray, doc_emb: np.ndarray, feedback: np.ndarray, beta: float) -> np.ndarray:
    """``normalise(q + beta · mean of the feedback documents' vectors)`` per query."""
    moved = query_emb + beta * doc_emb[feedback].mean(axis=1)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def score_variants(args: LabelFreeAddonsArguments) -> dict[str, dict[str, float]]:
    ds = load_dataset(args.dataset, args.split)
    qids = ds.evaluated_query_ids()
    texts = [ds.queries[q] for q in qids]
    cache = args.embedding_cache_dir
    embedder = Embedder(args.retriever)
    doc_emb, query_emb = encode_corpus_cached(embedder, ds.corpus, cache), embedder.encode_queries(texts)
    evaluator = RetrievalEvaluator(dict(zip(qids, texts)), None, ds.qrels)
    score = lambda run: evaluator.score_run(results_to_run(*run, qids, ds.doc_ids)).per_query  # noqa: E731
    bm25 = bm25_index_cached(ds.corpus, cache)
    hybrid = HybridCandidates.gather(query_emb, doc_emb, bm25, texts)
    rows = {"dense": score(exact_search(query_emb, doc_emb, 100)),
            "BM25 (k1 1.2, b 0.75)": score(bm25.search(texts, 100)), REFERENCE: score(hybrid.fuse(0.5, top_k=100))}
    for setting in args.bm25_settings:
        k1, b = (float(x) for x in setting.split(":"))
        other = bm25_index_cached(ds.corpus, cache, BM25Config(k1=k1, b=b))
        candidates = HybridCandidates.gather(query_emb, doc_emb, other, texts)
        rows[f"hybrid 0.5 / 0.5 (k1 {k1:g}, b {b:g})"] = score(candidates.fuse(0.5, top_k=100))
    _, hybrid_top = hybrid.fuse(0.5, top_k=max(args.prf_depths))
    _, dense_top = exact_search(query_emb, doc_emb, max(args.prf_depths))
    for k in args.prf_depths:
        for beta in args.prf_betas:
            moved = rocchio(query_emb, doc_emb, hybrid_top[:, :k], beta)
            candidates = HybridCandidates.gather(moved, doc_emb, bm25, texts)
            rows[f"hybrid 0.5 / 0.5, dense query + PRF from the hybrid top {k} (β {beta:g})"] = score(
                candidates.fuse(0.5, top_k=100))
            rows[f"dense + PRF from the dense top {k} (β {beta:g})"] = score(
                exact_search(rocchio(query_emb, doc_emb, dense_top[:, :k], beta), doc_emb, 100))
    return rows


def reference_of(name: str) -> str | None:
    return None if name == REFERENCE else "dense" if name.startswith("dense +") else REFERENCE


def write_results(rows: dict[str, dict[str, float]], out: Path) -> dict:
    results = {name: {"ndcg@10": float(np.mean(list(per_query.values()))), "reference": reference_of(name),
                      **({} if reference_of(name) is None else
                         compare(name, per_query, reference_of(name), rows[reference_of(name)]).as_dict())}
               for name, per_query in rows.items()}
    lines = ["| variant | nDCG@10 | against | Δ (points) | 95% CI | p |", "|---|---:|---|---:|---|---:|"]
    for name, r in results.items():
        if r["reference"] is None:
            lines.append(f"| {name} | {r['ndcg@10']:.4f} | — | — | — | — |")
        else:
            low, high = (100 * x for x in r["delta_ci95"])
            lines.append(f"| {name} | {r['ndcg@10']:.4f} | {r['reference']} | {100 * r['delta']:+.2f} | "
                         f"[{low:+.2f}, {high:+.2f}] | {r['p_value']:.2g} |")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


def main(argv: Sequence[str]) -> int:
    args = parse_args(LabelFreeAddonsArguments, argv)
    write_results(score_variants(args), Path(args.output_dir))
    return 0


if __name__ == "__main__":
    run_cli(main)
