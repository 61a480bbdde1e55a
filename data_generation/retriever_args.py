"""Retriever options shared by the stages that encode (RLRF scoring, hard-negative mining)."""
from __future__ import annotations

from dataclasses import dataclass, field

from inference.embedder import Embedder


@dataclass
class RetrieverArguments:
    retriever: str = field(default="sentence-transformers/all-MiniLM-L6-v2",
                           metadata={"help": "retriever being adapted (reference: retrieval_model_name)"})
    pooling_method: str | None = None
    normalize_embeddings: bool | None = None
    query_instruction: str | None = field(default=None, metadata={"help": "reference: retrieval_query_prompt"})
    passage_instruction: str | None = None
    max_length: int | None = None
    retriever_batch_size: int = 64
    augmentation_weight: float = 0.2


def build_retriever(args: RetrieverArguments) -> Embedder:
    return Embedder(args.retriever, pooling_method=args.pooling_method, normalize=args.normalize_embeddings,
                    query_instruction=args.query_instruction or None,
                    passage_instruction=args.passage_instruction or None, max_length=args.max_length,
                    batch_size=args.retriever_batch_size, show_progress=False)


def encode_augmentations(embedder: Embedder, answers: list[str]):
    """E(PREFIX + answer) on the passage side: the one augmentation encoder used by every stage and at
    inference (the reference used the query side in stage B only, docs/design.md §10.9)."""
    from inference.prompts import augmentation_prefix

    return embedder.encode([augmentation_prefix() + a for a in answers],
                           instruction=embedder.config.passage_instruction, desc="encode augmentations")
