"""Label-free, per-corpus choice of the hybrid weight (BM25's share) on pseudo-queries.

Each pseudo-query was written from one passage, so that passage is its only relevant document: nDCG@10 over
pseudo-queries scores a setting with no human label. Two things can mislead that signal, and each has a guard:

- **Lexical bias.** A pseudo-query may copy words from its passage more than a real query does, which favours
  BM25. Guard: a round trip (Promptagator, Dai et al. 2022) — only pseudo-queries whose source passage the
  *dense* retriever ranks in its top ``round_trip_depth`` are scored. A query that only exact word overlap can
  answer is dropped, so the filter can only move the choice toward dense. It also drops the generator's
  non-queries ("What's your question?"), which no retriever can answer and which only add noise.
- **Noise.** Ties (within 1e-9) go to the more dense weight; the report keeps every weight's score, the paired
  loss to the best and its standard error, so a reader sees how sharp the choice was.

The weight grid is 0, 0.1, …, 1 (0 = the dense ranking, 1 = the BM25 ranking).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from inference.config import EmbeddingCacheArguments
from inference.errors import UserError
from inference.hybrid import DEFAULT_FUSION, HybridCandidates
from inference.io import iter_jsonl, require_str
from inference.search import results_to_run

from .evaluator import RetrievalEvaluator

WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))
ROUND_TRIP_DEPTH = 20
RULE = ("argmax of mean pseudo-query nDCG@10 over the weight grid (ties → the more dense weight), on the "
        "pseudo-queries whose source passage the dense retriever ranks in its top {depth} (round trip)")


@dataclass
class PseudoQueries:
    """Pseudo-queries with their source passage as the one relevant document."""
    ids: list[str]
    texts: list[str]
    doc_ids: list[str]

    @classmethod
    def load(cls, paths: Sequence[str | os.PathLike], corpus_ids: set[str]) -> "PseudoQueries":
        """Rows ``{id, query, doc_id}`` (stage A's ``queries.jsonl`` / ``heldout.jsonl``); rows whose source is
        not in the corpus are skipped."""
        out = cls([], [], [])
        for path in paths:
            for lineno, row in iter_jsonl(path):
                doc_id = require_str(row, "doc_id", path, lineno, allow_empty=False)
                if doc_id in corpus_ids:
                    out.ids.append(require_str(row, "id", path, lineno, allow_empty=False))
                    out.texts.append(require_str(row, "query", path, lineno, allow_empty=False))
                    out.doc_ids.append(doc_id)
        if not out.ids:
            raise UserError("no pseudo-query whose source passage is in the corpus", file=paths[0] if paths else None)
        return out

    @property
    def qrels(self) -> dict[str, dict[str, int]]:
        return {q: {d: 1} for q, d in zip(self.ids, self.doc_ids)}


@dataclass
class WeightChoice:
    """The chosen BM25 share and the label-free evidence behind it."""
    weight: float
    fusion: str
    pseudo_queries: int                                               # scored (after the round trip)
    pseudo_queries_total: int = 0                                     # before the round trip
    round_trip_depth: int = ROUND_TRIP_DEPTH
    rule: str = ""
    ndcg_at_10: dict[str, float] = field(default_factory=dict)       # weight → mean nDCG@10 on pseudo-queries
    loss_to_best: dict[str, float] = field(default_factory=dict)     # weight → mean paired loss to the chosen
    standard_error: dict[str, float] = field(default_factory=dict)   # weight → SE of that loss

    def as_dict(self) -> dict:
        return asdict(self)


def weight_curve(candidates: HybridCandidates, pseudo: PseudoQueries, doc_ids: list[str],
                 weights: Sequence[float] = WEIGHT_GRID, fusion: str = DEFAULT_FUSION) -> dict[float, np.ndarray]:
    """Per-pseudo-query nDCG@10 at each weight (one candidate retrieval, fused per weight)."""
    evaluator = RetrievalEvaluator(dict(zip(pseudo.ids, pseudo.texts)), None, pseudo.qrels)
    curve = {}
    for w in weights:
        scores, ids = candidates.fuse(w, fusion, top_k=100)
        result = evaluator.score_run(results_to_run(scores, ids, pseudo.ids, doc_ids))
        curve[float(w)] = np.array([result.per_query[q] for q in pseudo.ids])
    return curve


def choose_weight(curve: dict[float, np.ndarray], fusion: str = DEFAULT_FUSION) -> WeightChoice:
    """Argmax of the mean, ties to the smaller (more dense) weight, with each weight's paired loss and SE."""
    weights = sorted(curve)
    means = {w: float(curve[w].mean()) for w in weights}
    top = max(means.values())
    best = min(w for w in weights if means[w] >= top - 1e-9)
    n = len(curve[best])
    choice = WeightChoice(weight=best, fusion=fusion, pseudo_queries=n, pseudo_queries_total=n,
                          ndcg_at_10={f"{w:g}": means[w] for w in weights})
    for w in weights:
        loss = curve[best] - curve[w]
        choice.loss_to_best[f"{w:g}"] = float(loss.mean())
        choice.standard_error[f"{w:g}"] = float(loss.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return choice


def round_trip_mask(query_emb: np.ndarray, doc_emb: np.ndarray, pseudo: PseudoQueries, doc_ids: list[str],
                    depth: int) -> np.ndarray:
    """True where the dense retriever ranks the pseudo-query's source passage in its top ``depth``."""
    from inference.search import exact_search

    position = {d: i for i, d in enumerate(doc_ids)}
    _, ids = exact_search(query_emb, doc_emb, depth)
    return np.array([position[d] in set(row.tolist()) for d, row in zip(pseudo.doc_ids, ids)], dtype=bool)


def choose_hybrid_weight(query_emb: np.ndarray, doc_emb: np.ndarray, bm25, pseudo: PseudoQueries,
                         doc_ids: list[str], weights: Sequence[float] = WEIGHT_GRID, fusion: str = DEFAULT_FUSION,
                         round_trip_depth: int = ROUND_TRIP_DEPTH,
                         fallback_weight: float | None = None) -> WeightChoice:
    """Round trip, one candidate retrieval for the kept pseudo-queries, every weight scored, argmax. Where no
    pseudo-query is left to score, ``fallback_weight`` (the round's evaluation: the default hybrid) is the choice
    and its rule says so; without one that is an error (the label-free CLI)."""
    keep = np.zeros(0, dtype=bool) if not pseudo.ids else \
        round_trip_mask(query_emb, doc_emb, pseudo, doc_ids, round_trip_depth) if round_trip_depth else \
        np.ones(len(pseudo.ids), dtype=bool)
    if not keep.any():
        problem = (f"no pseudo-query passes the round trip (source in the dense top {round_trip_depth})"
                   if pseudo.ids else "no pseudo-query to choose with")
        if fallback_weight is None:
            raise UserError(problem, field="round_trip_depth")
        return WeightChoice(weight=fallback_weight, fusion=fusion, pseudo_queries=0,
                            pseudo_queries_total=len(pseudo.ids), round_trip_depth=round_trip_depth,
                            rule=f"{problem}: the default weight {fallback_weight:g}")
    kept = PseudoQueries([q for q, k in zip(pseudo.ids, keep) if k], [t for t, k in zip(pseudo.texts, keep) if k],
                         [d for d, k in zip(pseudo.doc_ids, keep) if k])
    candidates = HybridCandidates.gather(query_emb[keep], doc_emb, bm25, kept.texts)
    choice = choose_weight(weight_curve(candidates, kept, doc_ids, weights, fusion), fusion)
    choice.pseudo_queries_total = len(pseudo.ids)
    choice.round_trip_depth = round_trip_depth
    choice.rule = RULE.format(depth=round_trip_depth) if round_trip_depth else RULE.split(", on the")[0]
    return choice


@dataclass
class LabelFreeArguments(EmbeddingCacheArguments):
    """Choose the hybrid weight on pseudo-queries (no labels); optionally print the same curve on judged
    queries to check the choice (they never make it)."""
    dataset: str = field(default="", metadata={"help": "BEIR / AIR-Bench folder"})
    pseudo_queries: list[str] = field(default_factory=list, metadata={
        "help": "stage A files, comma-separated (queries.jsonl,heldout.jsonl)"})
    retriever: str = "sentence-transformers/all-MiniLM-L6-v2"
    round_trip_depth: int = ROUND_TRIP_DEPTH
    fusion: str = DEFAULT_FUSION
    judge_split: str | None = field(default=None, metadata={"help": "also score every weight on this split's qrels"})
    output: str | None = None

    def validate(self) -> None:
        if not self.dataset:
            raise UserError("required", field="dataset")
        if not self.pseudo_queries:
            raise UserError("required", field="pseudo_queries")


def judged_curve(embedder, doc_emb: np.ndarray, bm25, dataset: str, split: str, weights: Sequence[float],
                 fusion: str) -> dict[str, float]:
    """Mean nDCG@10 of every weight on a judged split (for checking a label-free choice)."""
    from .data import load_dataset

    ds = load_dataset(dataset, split)
    qids = ds.evaluated_query_ids()
    texts = [ds.queries[q] for q in qids]
    evaluator = RetrievalEvaluator(dict(zip(qids, texts)), ds.corpus, {q: ds.qrels[q] for q in qids})
    candidates = HybridCandidates.gather(embedder.encode_queries(texts), doc_emb, bm25, texts)
    out = {}
    for w in weights:
        scores, ids = candidates.fuse(w, fusion, top_k=1000)
        out[f"{w:g}"] = evaluator.score_run(results_to_run(scores, ids, qids, ds.doc_ids)).score
    return out


def run_label_free(args: LabelFreeArguments) -> dict:
    from inference import Embedder

    from .data import load_dataset
    from .search import bm25_index_cached, encode_corpus_cached

    cache = args.embedding_cache_dir
    ds = load_dataset(args.dataset, split=None)
    pseudo = PseudoQueries.load(args.pseudo_queries, set(ds.corpus))
    embedder = Embedder(args.retriever, show_progress=False)
    doc_emb = encode_corpus_cached(embedder, ds.corpus, cache)
    bm25 = bm25_index_cached(ds.corpus, cache)
    choice = choose_hybrid_weight(embedder.encode_queries(pseudo.texts), doc_emb, bm25, pseudo, ds.doc_ids,
                                  fusion=args.fusion, round_trip_depth=args.round_trip_depth)
    result = {"dataset": ds.path, "retriever": embedder.identity, "choice": choice.as_dict()}
    if args.judge_split:
        judged = judged_curve(embedder, doc_emb, bm25, args.dataset, args.judge_split, WEIGHT_GRID, args.fusion)
        best = max(judged, key=judged.get)
        result["judged"] = {"split": args.judge_split, "ndcg_at_10": judged, "best_weight": float(best),
                            "chosen_ndcg_at_10": judged[f"{choice.weight:g}"],
                            "loss_to_best": judged[best] - judged[f"{choice.weight:g}"]}
    if args.output:
        from inference.io import atomic_write_json

        atomic_write_json(args.output, result)
    return result


def main(argv: Sequence[str]) -> int:
    from inference.config import parse_args

    args = parse_args(LabelFreeArguments, argv, prog="python -m evaluation.label_free")
    result = run_label_free(args)
    c = result["choice"]
    trip = f"round trip: dense top {c['round_trip_depth']}" if c["round_trip_depth"] else "no round trip"
    print(f"label-free choice: BM25 weight {c['weight']:g} ({c['fusion']}), from {c['pseudo_queries']} of "
          f"{c['pseudo_queries_total']} pseudo-queries ({trip})")
    print("| weight | " + " | ".join(c["ndcg_at_10"]) + " |")
    print("|---|" + "---:|" * len(c["ndcg_at_10"]))
    print("| pseudo-queries | " + " | ".join(f"{v:.4f}" for v in c["ndcg_at_10"].values()) + " |")
    judged = result.get("judged")
    if judged:
        print(f"| {judged['split']} qrels | " + " | ".join(f"{v:.4f}" for v in judged["ndcg_at_10"].values()) + " |")
        print(f"on {judged['split']}: chosen {judged['chosen_ndcg_at_10']:.4f}, best weight {judged['best_weight']:g} "
              f"{judged['chosen_ndcg_at_10'] + judged['loss_to_best']:.4f} (loss {100 * judged['loss_to_best']:.2f} "
              "points)")
    return 0


if __name__ == "__main__":
    from inference.errors import run_cli

    run_cli(main)
