"""Stage D: retriever training rows: a greedy answer per pseudo-query and hard negatives mined with faiss.

    python -m data_generation.generate_retriever_data --config CONFIG [--flag value ...]

CONFIG: a YAML of the options below, e.g. ``runs/cpu-demo-scifact/round_1/configs/retriever_data.yaml``, which
``python -m scripts.self_boost --config configs/cpu-demo/scifact.yaml --emit_commands`` writes from the
profile's ``retriever_data`` block (the one place those settings live) and the round's models and paths.

Mining (docs/design.md §6) searches the whole corpus with the query (and, separately, with the answer encoded as
``PREFIX + answer`` on the passage side), finds the source document's rank, and with ``neg_type=95neg`` (the
reference default) takes the ``neg_window`` ranks starting at the first rank after the positive whose score is ≤
0.95 × the positive's; when the positive is not found, or no such rank exists, it samples from ranks [30, 200).
Answer negatives use the answer's own scores (the reference compared against the query's, docs/design.md §10.4).
Depths and windows are clamped to the corpus, and faiss −1 padding is never used as an id. With ``filter_data`` a
pseudo-query whose source document is not in the retriever's top ``filter_num`` is dropped (round-trip consistency,
as in Promptagator); ``dropped.jsonl`` lists it with the reason ``failed_round_trip``. Rows: ``{id, query, answer,
pos, neg, neg_answer, doc_id, pos_ids, neg_ids, pos_rank}`` (:mod:`.rows`).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from evaluation.data import load_dataset
from evaluation.search import encode_corpus_cached
from inference.config import EmbeddingCacheArguments
from inference.embedder import document_text
from inference.errors import UserError, run_cli
from inference.manifest import input_record
from inference.prompts import generator_prompt, get_task
from inference.search import exact_search

from .rows import training_row
from .retriever_args import RetrieverArguments, build_retriever, encode_augmentations
from .stage import (ChunkResult, StageArguments, StageRun, build_generator, load_rows,
                    require_complete_stage, stage_main)

logger = logging.getLogger(__name__)
STAGE = "generate_retriever_data"
NEG_TYPES = ("95neg", "hard", "random")


@dataclass
class RetrieverDataArguments(RetrieverArguments, StageArguments, EmbeddingCacheArguments):
    """Stage D: answers + mined hard negatives for retriever training."""
    queries_path: str = field(default="", metadata={"help": "queries.jsonl from generate_queries"})
    dataset: str = field(default="", metadata={"help": "the corpus the queries were generated from"})
    neg_type: str = field(default="95neg", metadata={"help": "95neg | hard | random"})
    mining_depth: int = 2000
    score_cutoff: float = 0.95
    neg_window: int = 50
    fallback_range: list[int] = field(default_factory=lambda: [30, 200])
    num_negatives: int = 15
    filter_data: bool = field(default=False, metadata={
        "help": "round-trip filtering (Promptagator): keep a pseudo-query only if the retriever ranks its source "
                "document in its top filter_num"})
    filter_num: int = field(default=20, metadata={"help": "the round trip's depth k (ranks 0 .. k-1)"})
    max_new_tokens: int = 128
    temperature: float = 0.0

    def validate(self) -> None:
        super().validate()
        for name in ("queries_path", "dataset"):
            if not getattr(self, name):
                raise UserError("required", field=name)
        if self.neg_type not in NEG_TYPES:
            raise UserError(f"must be one of {', '.join(NEG_TYPES)}", field="neg_type")
        if len(self.fallback_range) != 2 or self.fallback_range[0] >= self.fallback_range[1]:
            raise UserError("must be two increasing ranks, e.g. [30, 200]", field="fallback_range")


def passes_round_trip(pos_rank: int, k: int) -> bool:
    """Promptagator's round trip: the source ranked in the top ``k`` (0-based ranks 0 .. k-1; −1 = not retrieved)."""
    return 0 <= pos_rank < k


def mine_negatives(ids: np.ndarray, scores: np.ndarray, pos_index: int, n_docs: int, args: RetrieverDataArguments,
                   rng: random.Random) -> tuple[list[int], int]:
    """Negative corpus indices (best-ranked first) and the positive's rank (−1 when not retrieved)."""
    valid = ids >= 0
    ids, scores = ids[valid], scores[valid]
    hits = np.nonzero(ids == pos_index)[0]
    pos_rank = int(hits[0]) if len(hits) else -1
    lo, hi = args.fallback_range
    lo, hi = min(lo, max(len(ids) - 1, 0)), min(hi, len(ids))

    def ranked_sample(start: int, stop: int) -> list[int]:
        ranks = list(range(start, stop))
        if len(ranks) < args.neg_window:
            ranks = list(range(len(ids)))  # small corpora: any ranked candidate
        return [int(ids[r]) for r in sorted(rng.sample(ranks, min(args.neg_window, len(ranks))))]

    if args.neg_type == "random":
        pool = [i for i in range(n_docs) if i != pos_index]
        negs = rng.sample(pool, min(args.neg_window, len(pool)))
    elif args.neg_type == "hard" or pos_rank < 0:
        negs = ranked_sample(lo, hi)
    else:
        cutoff = args.score_cutoff * scores[pos_rank]
        below = [j for j in range(pos_rank + 1, len(ids)) if scores[j] <= cutoff]
        negs = [int(i) for i in ids[below[0]:below[0] + args.neg_window]] if below else ranked_sample(lo, hi)
    seen, out = set(), []
    for i in negs:  # drop the positive, de-duplicate in order, keep ≤ num_negatives
        if i != pos_index and i not in seen:
            seen.add(i)
            out.append(i)
    return out[:args.num_negatives], pos_rank


def run(args: RetrieverDataArguments) -> dict:
    task = get_task(args.task)
    queries_manifest = require_complete_stage(args.queries_path, "generate_queries")
    ds = load_dataset(args.dataset, split=None)
    corpus_record = input_record(ds.corpus_file)
    if queries_manifest["inputs"]["corpus"]["sha256"] != corpus_record["sha256"]:
        raise UserError("these queries were generated from a different corpus "
                        f"({queries_manifest['inputs']['corpus']['path']})", file=ds.corpus_file)
    rows = load_rows(args.queries_path, ("id", "query", "doc_id"))
    stage = StageRun(STAGE, args, "train.jsonl", {"queries": input_record(args.queries_path), "corpus": corpus_record})
    if (skipped := stage.skipped_summary()) is not None:
        return skipped
    doc_ids = ds.doc_ids
    position = {d: i for i, d in enumerate(doc_ids)}
    texts = [document_text(ds.corpus[d]) for d in doc_ids]
    missing = [r["doc_id"] for r in rows if r["doc_id"] not in position]
    if missing:
        raise UserError(f"{len(missing)} queries name documents not in the corpus (first: {missing[0]!r})",
                        file=args.queries_path, field="doc_id")
    generator = build_generator(args)
    retriever = build_retriever(args)
    stage.models = {"generator": generator.describe(), "retriever": retriever.identity}
    doc_emb = encode_corpus_cached(retriever, texts, args.embedding_cache_dir)
    depth = min(args.mining_depth, len(doc_ids))

    def process(chunk: list[dict], index: int) -> ChunkResult:
        result = ChunkResult()
        prompts = [generator_prompt(r["query"], task.task_instruction, task.answer_type) for r in chunk]
        answers = [o[0] for o in generator.generate(prompts, n=1, temperature=args.temperature, top_p=args.top_p,
                                                    max_new_tokens=args.max_new_tokens, seed=args.seed + index)]
        q_scores, q_ids = exact_search(retriever.encode_queries([r["query"] for r in chunk]), doc_emb, depth)
        a_scores, a_ids = exact_search(encode_augmentations(retriever, answers), doc_emb, depth)
        for i, row in enumerate(chunk):
            rng = random.Random(f"{args.seed}:{row['id']}")  # per-row: identical however the run is chunked
            pos = position[row["doc_id"]]
            negs, pos_rank = mine_negatives(q_ids[i], q_scores[i], pos, len(doc_ids), args, rng)
            neg_answer, _ = mine_negatives(a_ids[i], a_scores[i], pos, len(doc_ids), args, rng)
            if args.filter_data and not passes_round_trip(pos_rank, args.filter_num):
                result.drop("failed_round_trip", row)
                continue
            if not negs:
                result.drop("no_negatives", row)
                continue
            result.rows.append(training_row(
                row["query"], [texts[pos]], [texts[j] for j in negs], pos_ids=[row["doc_id"]],
                neg_ids=[doc_ids[j] for j in negs], id=row["id"], doc_id=row["doc_id"], answer=answers[i],
                neg_answer=[texts[j] for j in neg_answer], pos_rank=pos_rank))
        return result

    return stage.run([dict(r) for r in rows], process, generator=generator, desc="retriever data")


def main(argv: Sequence[str]) -> int:
    return stage_main(argv, RetrieverDataArguments, run, STAGE)


if __name__ == "__main__":
    run_cli(main)
