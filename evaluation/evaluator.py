"""``RetrievalEvaluator``: judged queries + corpus + qrels → metrics, for any retriever.

One object does the scoring everywhere: the evaluate CLI scores each method's run with :meth:`score_run`; round
evaluation and the held-out pseudo-query signal call the evaluator on an embedder (:meth:`__call__`: cached
corpus encoding, exact search, pytrec_eval). In the role of sentence-transformers' ``InformationRetrievalEvaluator``.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.errors import UserError

from .data import RetrievalDataset, load_dataset
from .metrics import mean_metrics, per_query_metrics
from .search import encode_corpus_cached, search_run

PRIMARY_METRIC = "ndcg@10"


@dataclass
class RetrievalResult:
    """Mean metrics over the evaluated queries and each query's nDCG@10 (for paired tests)."""
    metrics: dict[str, float]
    per_query: dict[str, float]

    @property
    def score(self) -> float:
        return self.metrics[PRIMARY_METRIC]


def select_queries(query_ids: list[str], max_queries: int | None, seed: int) -> list[str]:
    """A fixed, seeded subset (in corpus order) so every method is scored on the same queries."""
    if max_queries is None or max_queries >= len(query_ids):
        return list(query_ids)
    chosen = set(random.Random(seed).sample(sorted(query_ids), max_queries))
    return [q for q in query_ids if q in chosen]


def evaluation_query_ids(ds: RetrievalDataset, split: str, query_ids_file: str | os.PathLike | None = None,
                         max_queries: int | None = None, seed: int = 0) -> list[str]:
    """The judged queries of ``ds``, limited to the ids in ``query_ids_file`` (one per line) and to a seeded
    ``max_queries`` subset when given."""
    judged = ds.evaluated_query_ids()
    if query_ids_file:
        path = Path(query_ids_file)
        if not path.is_file():
            raise UserError("file not found", file=path, field="query_ids_file")
        wanted = {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
        judged = [q for q in judged if q in wanted]
        if not judged:
            raise UserError(f"none of its {len(wanted)} ids is a judged query of split {split!r}", file=path)
    return select_queries(judged, max_queries, seed)


class RetrievalEvaluator:
    """Scores runs over a fixed set of judged queries; a judged query missing from a run counts as 0.

    ``corpus`` is needed only to search (``__call__``); scoring given runs (``score_run``) does without it."""

    def __init__(self, queries: dict[str, str], corpus: dict[str, dict] | None, qrels: dict[str, dict[str, int]],
                 name: str = "", top_k: int = 100, cache_dir: str | os.PathLike | None = None):
        self.queries, self.corpus, self.qrels = queries, corpus, qrels
        self.name, self.top_k, self.cache_dir = name, top_k, cache_dir

    @classmethod
    def from_pseudo_queries(cls, rows: list[dict], corpus: dict[str, dict], **kwargs) -> "RetrievalEvaluator":
        """Held-out pseudo-queries: each row's source document (``doc_id``) is its only relevant document."""
        return cls({r["id"]: r["query"] for r in rows}, corpus, {r["id"]: {r["doc_id"]: 1} for r in rows}, **kwargs)

    @classmethod
    def from_dataset(cls, path: str | os.PathLike, split: str, query_ids_file: str | os.PathLike | None = None,
                     max_queries: int | None = None, seed: int = 0, **kwargs) -> "RetrievalEvaluator":
        """A BEIR / AIR-Bench folder's judged queries of ``split`` (see :func:`evaluation_query_ids`)."""
        ds = load_dataset(path, split)
        ids = evaluation_query_ids(ds, split, query_ids_file, max_queries, seed)
        return cls({q: ds.queries[q] for q in ids}, ds.corpus, {q: ds.qrels[q] for q in ids},
                   **{"name": f"{Path(path).name}/{split}", **kwargs})

    @property
    def query_ids(self) -> list[str]:
        return list(self.queries)

    def score_run(self, run: dict[str, dict[str, float]]) -> RetrievalResult:
        scored = per_query_metrics(self.qrels, run)
        ids = self.query_ids
        return RetrievalResult(mean_metrics(scored, ids), {q: scored[q][PRIMARY_METRIC] for q in ids if q in scored})

    def __call__(self, encoder, corpus_embeddings: np.ndarray | None = None) -> RetrievalResult:
        """Dense retrieval with ``encoder`` (an ``inference.Embedder``): corpus vectors from the cache when given."""
        doc_emb = corpus_embeddings if corpus_embeddings is not None else \
            encode_corpus_cached(encoder, self.corpus, self.cache_dir)
        query_emb = encoder.encode_queries([self.queries[q] for q in self.query_ids])
        return self.score_run(search_run(query_emb, self.query_ids, doc_emb, list(self.corpus), self.top_k))
