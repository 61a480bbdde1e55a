"""Query encoders compared by the evaluation harness, all on one embedder and one generator.

- ``raw``: E_q(q).
- ``hyde`` (Gao et al., 2022): the generator writes a hypothetical document d; the query vector is the
  mean of E_q(q) and E_p(d) (several samples are averaged with it when ``num_generations`` > 1).
- ``query2doc`` (Wang et al., 2023, dense variant): E_q(q + " [SEP] " + d), d a generated pseudo-document.
- ``reinforced_ir``: (1−w)·E_q(q) + w·E_p(PREFIX + answer) with the generator prompt P
  (via ``Reinforced_IR_Model``, the same code users call).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference import Embedder, Generator, Reinforced_IR_Model
from inference.prompts import TaskPrompt, hyde_prompt, query2doc_prompt

METHODS = ("raw", "hyde", "query2doc", "reinforced_ir")
GENERATIVE_METHODS = ("hyde", "query2doc", "reinforced_ir")


@dataclass
class GenerationSettings:
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    num_generations: int = 1
    seed: int = 0


@dataclass
class EncodedQueries:
    embeddings: np.ndarray
    generations: list[list[str]] = field(default_factory=list)


def _generate(generator: Generator, prompts: list[str], settings: GenerationSettings) -> list[list[str]]:
    return generator.generate(prompts, n=settings.num_generations, temperature=settings.temperature,
                              top_p=settings.top_p, max_new_tokens=settings.max_new_tokens, seed=settings.seed)


def encode_queries(method: str, queries: list[str], embedder: Embedder, generator: Generator | None,
                   task: TaskPrompt, settings: GenerationSettings, augmentation_weight: float = 0.2
                   ) -> EncodedQueries:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    if method == "raw":
        return EncodedQueries(embedder.encode_queries(queries))
    if generator is None:
        raise ValueError(f"method {method!r} needs a generator")
    if method == "hyde":
        docs = _generate(generator, [hyde_prompt(q, task) for q in queries], settings)
        q_emb = embedder.encode_queries(queries)
        k = settings.num_generations
        d_emb = embedder.encode_corpus([d for row in docs for d in row]).reshape(len(queries), k, -1)
        return EncodedQueries(((q_emb + d_emb.sum(1)) / (k + 1)).astype(np.float32), docs)
    if method == "query2doc":
        docs = _generate(generator, [query2doc_prompt(q, task) for q in queries], settings)
        sep = getattr(embedder.tokenizer, "sep_token", None) or ""
        joined = [f"{q} {sep} {' '.join(row)}".replace("  ", " ") for q, row in zip(queries, docs)]
        return EncodedQueries(embedder.encode_queries(joined), docs)
    model = Reinforced_IR_Model(embedder.config.model_name_or_path, retriever=embedder, generator=generator,
                                augmentation_weight=augmentation_weight, temperature=settings.temperature,
                                top_p=settings.top_p, max_tokens=settings.max_new_tokens, seed=settings.seed)
    answers = model.generate_augmentations(queries, task.task_instruction, task.answer_type)
    return EncodedQueries(model.encode_queries(queries, augmentations=answers), [[a] for a in answers])
