"""``RetrievalEvaluator``: judged queries + corpus + qrels → metrics, for any retriever.

One object does the scoring everywhere: the evaluate CLI scores each method's run with :meth:`score_run`; round
evaluation and the held-out pseudo-query signal call the evaluator on an embedder (:meth:`__call__`: cached
corpus encoding, exact search, pytrec_eval). In the role of sentence-transformers' ``InformationRetrievalEvaluator``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

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
