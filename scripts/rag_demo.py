"""Answer a question over a corpus with retrieval + the bundled SmolLM2, citing the retrieved documents.

    python -m scripts.rag_demo --question "Does ALDH1 expression predict poor prognosis in breast cancer?"
    python -m scripts.rag_demo --dataset DIR --retriever runs/<name>/round_1/retriever --augment true

Retrieval goes through the LangChain adapter (``inference.rag.ReinforcedIRRetriever``) over a faiss index of the
corpus (embeddings cached on disk, so only the first run encodes the corpus). ``--augment`` fuses the query with
the generator's answer, as Reinforced-IR does. ``--max_docs N`` indexes only the first N documents (quick try).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from evaluation.data import load_dataset
from evaluation.download import ensure_beir_dataset
from evaluation.search import encode_corpus_cached
from inference.config import EmbeddingCacheArguments, parse_args
from inference.errors import run_cli
from inference.io import atomic_write_json


@dataclass
class RagDemoArguments(EmbeddingCacheArguments):
    """Retrieve, then answer citing [n]."""
    question: str = field(default="Does ALDH1 expression predict poor prognosis in breast cancer?")
    dataset: str | None = field(default=None, metadata={"help": "corpus folder (default: SciFact)"})
    retriever: str = "sentence-transformers/all-MiniLM-L6-v2"
    generator: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    task: str = "scifact"
    k: int = 3
    augment: bool = field(default=False, metadata={"help": "fuse the query with the generator's answer"})
    max_docs: int | None = None
    max_new_tokens: int = 96
    output: str | None = field(default=None, metadata={"help": "write question, documents and answer as JSON"})


def main(argv: Sequence[str]) -> int:
    from inference import Reinforced_IR_Model, load_generator
    from inference.rag import CorpusIndex, ReinforcedIRRetriever, answer_with_citations

    args = parse_args(RagDemoArguments, argv, prog="python -m scripts.rag_demo")
    ds = load_dataset(ensure_beir_dataset("scifact", args.dataset), split=None)
    corpus = dict(list(ds.corpus.items())[:args.max_docs]) if args.max_docs else ds.corpus
    generator = load_generator(args.generator, backend="hf", show_progress=False)
    # the same loaded generator answers and (with --augment) writes the query augmentation
    model = Reinforced_IR_Model(args.retriever, generator=generator if args.augment else None)
    cache = args.embedding_cache_dir
    index = CorpusIndex.from_embeddings(encode_corpus_cached(model.retriever, corpus, cache), corpus)
    retriever = ReinforcedIRRetriever(model=model, index=index, k=args.k, task=args.task)
    documents = retriever.invoke(args.question)
    answer = answer_with_citations(args.question, documents, generator, args.max_new_tokens)
    print(f"Question: {args.question}\n")
    for n, doc in enumerate(documents, start=1):
        print(f"[{n}] {doc.metadata['id']}  {doc.metadata['title'][:90]}  (score {doc.metadata['score']:.3f})")
    print(f"\nAnswer: {answer}")
    if args.output:
        atomic_write_json(args.output, {"question": args.question, "answer": answer,
                                        "documents": [doc.metadata for doc in documents]})
    return 0


if __name__ == "__main__":
    run_cli(main)
