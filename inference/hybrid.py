"""Dense + BM25 hybrid retrieval: one candidate set per query, scored exactly by both, then fused.

Candidates are the union of the dense top-n and the BM25 top-n. Both scores are computed exactly for every
candidate (a dot product with the stored document vector; the BM25 row of the query), so no candidate gets an
invented "missing" score. Fusions, with ``weight`` the share of BM25:

- ``minmax``: ``weight · norm(bm25) + (1 − weight) · norm(dense)``, each min-max normalised over the
  query's candidates. ``weight`` 0 is the dense ranking, 1 the BM25 ranking.
- ``rrf`` (Cormack et al., 2009): ``2 · (weight / (k + rank_bm25) + (1 − weight) / (k + rank_dense))``,
  ranks among the candidates, k 60; ``weight`` 0.5 is plain reciprocal-rank fusion.

``HybridCandidates`` is built once and fused at any weight, so a weight grid costs one retrieval.

The pool depth (``DEFAULT_HYBRID_DEPTH`` per side) shapes min-max fusion, so every hybrid here uses the same one:
evaluation, the label-free weight choice, the hybrid teacher, ``Reinforced_IR_Model`` and the RAG retriever
(``pool_depth``: deeper only when a caller asks for more results than that). 100 was chosen on SciFact train
qrels (README "One pool depth" under "BM25, hybrid"): level with 1,000 on the first stage over all 809 train
queries (0.5 / 0.5: 0.7355 vs 0.7335; 0.4: 0.7348 vs 0.7361) and ahead after query-likelihood reranking of 120 of
them (0.7847 vs 0.7835 at each depth's best weight); the label-free and rerank weights were chosen at it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .search import exact_search
from .sparse import BM25Index, top_indices

FUSIONS = ("minmax", "rrf")
DEFAULT_FUSION = "minmax"
DEFAULT_HYBRID_WEIGHT = 0.5
DEFAULT_HYBRID_DEPTH = 100
RRF_K = 60


def _minmax(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based rank of each entry by descending score, ties by position."""
    order = np.lexsort((np.arange(len(x)), -x))
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    return ranks


def fuse_scores(dense: np.ndarray, sparse: np.ndarray, weight: float, fusion: str = DEFAULT_FUSION,
                rrf_k: int = RRF_K) -> np.ndarray:
    """Fused scores of one query's candidates (higher is better)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"hybrid weight must be in [0, 1], got {weight}")
    if fusion == "minmax":
        return weight * _minmax(sparse.astype(np.float64)) + (1.0 - weight) * _minmax(dense.astype(np.float64))
    if fusion == "rrf":
        return 2.0 * (weight / (rrf_k + _ranks(sparse)) + (1.0 - weight) / (rrf_k + _ranks(dense)))
    raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")


def pool_depth(top_k: int, depth: int = DEFAULT_HYBRID_DEPTH) -> int:
    """Candidates per side for a caller that wants ``top_k`` fused results."""
    return max(depth, top_k)


@dataclass
class HybridCandidates:
    """Per query: candidate document indices and their exact dense and BM25 scores."""
    doc_indices: list[np.ndarray]
    dense: list[np.ndarray]
    sparse: list[np.ndarray]

    @classmethod
    def gather(cls, query_emb: np.ndarray, doc_emb: np.ndarray, bm25: BM25Index, queries: Sequence[str],
               depth: int = DEFAULT_HYBRID_DEPTH, extra: Sequence[np.ndarray] | None = None) -> "HybridCandidates":
        """Per query the union of both top-``depth`` lists, plus ``extra[q]`` (documents a caller must score)."""
        if len(queries) != query_emb.shape[0]:
            raise ValueError(f"{len(queries)} query texts for {query_emb.shape[0]} query vectors")
        _, dense_ids = exact_search(query_emb, doc_emb, depth)
        out = cls([], [], [])
        for qi, bm25_row in enumerate(bm25.iter_scores(queries)):
            lexical = top_indices(bm25_row, depth)
            pool = np.union1d(dense_ids[qi][dense_ids[qi] >= 0], lexical[bm25_row[lexical] > 0])
            if extra is not None:
                pool = np.union1d(pool, np.asarray(extra[qi], dtype=pool.dtype))
            out.doc_indices.append(pool)
            out.dense.append(np.asarray(doc_emb[pool], dtype=np.float32) @ query_emb[qi].astype(np.float32))
            out.sparse.append(bm25_row[pool])
        return out

    def fuse(self, weight: float = DEFAULT_HYBRID_WEIGHT, fusion: str = DEFAULT_FUSION, top_k: int = 1000
             ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` [Q, k] like ``exact_search``: best first, padded with id −1."""
        k = min(top_k, max((len(p) for p in self.doc_indices), default=0))
        scores = np.full((len(self.doc_indices), k), -np.inf, dtype=np.float32)
        ids = np.full((len(self.doc_indices), k), -1, dtype=np.int64)
        for qi, pool in enumerate(self.doc_indices):
            fused = fuse_scores(self.dense[qi], self.sparse[qi], weight, fusion)
            top = top_indices(fused, k)
            scores[qi, :len(top)] = fused[top]
            ids[qi, :len(top)] = pool[top]
        return scores, ids
