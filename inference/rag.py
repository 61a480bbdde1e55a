"""RAG building blocks: a faiss index over a corpus and a LangChain ``BaseRetriever`` over ``Reinforced_IR_Model``.

    from inference import Reinforced_IR_Model
    from inference.rag import CorpusIndex, ReinforcedIRRetriever

    model = Reinforced_IR_Model("sentence-transformers/all-MiniLM-L6-v2")
    index = CorpusIndex.build(model, corpus)               # {id: {"title", "text"}}; or from_embeddings(...)
    retriever = ReinforcedIRRetriever(model=model, index=index, k=3, task="scifact")
    docs = retriever.invoke("ALDH1 expression predicts poor prognosis")   # list[langchain Document]

With a generator on the model, queries are fused with the generated answer exactly as in evaluation.
``CorpusIndex.build(model, corpus, bm25_weight=0.5)`` (or ``.with_bm25(0.5)``) searches hybrid: BM25 fused with
that (fused) query embedding, as ``evaluate --method hybrid`` does (``inference.hybrid``).
``answer_with_citations`` is the small "retrieve, then answer citing [n]" loop ``scripts/rag_demo.py`` runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .embedder import document_text


@dataclass
class CorpusIndex:
    """Exact inner-product faiss index plus the ids and documents it was built from; optionally BM25 too."""
    index: Any
    doc_ids: list[str]
    corpus: dict[str, dict]
    embeddings: np.ndarray | None = None
    bm25: Any = None                 # inference.sparse.BM25Index, when searching hybrid
    bm25_weight: float = 0.0         # BM25's share in the min-max (or RRF) fusion
    fusion: str = "minmax"

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, corpus: dict[str, dict], bm25_weight: float = 0.0,
                        fusion: str = "minmax") -> "CorpusIndex":
        import faiss

        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.shape[0] != len(corpus):
            raise ValueError(f"{emb.shape[0]} embeddings for {len(corpus)} documents")
        index = faiss.IndexFlatIP(emb.shape[1])
        index.add(emb)
        out = cls(index, list(corpus.keys()), corpus, emb)
        return out.with_bm25(bm25_weight, fusion) if bm25_weight > 0 else out

    @classmethod
    def build(cls, model, corpus: dict[str, dict], bm25_weight: float = 0.0, fusion: str = "minmax"
              ) -> "CorpusIndex":
        return cls.from_embeddings(model.encode_corpus(list(corpus.values())), corpus, bm25_weight, fusion)

    def with_bm25(self, weight: float, fusion: str = "minmax", bm25=None) -> "CorpusIndex":
        """Search hybrid from now on: BM25 (built here unless given) with ``weight``, the dense side with the rest."""
        from .sparse import BM25Index

        self.bm25 = bm25 or BM25Index.build(self.corpus)
        self.bm25_weight, self.fusion = weight, fusion
        return self

    def search(self, query_emb: np.ndarray, k: int, queries: Sequence[str] | None = None
               ) -> list[list[tuple[str, float]]]:
        """Top-k ``(doc id, score)``; hybrid when the index has BM25 and the query texts are given."""
        if self.bm25 is not None and queries is not None:
            from .hybrid import HybridCandidates, pool_depth

            candidates = HybridCandidates.gather(query_emb, self.embeddings, self.bm25, list(queries),
                                                 depth=pool_depth(k))
            scores, idx = candidates.fuse(self.bm25_weight, self.fusion, top_k=k)
        else:
            scores, idx = self.index.search(np.ascontiguousarray(query_emb, dtype=np.float32),
                                            min(k, len(self.doc_ids)))
        return [[(self.doc_ids[j], float(s)) for s, j in zip(srow, irow) if j >= 0] for srow, irow in zip(scores, idx)]


def _base_retriever():
    try:
        from langchain_core.retrievers import BaseRetriever
    except ImportError as exc:  # pragma: no cover - langchain-core is in requirements.txt
        raise ImportError("ReinforcedIRRetriever needs langchain-core (pip install langchain-core)") from exc
    return BaseRetriever


class ReinforcedIRRetriever(_base_retriever()):
    """LangChain retriever: fused query embedding (when the model has a generator) → faiss top-k Documents."""

    model: Any
    index: Any
    k: int = 4
    task: str | None = None
    generation: dict = {}

    model_config = {"arbitrary_types_allowed": True}

    def _get_relevant_documents(self, query: str, *, run_manager=None) -> list:
        from langchain_core.documents import Document

        kwargs = dict(self.generation)
        if self.task is not None and getattr(self.model, "generator", None) is not None:
            kwargs["task"] = self.task
        query_emb = self.model.encode_queries([query], **kwargs)
        hits = self.index.search(query_emb, self.k, queries=[query])[0]
        return [Document(page_content=document_text(self.index.corpus[d]),
                         metadata={"id": d, "score": s, "title": self.index.corpus[d].get("title", "")})
                for d, s in hits]


def answer_with_citations(question: str, documents: Sequence, generator, max_new_tokens: int = 96,
                          passage_chars: int = 600) -> str:
    """Ask ``generator`` to answer from the numbered documents, citing them as [n]."""
    listed = "\n\n".join(f"[{n}] {doc.page_content[:passage_chars]}" for n, doc in enumerate(documents, start=1))
    prompt = (f"Answer the question using only the documents below. Cite the documents you use as [1], [2], ...\n\n"
              f"{listed}\n\nQuestion: {question}\nAnswer:")
    return generator.generate([prompt], n=1, temperature=0.0, max_new_tokens=max_new_tokens)[0][0].strip()
