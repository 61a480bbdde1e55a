"""Exact inner-product search with faiss, chunked over the corpus so a 1M-document corpus fits in memory.

Each chunk gets its own flat IP index (on GPU when faiss has GPU support); per-chunk top-k lists are merged.
faiss pads short result lists with id −1 (docs/design.md §10.4); those entries are dropped, never used as ids.
"""
from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def _faiss():
    import faiss

    return faiss


def faiss_gpu_count() -> int:
    faiss = _faiss()
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def _index(dim: int, use_gpu: bool):
    faiss = _faiss()
    index = faiss.IndexFlatIP(dim)
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def exact_search(query_emb: np.ndarray, doc_emb: np.ndarray, top_k: int, chunk_size: int = 250_000,
                 use_gpu: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(scores, ids)`` of shape [Q, k'] with k' = min(top_k, N), best first; ids index ``doc_emb``."""
    query_emb = np.ascontiguousarray(query_emb, dtype=np.float32)
    n_docs = doc_emb.shape[0]
    k = min(top_k, n_docs)
    if k == 0 or query_emb.shape[0] == 0:
        return np.zeros((query_emb.shape[0], 0), np.float32), np.zeros((query_emb.shape[0], 0), np.int64)
    use_gpu = faiss_gpu_count() > 0 if use_gpu is None else use_gpu
    best_scores = np.full((query_emb.shape[0], k), -np.inf, dtype=np.float32)
    best_ids = np.full((query_emb.shape[0], k), -1, dtype=np.int64)
    for start in range(0, n_docs, chunk_size):
        chunk = np.ascontiguousarray(doc_emb[start:start + chunk_size], dtype=np.float32)
        index = _index(chunk.shape[1], use_gpu)
        index.add(chunk)
        scores, ids = index.search(query_emb, min(k, chunk.shape[0]))
        valid = ids >= 0
        ids = np.where(valid, ids + start, -1)
        scores = np.where(valid, scores, -np.inf).astype(np.float32)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
    return best_scores, best_ids


def results_to_run(scores: np.ndarray, ids: np.ndarray, query_ids: list[str], doc_ids: list[str]) -> dict:
    """``{qid: {doc_id: score}}`` for pytrec_eval, dropping padded (−1) hits."""
    run: dict[str, dict[str, float]] = {}
    for qi, qid in enumerate(query_ids):
        hits = {}
        for score, did in zip(scores[qi], ids[qi]):
            if did >= 0:
                hits[doc_ids[did]] = float(score)
        run[qid] = hits
    return run
