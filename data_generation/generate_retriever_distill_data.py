"""Stage E (RLGF): the generator ranks each query's candidates; ranks become teacher scores.

    python -m data_generation.generate_retriever_distill_data --config CONFIG [--flag value ...]

CONFIG: a YAML of the options below, e.g. ``runs/cpu-demo-scifact/round_1/configs/distill.yaml``, which
``python -m scripts.self_boost --config configs/cpu-demo/scifact.yaml --emit_commands`` writes from the
profile's ``distill`` block (the one place those settings live) and the round's models and paths.

Candidates are ``pos + neg`` (≤ 16), each cut to ``passage_max_tokens`` tokens of the generator's tokenizer so the
whole listwise prompt fits the context (the reference cut prompts at 5,120 characters and lost the instruction,
docs/design.md §10.3). The reply is parsed robustly (:func:`parse_ranking`): bracketed ids first, else bare
integers; out-of-range and repeated ids ignored; missing candidates appended in mining order. A reply with no valid
id falls back to the mining order; partial and fallback parses are counted.

Teacher scores: the candidate at LLM rank ρ (1-based) gets 1/ρ, so no two candidates tie (the reference gave the
first negative the positive's score, docs/design.md §10.5). When more than ``max_fallback_share`` of the rankings
fell back to the mining order the stage stops with a clear error instead of writing them (a small model's listwise
replies rarely parse: SmolLM2-135M's fell back on 74 of 97); its chunks stay, so a rerun with a higher limit
resumes.

``teacher_scoring: query_likelihood`` needs no parsing: each candidate's score is the generator's mean
log-probability of the query given the passage (UPR, Sachan et al. 2022), one forward pass per pair; candidates
are ordered by it (ties keep mining order) and the scores themselves are the teacher scores.

``teacher_scoring: hybrid`` is a label-free teacher that is not the generator: BM25 fused with the dense
``retriever`` (min-max, BM25's share ``fusion_weight``; the hybrid that evaluation measures, GPL-style pseudo-labels
from a ranker stronger than the student). Each row's candidates are scored exactly, normalised over the query's
hybrid candidate pool (both top-``hybrid_depth`` lists) plus the row's own candidates.

The source passage stays the positive unless ``relabel_positive_from_ranking`` (the reference behaviour) is set.
Negatives are written in teacher order with ``neg_scores``; the positive's score is ``pos_scores``. Output:
``train_distill.jsonl`` in its own folder (the reference overwrote its input in place).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from evaluation.data import load_dataset
from evaluation.search import bm25_index_cached, encode_corpus_cached
from inference.config import EmbeddingCacheArguments
from inference.embedder import document_text
from inference.errors import UserError, run_cli
from inference.hybrid import DEFAULT_HYBRID_DEPTH, HybridCandidates, fuse_scores
from inference.manifest import input_record
from inference.prompts import listwise_rank_prompt, query_likelihood_prompt

from .retriever_args import RetrieverArguments, build_retriever
from .rows import candidate_ids
from .stage import (ChunkResult, StageArguments, StageRun, build_generator, load_rows,
                    require_complete_stage, stage_main)
from .text import truncate_to_tokens

logger = logging.getLogger(__name__)
STAGE = "generate_retriever_distill_data"
_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_BARE = re.compile(r"(?<![\d.])(\d+)(?![\d.])")
TEACHER_SCORINGS = ("listwise", "query_likelihood", "hybrid")


@dataclass
class DistillDataArguments(RetrieverArguments, StageArguments, EmbeddingCacheArguments):
    """Stage E (RLGF): the generator's ranking of mined candidates (or a label-free hybrid's) → teacher scores."""
    retriever_data_path: str = field(default="", metadata={"help": "train.jsonl from generate_retriever_data"})
    max_candidates: int = field(default=16, metadata={"min": 2})  # a positive and at least one negative
    passage_max_tokens: int = 512
    relabel_positive_from_ranking: bool = False
    max_new_tokens: int = 128
    temperature: float = 0.0
    teacher_scoring: str = field(default="listwise", metadata={
        "help": "listwise (the reference: one ranked reply per query) | query_likelihood (log-probability of the "
                "query given each candidate) | hybrid (BM25 + the dense retriever, no generator)"})
    max_fallback_share: float = field(default=0.2, metadata={
        "help": "listwise: stop, writing nothing, when more rankings than this share fell back to the mining order"})
    dataset: str = field(default="", metadata={"help": "hybrid: the corpus stage D mined (checked by hash)"})
    fusion_weight: float = field(default=0.4, metadata={"help": "hybrid: BM25's share in the min-max fusion"})
    hybrid_depth: int = field(default=DEFAULT_HYBRID_DEPTH, metadata={"help": "hybrid: depth of each list in the candidate pool"})

    def validate(self) -> None:
        super().validate()
        if not self.retriever_data_path:
            raise UserError("required", field="retriever_data_path")
        if self.max_candidates < 2:
            raise UserError("must be ≥ 2", field="max_candidates")
        if self.teacher_scoring not in TEACHER_SCORINGS:
            raise UserError(f"must be one of {', '.join(TEACHER_SCORINGS)}, got {self.teacher_scoring!r}",
                            field="teacher_scoring")
        if not 0.0 <= self.max_fallback_share <= 1.0:
            raise UserError("must be in [0, 1]", field="max_fallback_share")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise UserError("must be in [0, 1]", field="fusion_weight")
        if self.teacher_scoring == "hybrid" and not self.dataset:
            raise UserError("the hybrid teacher needs the corpus", field="dataset")


def parse_ranking(reply: str, n: int) -> tuple[list[int], str]:
    """0-based candidate order from a reply naming 1-based ids; status ``ok`` | ``partial`` | ``fallback``."""
    found = _BRACKETED.findall(reply) or _BARE.findall(reply)
    order: list[int] = []
    for token in found:
        idx = int(token) - 1
        if 0 <= idx < n and idx not in order:
            order.append(idx)
    status = "ok" if len(order) == n else ("partial" if order else "fallback")
    order += [i for i in range(n) if i not in order]
    return order, status


def teacher_rows(row: dict, order: list[int], relabel: bool, scores: list[float] | None = None) -> dict:
    """Reorder candidates by the LLM ranking and attach teacher scores: ``scores`` (per candidate) or 1/rank."""
    candidates = row["pos"][:1] + row["neg"]
    score = ({cand: float(scores[cand]) for cand in order} if scores is not None
             else {cand: 1.0 / (rank + 1) for rank, cand in enumerate(order)})
    pos_index = order[0] if relabel else 0
    negs = [i for i in order if i != pos_index]
    out = dict(row)
    out.update(pos=[candidates[pos_index]], pos_scores=[score[pos_index]], neg=[candidates[i] for i in negs],
               neg_scores=[score[i] for i in negs], ranking=order)
    if (ids := candidate_ids(row)) is not None:
        out.pop("pos_id", None)  # rows written before ids were lists
        out.update(pos_ids=[ids[pos_index]], neg_ids=[ids[i] for i in negs])
    return out


def load_retriever_rows(args: DistillDataArguments) -> list[dict]:
    rows = load_rows(args.retriever_data_path, ("id", "query", "pos", "neg"))
    for lineno, row in enumerate(rows, start=1):
        if not isinstance(row["pos"], list) or not row["pos"] or not isinstance(row["neg"], list):
            raise UserError("pos must be a non-empty list and neg a list", file=args.retriever_data_path,
                            line=lineno, field="pos")
    return rows


class GeneratorTeacher:
    """The generator's preference over each row's candidates (positive first, then the mined negatives)."""

    def __init__(self, generator, args: DistillDataArguments):
        self.generator, self.args = generator, args
        self.tokenizer = getattr(generator, "tokenizer", None)

    def candidates(self, row: dict) -> tuple[dict, list[str]]:
        a = self.args
        trimmed = dict(row, neg=row["neg"][:a.max_candidates - 1])
        return trimmed, [truncate_to_tokens(p, a.passage_max_tokens, self.tokenizer)
                         for p in trimmed["pos"][:1] + trimmed["neg"]]

    def rank_listwise(self, chunk: list[dict], index: int) -> ChunkResult:
        a, result = self.args, ChunkResult()
        trimmed = [self.candidates(row) for row in chunk]
        prompts = [listwise_rank_prompt(t["query"], passages) for t, passages in trimmed]
        replies = self.generator.generate(prompts, n=1, temperature=a.temperature, top_p=a.top_p,
                                          max_new_tokens=a.max_new_tokens, seed=a.seed + index)
        for (row, _), reply in zip(trimmed, replies):
            order, status = parse_ranking(reply[0], 1 + len(row["neg"]))
            result.notes[f"ranking_{status}"] += 1
            result.rows.append({**teacher_rows(row, order, a.relabel_positive_from_ranking),
                                "ranking_status": status})
        return result

    def score_likelihood(self, chunk: list[dict], index: int) -> ChunkResult:
        result = ChunkResult()
        trimmed = [self.candidates(row) for row in chunk]
        prompts = [query_likelihood_prompt(p) for _, passages in trimmed for p in passages]
        queries = [t["query"] for t, passages in trimmed for _ in passages]
        flat = self.generator.continuation_logprobs(prompts, queries)
        offset = 0
        for t, passages in trimmed:
            scores = flat[offset:offset + len(passages)]
            offset += len(passages)
            order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep mining order
            result.notes["scored"] += 1
            result.rows.append({**teacher_rows(t, order, self.args.relabel_positive_from_ranking, scores),
                                "ranking_status": "scored"})
        return result

    def refuse_fallbacks(self, rows_out: list[dict], totals: ChunkResult) -> list[dict]:
        limit = self.args.max_fallback_share
        fallback = sum(r.get("ranking_status") == "fallback" for r in rows_out)
        if rows_out and fallback / len(rows_out) > limit:
            raise UserError(f"{fallback} of {len(rows_out)} listwise rankings did not parse and fell back to the "
                            f"mining order (limit {limit:.0%}); use teacher_scoring query_likelihood, or raise "
                            "max_fallback_share (a rerun resumes from the kept chunks)", field="max_fallback_share")
        return rows_out


class HybridTeacher:
    """BM25 + the dense retriever over the corpus stage D mined: each row's candidates get their fused score."""

    def __init__(self, args: DistillDataArguments, corpus_sha256: str):
        ds = load_dataset(args.dataset, split=None)
        if input_record(ds.corpus_file)["sha256"] != corpus_sha256:
            raise UserError("not the corpus stage D mined (hash differs from its manifest)", file=ds.corpus_file)
        self.args, self.doc_ids = args, ds.doc_ids
        self.position = {d: i for i, d in enumerate(ds.doc_ids)}
        texts = [document_text(ds.corpus[d]) for d in ds.doc_ids]
        cache = args.embedding_cache_dir
        self.embedder = build_retriever(args)
        self.doc_emb = encode_corpus_cached(self.embedder, texts, cache)
        self.bm25 = bm25_index_cached(texts, cache)

    def describe(self) -> dict:
        return {"teacher": "hybrid", "fusion": "minmax", "bm25_weight": self.args.fusion_weight,
                "dense": self.embedder.identity, "bm25": self.bm25.config.identity}

    def candidate_indices(self, row: dict) -> np.ndarray:
        ids = candidate_ids(row)
        if ids is None:
            raise UserError("the hybrid teacher needs the candidates' ids (pos_ids, neg_ids: stage D writes them)",
                            file=self.args.retriever_data_path, field="neg_ids")
        return np.array([self.position[d] for d in ids[:self.args.max_candidates]], dtype=np.int64)

    def score(self, chunk: list[dict], index: int) -> ChunkResult:
        result, a = ChunkResult(), self.args
        wanted = [self.candidate_indices(row) for row in chunk]
        queries = [row["query"] for row in chunk]
        pools = HybridCandidates.gather(self.embedder.encode_queries(queries), self.doc_emb, self.bm25, queries,
                                        depth=min(a.hybrid_depth, len(self.doc_ids)), extra=wanted)
        for qi, row in enumerate(chunk):
            fused = fuse_scores(pools.dense[qi], pools.sparse[qi], a.fusion_weight)
            at = {int(d): float(f) for d, f in zip(pools.doc_indices[qi], fused)}
            scores = [at[int(d)] for d in wanted[qi]]
            order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep mining order
            trimmed = dict(row, neg=row["neg"][:len(scores) - 1], neg_ids=row["neg_ids"][:len(scores) - 1])
            result.notes["scored"] += 1
            result.rows.append({**teacher_rows(trimmed, order, a.relabel_positive_from_ranking, scores),
                                "ranking_status": "scored"})
        return result


def run(args: DistillDataArguments) -> dict:
    data_manifest = require_complete_stage(args.retriever_data_path, "generate_retriever_data")
    rows = load_retriever_rows(args)
    stage = StageRun(STAGE, args, "train_distill.jsonl", {"retriever_data": input_record(args.retriever_data_path),
                                                          "corpus": data_manifest["inputs"]["corpus"]})
    if (skipped := stage.skipped_summary()) is not None:
        return skipped
    items = [dict(r) for r in rows]
    if args.teacher_scoring == "hybrid":
        hybrid = HybridTeacher(args, data_manifest["inputs"]["corpus"]["sha256"])
        stage.models = {"teacher": hybrid.describe(), "mining_retriever": data_manifest["models"].get("retriever")}
        return stage.run(items, hybrid.score, desc="hybrid teacher")
    generator = build_generator(args)
    stage.models = {"generator": generator.describe(), "mining_retriever": data_manifest["models"].get("retriever")}
    teacher = GeneratorTeacher(generator, args)
    if args.teacher_scoring == "query_likelihood":
        return stage.run(items, teacher.score_likelihood, generator=generator, desc="RLGF likelihood")
    return stage.run(items, teacher.rank_listwise, finalize=teacher.refuse_fallbacks, generator=generator,
                     desc="RLGF ranking")


def main(argv: Sequence[str]) -> int:
    return stage_main(argv, DistillDataArguments, run, STAGE)


if __name__ == "__main__":
    run_cli(main)
