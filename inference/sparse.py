"""BM25 over a corpus with ``bm25s`` + ``PyStemmer`` (maintained libraries, no hand-written BM25).

Defaults are the usual BEIR baseline: English stop words, Snowball English stemming, Lucene's BM25 with
k1 1.2, b 0.75, documents as ``title + " " + text`` (the same text the dense encoder sees). The index is
saved with ``bm25s``' own format; ``evaluation.search`` caches it under a key of corpus hash + settings.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .embedder import document_text

logger = logging.getLogger(__name__)
SETTINGS_FILE = "rir_bm25.json"


@dataclass(frozen=True)
class BM25Config:
    k1: float = 1.2
    b: float = 0.75
    method: str = "lucene"
    stopwords: str = "en"
    stemmer: str | None = "english"

    @property
    def identity(self) -> dict:
        import bm25s

        return {**asdict(self), "bm25s": bm25s.__version__}


class BM25Index:
    """A bm25s index plus the tokeniser settings that built it, so queries are tokenised the same way."""

    def __init__(self, model, config: BM25Config, num_documents: int):
        self.model = model
        self.config = config
        self.num_documents = num_documents
        self._stemmer = None
        if config.stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(config.stemmer)

    @classmethod
    def build(cls, corpus: Sequence[str | dict] | dict, config: BM25Config | None = None) -> "BM25Index":
        import bm25s

        config = config or BM25Config()
        docs = list(corpus.values()) if isinstance(corpus, dict) else list(corpus)
        index = cls(bm25s.BM25(k1=config.k1, b=config.b, method=config.method), config, len(docs))
        tokens = index.tokenize([document_text(d) for d in docs])
        index.model.index(tokens, show_progress=False)
        return index

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(list(texts), stopwords=self.config.stopwords, stemmer=self._stemmer,
                              return_ids=False, show_progress=False)

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        self.model.save(str(directory), show_progress=False)
        (directory / SETTINGS_FILE).write_text(json.dumps({"config": asdict(self.config),
                                                            "num_documents": self.num_documents}))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "BM25Index":
        import bm25s

        directory = Path(directory)
        meta = json.loads((directory / SETTINGS_FILE).read_text())
        model = bm25s.BM25.load(str(directory), show_progress=False, verbosity=0)
        return cls(model, BM25Config(**meta["config"]), meta["num_documents"])

    def iter_scores(self, queries: Sequence[str]):
        """BM25 score of every document, one float32 [N] row per query (0 where no query term matches).

        One row at a time, so a million-document corpus never needs a [Q, N] matrix."""
        vocab = self.model.vocab_dict
        for tokens in self.tokenize(queries):
            known = [t for t in tokens if t in vocab]  # unseen words score nothing; bm25s would reject them
            if known:
                yield np.asarray(self.model.get_scores(known), dtype=np.float32)
            else:
                yield np.zeros(self.num_documents, dtype=np.float32)

    def search(self, queries: Sequence[str], top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` [Q, k], best first (ties by document order); documents that match no query term
        are left out, padded with id −1 as faiss pads."""
        k = min(top_k, self.num_documents)
        scores_out = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids_out = np.full((len(queries), k), -1, dtype=np.int64)
        for i, row in enumerate(self.iter_scores(queries)):
            top = top_indices(row, k)
            top = top[row[top] > 0]
            scores_out[i, :len(top)] = row[top]
            ids_out[i, :len(top)] = top
        return scores_out, ids_out


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, ties broken by index (deterministic)."""
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]
