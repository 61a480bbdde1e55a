"""Corpus encoding with an on-disk cache, then exact faiss search (see ``inference.search``).

Cache key = embedder identity (model, pooling, normalisation, max length, instructions) + a hash of the
corpus texts, so a changed model or corpus can never be served stale vectors. Files are written
atomically; a free-space check refuses clearly before writing a large matrix. BM25 indexes are cached beside
the vectors (``<cache>/bm25/<key>``), keyed by corpus hash + BM25 settings + bm25s version.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from inference.embedder import Embedder, document_text
from inference.errors import UserError
from inference.io import atomic_save_npy, atomic_write_json, text_sha256
from inference.search import exact_search, results_to_run
from inference.sparse import BM25Config, BM25Index

logger = logging.getLogger(__name__)


def check_free_space(directory: Path, needed_bytes: int, margin: float = 1.2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed_bytes * margin:
        raise UserError(f"not enough free disk space: need {needed_bytes * margin / 2**20:.0f} MiB, "
                        f"have {free / 2**20:.0f} MiB", file=directory)


def corpus_cache_key(embedder: Embedder, texts: list[str]) -> str:
    ident = json.dumps(embedder.identity, sort_keys=True)
    return hashlib.sha256((ident + text_sha256(texts)).encode()).hexdigest()[:32]


def encode_corpus_cached(embedder: Embedder, corpus: dict[str, dict] | list, cache_dir: str | os.PathLike | None,
                         ) -> np.ndarray:
    docs = list(corpus.values()) if isinstance(corpus, dict) else list(corpus)
    texts = [document_text(d) for d in docs]
    if cache_dir is None:
        return embedder.encode_corpus(texts)
    cache_dir = Path(cache_dir)
    key = corpus_cache_key(embedder, texts)
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        emb = np.load(path)
        if emb.shape == (len(texts), embedder.dim):
            logger.info("corpus embeddings loaded from cache %s", path)
            return emb
        logger.warning("ignoring cache %s with shape %s", path, emb.shape)
    # refuse before minutes of encoding, not after: float32 vectors plus a little room for the sidecar
    check_free_space(cache_dir, len(texts) * embedder.dim * 4 + (1 << 20))
    emb = embedder.encode_corpus(texts)
    atomic_save_npy(path, emb)
    atomic_write_json(cache_dir / f"{key}.json", {"embedder": embedder.identity, "documents": len(texts)})
    return emb


def search_run(query_emb: np.ndarray, query_ids: list[str], doc_emb: np.ndarray, doc_ids: list[str],
               top_k: int) -> dict[str, dict[str, float]]:
    scores, ids = exact_search(query_emb, doc_emb, top_k)
    return results_to_run(scores, ids, query_ids, doc_ids)


def bm25_index_cached(corpus: dict[str, dict] | list, cache_dir: str | os.PathLike | None,
                      config: BM25Config | None = None) -> BM25Index:
    """The corpus' BM25 index, built once per corpus and settings (a few seconds for 5k documents)."""
    config = config or BM25Config()
    docs = list(corpus.values()) if isinstance(corpus, dict) else list(corpus)
    if cache_dir is None:
        return BM25Index.build(docs, config)
    texts = [document_text(d) for d in docs]
    key = hashlib.sha256((json.dumps(config.identity, sort_keys=True) + text_sha256(texts)).encode()).hexdigest()[:32]
    path = Path(cache_dir) / "bm25" / key
    if path.is_dir():
        try:
            index = BM25Index.load(path)
            if index.num_documents == len(texts):
                logger.info("BM25 index loaded from cache %s", path)
                return index
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable BM25 cache %s (%s)", path, exc)
    index = BM25Index.build(texts, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=path.parent))
    try:  # written whole in a temp folder, then renamed: a reader never sees half an index
        index.save(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return index
