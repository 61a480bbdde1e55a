"""Stage A: pseudo-queries from a seeded sample of the unlabeled corpus.

    python -m data_generation.generate_queries --config CONFIG [--flag value ...]

CONFIG: a YAML of the options below, e.g. ``runs/cpu-demo-scifact/round_1/configs/queries.yaml``, which
``python -m scripts.self_boost --config configs/cpu-demo/scifact.yaml --emit_commands`` writes from the
profile's ``queries`` block (the one place those settings live) and the round's models and paths.

One generation per sampled document, in the task's style (task instruction, query type, mission, seeded
length/style/stance draws, three few-shot examples), then optional LLM quality control with a strictly
parsed one-digit reply. Drops empty, over-long, document-copying and duplicate queries, counting each reason.
Output: ``queries.jsonl`` rows ``{id, query, doc_id, passage}``.
"""
from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Sequence

from evaluation.data import load_dataset
from inference.embedder import document_text
from inference.errors import UserError, run_cli
from inference.io import atomic_write_text
from inference.manifest import input_record
from inference.prompts import QUERY_PROMPT_STYLES, get_task, quality_control_prompt, query_generation_prompt

from .stage import ChunkResult, StageArguments, StageRun, build_generator, stage_main
from .text import (clean_generated_query, copies_document, is_repetitive, mentions_source, normalize_for_dedup,
                   truncate_to_tokens, word_count)

logger = logging.getLogger(__name__)
STAGE = "generate_queries"
HELDOUT_FILE = "heldout.jsonl"
_QC_REPLY = re.compile(r"^\s*[\[(]?([01])[\])]?(?:\s*[:.)\-](?!\d)|\s|$)")


@dataclass
class GenerateQueriesArguments(StageArguments):
    """Stage A: generate pseudo-queries from a sample of the corpus."""
    dataset: str = field(default="", metadata={"help": "dataset folder (BEIR, AIR-Bench or corpus.json)"})
    train_num: int | None = field(default=None, metadata={"help": "documents to sample (default: all)"})
    train_ratio: float | None = field(default=None, metadata={"help": "or a fraction of the corpus"})
    max_passage_tokens: int = field(default=512, metadata={"help": "passage budget in the prompt, in tokens"})
    use_examples: bool = True
    prompt_style: str = field(default="full", metadata={
        "help": "full (reference structure) | simple (small models) | paraphrase (simple, rare terms in other "
                "words: harder queries)"})
    quality_control: bool = True
    max_query_words: int = 64
    min_query_words: int = 2
    holdout_fraction: float = field(default=0.0, metadata={
        "help": "share of kept queries written to heldout.jsonl instead (label-free dev set for early stopping)"})
    max_new_tokens: int = 64
    temperature: float = 0.2

    def validate(self) -> None:
        super().validate()
        if not self.dataset:
            raise UserError("required", field="dataset")
        if self.train_num is not None and self.train_num < 1:
            raise UserError("must be ≥ 1", field="train_num")
        if self.train_ratio is not None and not 0 < self.train_ratio <= 1:
            raise UserError("must be in (0, 1]", field="train_ratio")
        if self.prompt_style not in QUERY_PROMPT_STYLES:
            raise UserError(f"must be one of {', '.join(QUERY_PROMPT_STYLES)}, got {self.prompt_style!r}",
                            field="prompt_style")
        if not 0 <= self.holdout_fraction < 1:
            raise UserError("must be in [0, 1)", field="holdout_fraction")


def parse_qc_reply(reply: str) -> int | None:
    """1 or 0 from a reply that starts with that digit; anything else (e.g. "10", "yes") is unparsable."""
    match = _QC_REPLY.match(reply)
    return int(match.group(1)) if match else None


def sample_documents(corpus: dict[str, dict], args: GenerateQueriesArguments) -> list[str]:
    ids = sorted(corpus)
    n = len(ids)
    if args.train_ratio is not None:
        n = max(1, int(args.train_ratio * len(ids)))
    if args.train_num is not None:
        n = min(n, args.train_num)
    return random.Random(args.seed).sample(ids, n)


def query_prompts(chunk: list[dict], passages: list[str], args: GenerateQueriesArguments, task, tokenizer
                  ) -> list[str]:
    prompts = []
    for it, passage in zip(chunk, passages):
        rng = random.Random(f"{args.seed}:{it['doc_id']}")  # per-document draws, independent of chunking
        prompts.append(query_generation_prompt(truncate_to_tokens(passage, args.max_passage_tokens, tokenizer),
                                               task, rng, args.use_examples, args.prompt_style))
    return prompts


def query_drop_reason(query: str, passage: str, args: GenerateQueriesArguments, task) -> str | None:
    """Why a generated query is unusable (its reason in ``dropped.jsonl``), or None to keep it."""
    if word_count(query) < args.min_query_words:
        return "empty"
    if word_count(query) > args.max_query_words:
        return "too_long"
    if copies_document(query, passage):
        return "copies_document"
    if is_repetitive(query):
        return "repetitive"
    if mentions_source(query, task.passage_type):
        return "mentions_the_passage"
    return None


def quality_control(generator, candidates: list[dict], args: GenerateQueriesArguments, task, tokenizer, seed: int,
                    result: ChunkResult) -> list[dict]:
    """The generator's yes/no judgement of each (query, passage); unparsable or rejected ones are dropped."""
    prompts = [quality_control_prompt(c["query"], truncate_to_tokens(c["passage"], args.max_passage_tokens,
                                                                     tokenizer), task) for c in candidates]
    kept = []
    for cand, reply in zip(candidates, generator.generate(prompts, n=1, temperature=0.0, max_new_tokens=4,
                                                          seed=seed)):
        verdict = parse_qc_reply(reply[0])
        if verdict is None:
            result.drop("qc_unparsable", cand)
        elif verdict == 0:
            result.drop("qc_rejected", cand)
        else:
            kept.append(cand)
    return kept


def drop_duplicates(rows: list[dict], totals: ChunkResult) -> list[dict]:
    seen, kept = set(), []
    for row in rows:
        key = normalize_for_dedup(row["query"])
        if key in seen:
            totals.drop("duplicate", row)
        else:
            seen.add(key)
            kept.append(row)
    return kept


def heldout_ids(rows: list[dict], args: GenerateQueriesArguments) -> set[str]:
    """A seeded share of the pseudo-queries kept out of training: the label-free signal of each round."""
    if args.holdout_fraction <= 0 or len(rows) <= 1:
        return set()
    n = max(1, int(round(args.holdout_fraction * len(rows))))
    return set(random.Random(f"{args.seed}:holdout").sample([r["id"] for r in rows], n))


def run(args: GenerateQueriesArguments) -> dict:
    task = get_task(args.task)
    ds = load_dataset(args.dataset, split=None)
    stage = StageRun(STAGE, args, "queries.jsonl", {"corpus": input_record(ds.corpus_file)})
    if (skipped := stage.skipped_summary()) is not None:
        return skipped
    doc_ids = sample_documents(ds.corpus, args)
    items = [{"id": f"q-{doc_id}", "doc_id": doc_id} for doc_id in doc_ids]
    generator = build_generator(args)
    tokenizer = getattr(generator, "tokenizer", None)
    stage.models = {"generator": generator.describe()}
    stage.extra = {"corpus_documents": len(ds.corpus), "task": task.name}

    def process(chunk: list[dict], index: int) -> ChunkResult:
        result = ChunkResult()
        passages = [document_text(ds.corpus[it["doc_id"]]) for it in chunk]
        outputs = generator.generate(query_prompts(chunk, passages, args, task, tokenizer), n=1,
                                     temperature=args.temperature, top_p=args.top_p,
                                     max_new_tokens=args.max_new_tokens, seed=args.seed + index)
        for it, passage, out in zip(chunk, passages, outputs):
            query = clean_generated_query(out[0])
            if reason := query_drop_reason(query, passage, args, task):
                result.drop(reason, it, query)
            else:
                result.rows.append({"id": it["id"], "query": query, "doc_id": it["doc_id"], "passage": passage})
        if args.quality_control and result.rows:
            result.rows = quality_control(generator, result.rows, args, task, tokenizer, args.seed + index, result)
        return result

    def drop_duplicates_and_hold_out(rows: list[dict], totals: ChunkResult) -> list[dict]:
        kept = drop_duplicates(rows, totals)
        held = heldout_ids(kept, args)
        heldout = [r for r in kept if r["id"] in held]
        atomic_write_text(stage.dir / HELDOUT_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in heldout))
        stage.extra["heldout"] = {"path": HELDOUT_FILE, "rows": len(heldout)}
        return [r for r in kept if r["id"] not in held]

    return stage.run(items, process, finalize=drop_duplicates_and_hold_out, generator=generator,
                     desc="pseudo-queries")


def main(argv: Sequence[str]) -> int:
    return stage_main(argv, GenerateQueriesArguments, run, STAGE)


if __name__ == "__main__":
    run_cli(main)
