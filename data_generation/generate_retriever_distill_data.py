"""Stage E (RLGF): the generator ranks each query's candidates; ranks become teacher scores.

    python -m data_generation.generate_retriever_distill_data --config configs/cpu-demo/generate_retriever_distill_data.yaml

Candidates are ``pos + neg`` (≤ 16), each cut to ``passage_max_tokens`` tokens of the generator's tokenizer so
the whole listwise prompt fits the context (the reference cut prompts at 5,120 characters and lost the
instruction, bug 3). The reply is parsed robustly (:func:`parse_ranking`): bracketed ids first, else bare
integers; out-of-range and repeated ids ignored; missing candidates appended in mining order. A reply with no
valid id falls back to the mining order; partial and fallback parses are counted.

Teacher scores: the candidate at LLM rank ρ (1-based) gets 1/ρ, so no two candidates tie (the reference gave
the first negative the positive's score, bug 5). The source passage stays the positive unless
``relabel_positive_from_ranking`` (the reference behaviour) is set. Negatives are written in LLM order with
``neg_scores``; the positive's score is ``pos_scores``. Output: ``train_distill.jsonl`` in its own folder
(the reference overwrote its input in place).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Sequence

from inference.errors import UserError, run_cli
from inference.prompts import listwise_rank_prompt

from .stage import (ChunkResult, StageArguments, StageRun, build_generator, input_record, load_rows,
                    require_complete_stage, stage_main)
from .text import truncate_to_tokens

logger = logging.getLogger(__name__)
STAGE = "generate_retriever_distill_data"
_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_BARE = re.compile(r"(?<![\d.])(\d+)(?![\d.])")


@dataclass
class DistillDataArguments(StageArguments):
    """Stage E (RLGF): listwise LLM ranking of mined candidates → teacher scores."""
    retriever_data_path: str = field(default="", metadata={"help": "train.jsonl from generate_retriever_data"})
    max_candidates: int = 16
    passage_max_tokens: int = 512
    relabel_positive_from_ranking: bool = False
    max_new_tokens: int = 128
    temperature: float = 0.0

    def validate(self) -> None:
        super().validate()
        if not self.retriever_data_path:
            raise UserError("required", field="retriever_data_path")
        if self.max_candidates < 2:
            raise UserError("must be ≥ 2", field="max_candidates")


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


def teacher_rows(row: dict, order: list[int], relabel: bool) -> dict:
    """Reorder candidates by the LLM ranking and attach 1/rank teacher scores."""
    candidates = row["pos"][:1] + row["neg"]
    score = {cand: 1.0 / (rank + 1) for rank, cand in enumerate(order)}
    pos_index = order[0] if relabel else 0
    negs = [i for i in order if i != pos_index]
    out = dict(row)
    out.update(pos=[candidates[pos_index]], pos_scores=[score[pos_index]], neg=[candidates[i] for i in negs],
               neg_scores=[score[i] for i in negs], ranking=order)
    if "neg_ids" in row and "pos_id" in row:
        ids = [row["pos_id"]] + list(row["neg_ids"])
        out.update(pos_id=ids[pos_index], neg_ids=[ids[i] for i in negs])
    return out


def run(args: DistillDataArguments) -> dict:
    data_manifest = require_complete_stage(args.retriever_data_path, "generate_retriever_data")
    rows = load_rows(args.retriever_data_path, ("id", "query", "pos", "neg"))
    for lineno, row in enumerate(rows, start=1):
        if not isinstance(row["pos"], list) or not row["pos"] or not isinstance(row["neg"], list):
            raise UserError("pos must be a non-empty list and neg a list", file=args.retriever_data_path,
                            line=lineno, field="pos")
    stage = StageRun(STAGE, args, "train_distill.jsonl", {"retriever_data": input_record(args.retriever_data_path),
                                                          "corpus": data_manifest["inputs"]["corpus"]})
    if (skipped := stage.skipped_summary()) is not None:
        return skipped
    generator = build_generator(args)
    tokenizer = getattr(generator, "tokenizer", None)
    stage.models = {"generator": generator.describe(), "mining_retriever": data_manifest["models"].get("retriever")}

    def process(chunk: list[dict], index: int) -> ChunkResult:
        result = ChunkResult()
        trimmed = []
        prompts = []
        for row in chunk:
            t = dict(row, neg=row["neg"][:args.max_candidates - 1])
            trimmed.append(t)
            passages = [truncate_to_tokens(p, args.passage_max_tokens, tokenizer) for p in t["pos"][:1] + t["neg"]]
            prompts.append(listwise_rank_prompt(row["query"], passages))
        replies = generator.generate(prompts, n=1, temperature=args.temperature, top_p=args.top_p,
                                     max_new_tokens=args.max_new_tokens, seed=args.seed + index)
        for row, reply in zip(trimmed, replies):
            order, status = parse_ranking(reply[0], 1 + len(row["neg"]))
            result.notes[f"ranking_{status}"] += 1
            out = teacher_rows(row, order, args.relabel_positive_from_ranking)
            out["ranking_status"] = status
            result.rows.append(out)
        return result

    return stage.run([dict(r) for r in rows], process, generator=generator, desc="RLGF ranking")


def main(argv: Sequence[str]) -> int:
    return stage_main(argv, DistillDataArguments, run, STAGE)


if __name__ == "__main__":
    run_cli(main)
