"""``Reinforced_IR_Model``: a retriever whose query embedding fuses E(query) with E(generated answer).

Constructor arguments follow the reference (``research/Reinforced_IR/inference/ir_model.py``) so existing
code keeps working; the differences are fixes (docs/design.md §10.10):

- the constructor's ``temperature`` / ``top_p`` / ``max_tokens`` are actually used (the reference ignored
  them, so its effective temperature was 0; our default ``temperature=0.0`` keeps that behaviour);
- retriever and generator are each loaded once and kept (no delete/reload on every call);
- ``model_type="llm"`` works; generation and encoding kwargs are kept apart;
- ``normalize_embeddings=None`` takes the model folder's own setting (sentence-transformers folders).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from .embedder import Embedder, EmbedderConfig
from .fusion import AUGMENTATION_ENCODERS, DEFAULT_AUGMENTATION_WEIGHT, fuse_embeddings
from .generators import Generator, load_generator
from .prompts import augmentation_prefix, generator_prompt, get_task
from .search import exact_search

logger = logging.getLogger(__name__)


class Reinforced_IR_Model:  # noqa: N801 - the reference's public name
    def __init__(self, model_name_or_path: str, model_class: str | None = None,
                 normalize_embeddings: bool | None = True, use_fp16: bool = True,
                 query_instruction_for_retrieval: str | None = None, devices: Sequence[str] | str | None = None,
                 pooling_method: str | None = None, trust_remote_code: bool | None = None,
                 query_instruction_format: str | None = None, generator_model_name_or_path: str | None = None,
                 temperature: float = 0.0, gpu_memory_utilization: float = 0.5,
                 tensor_parallel_size: int | None = None, top_p: float = 1.0, max_tokens: int = 300,
                 api_key: str | None = None, base_url: str | None = None, model_type: str = "llm_instruct",
                 generator_backend: str | None = None, augmentation_weight: float = DEFAULT_AUGMENTATION_WEIGHT,
                 augmentation_encoder: str = "passage", passage_instruction_for_retrieval: str | None = None,
                 batch_size: int = 64, max_length: int | None = None, seed: int | None = 0,
                 generator_kwargs: dict | None = None, retriever: Embedder | None = None,
                 generator: Generator | None = None):
        if augmentation_encoder not in AUGMENTATION_ENCODERS:
            raise ValueError(f"augmentation_encoder must be one of {AUGMENTATION_ENCODERS}")
        # model_class (FlagEmbedding's auto-mapping hint) is accepted for compatibility: any HF folder loads.
        self.model_class = model_class
        self.embedder_config = EmbedderConfig(
            model_name_or_path=model_name_or_path, pooling_method=pooling_method, normalize=normalize_embeddings,
            query_instruction=query_instruction_for_retrieval or None,
            passage_instruction=passage_instruction_for_retrieval or None,
            instruction_format=query_instruction_format or "{}{}", max_length=max_length, batch_size=batch_size,
            devices=[devices] if isinstance(devices, str) else (list(devices) if devices else None),
            dtype="auto" if use_fp16 else "fp32", trust_remote_code=bool(trust_remote_code))
        self.generator_name = generator_model_name_or_path
        self.generation = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_tokens, "seed": seed}
        self.augmentation_weight = augmentation_weight
        self.augmentation_encoder = augmentation_encoder
        # The reference's vLLM and OpenAI settings; load_generator gives each backend its own. generator_kwargs win.
        self._generator_args = dict(backend=generator_backend, model_type=model_type, api_key=api_key,
                                    base_url=base_url, gpu_memory_utilization=gpu_memory_utilization,
                                    tensor_parallel_size=tensor_parallel_size, **(generator_kwargs or {}))
        self._retriever = retriever
        self._generator = generator

    # ------------------------------------------------------------------ lazily built parts
    @property
    def retriever(self) -> Embedder:
        if self._retriever is None:
            self._retriever = Embedder(self.embedder_config)
        return self._retriever

    @property
    def generator(self) -> Generator | None:
        if self._generator is None and self.generator_name:
            self._generator = load_generator(self.generator_name, **self._generator_args)
        return self._generator

    # ------------------------------------------------------------------ API
    def generate_augmentations(self, queries: Sequence[str], task_instruction: str, answer_type: str,
                               **generation) -> list[str]:
        """One augmentation (hypothetical answer) per query, from prompt P."""
        if self.generator is None:
            raise ValueError("no generator_model_name_or_path was given")
        prompts = [generator_prompt(q, task_instruction, answer_type) for q in queries]
        params = {**self.generation, **generation}
        return [outs[0] for outs in self.generator.generate(prompts, n=1, **params)]

    def encode_augmentations(self, augmentations: Sequence[str]) -> np.ndarray:
        texts = [augmentation_prefix() + a for a in augmentations]
        if self.augmentation_encoder == "query":
            return self.retriever.encode_queries(texts)
        return self.retriever.encode(texts, instruction=self.embedder_config.passage_instruction,
                                     desc="encode augmentations")

    def encode_queries(self, queries: Sequence[str] | str, task_instruction: str | None = None,
                       answer_type: str | None = None, task: str | None = None,
                       augmentations: Sequence[str] | None = None, **generation) -> np.ndarray:
        """Fused ``(1−w)·E_q(q) + w·E(PREFIX + answer)``; plain ``E_q(q)`` without a generator.

        ``task`` (e.g. ``"scifact"``) fills ``task_instruction``/``answer_type`` from the prompt data.
        Pre-computed ``augmentations`` skip generation. A single string is one query and gives one vector
        ``[D]`` (as in sentence-transformers). The reference's positional order
        ``encode_queries(task_instruction, answer_type, queries)`` is recognised (two strings, then a list).
        """
        if isinstance(queries, str) and isinstance(answer_type, (list, tuple)):
            queries, task_instruction, answer_type = answer_type, queries, task_instruction
        if isinstance(queries, str):
            return self.encode_queries([queries], task_instruction, answer_type, task, augmentations, **generation)[0]
        queries = list(queries)
        query_emb = self.retriever.encode_queries(queries)
        if augmentations is None:
            if self.generator is None:
                return query_emb
            if task is not None:
                spec = get_task(task)
                task_instruction = task_instruction or spec.task_instruction
                answer_type = answer_type or spec.answer_type
            if task_instruction is None or answer_type is None:
                raise ValueError("encode_queries needs task_instruction and answer_type (or task=)")
            augmentations = self.generate_augmentations(queries, task_instruction, answer_type, **generation)
        if len(augmentations) != len(queries):
            raise ValueError(f"{len(augmentations)} augmentations for {len(queries)} queries")
        return fuse_embeddings(query_emb, self.encode_augmentations(augmentations), self.augmentation_weight)

    def encode_corpus(self, corpus: Sequence[str | dict]) -> np.ndarray:
        return self.retriever.encode_corpus(list(corpus))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.retriever.encode(list(texts))

    def search(self, queries: Sequence[str], corpus: Sequence[str | dict] | dict, top_k: int = 10,
               corpus_embeddings: np.ndarray | None = None, bm25_weight: float = 0.0, fusion: str = "minmax",
               bm25_index=None, **encode_kwargs) -> list[list[tuple[str | int, float]]]:
        """Top-k ``(doc id or index, score)`` per query; ``corpus`` may be a list or ``{id: doc}``.

        ``bm25_weight`` > 0 searches hybrid: BM25 (``bm25_index``, else built from ``corpus``) fused with the
        (augmented) dense query, BM25 taking that share of the min-max fusion (``inference.hybrid``)."""
        if isinstance(corpus, dict):
            ids, docs = list(corpus.keys()), list(corpus.values())
        else:
            docs = list(corpus)
            ids = list(range(len(docs)))
        doc_emb = corpus_embeddings if corpus_embeddings is not None else self.encode_corpus(docs)
        query_emb = self.encode_queries(queries, **encode_kwargs)
        if bm25_weight > 0:
            from .hybrid import HybridCandidates, pool_depth
            from .sparse import BM25Index

            bm25 = bm25_index or BM25Index.build(docs)
            candidates = HybridCandidates.gather(query_emb, doc_emb, bm25, list(queries), depth=pool_depth(top_k))
            scores, idx = candidates.fuse(bm25_weight, fusion, top_k)
        else:
            scores, idx = exact_search(query_emb, doc_emb, top_k)
        return [[(ids[j], float(s)) for s, j in zip(srow, irow) if j >= 0] for srow, irow in zip(scores, idx)]
