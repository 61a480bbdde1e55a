"""Stage B (RLRF): preference pairs for the generator, judged by the retriever.

    python -m data_generation.generate_generator_data --config CONFIG [--flag value ...]

CONFIG: a YAML of the options below, e.g. ``runs/cpu-demo-scifact/round_1/configs/generator_data.yaml``, which
``python -m scripts.self_boost --config configs/cpu-demo/scifact.yaml --emit_commands`` writes from the
profile's ``generator_data`` block (the one place those settings live) and the round's models and paths.

For each (pseudo-query q, source passage p) the generator samples ``dpo_num`` augmentations g_k with prompt P.
The retriever scores them by how well the fused query finds p (docs/design.md §4):

    r   = <E_q(q), E_p(p)>,    a_k = <E_p(PREFIX + g_k), E_p(p)>,    s_k = 0.8·r + 0.2·a_k

Keep rule (reference ``use_rule1``): ``s_max > r`` and ``(s_max − 0.8r)·τ ≥ (s_min − 0.8r)``, i.e. the best
augmentation beats the plain query and the worst is at least (1−τ) relatively worse. Pairs whose chosen and
rejected texts are equal are dropped (possible in the reference with τ = 1). Output ``train.jsonl`` rows
``{id, query, doc_id, prompt, chosen, rejected, chosen_score = s_max/r, rejected_score = s_min/r}`` plus
LLaMA-Factory data under ``llamafactory/`` (``<dataset_name>.json`` and its own ``dataset_info.json``).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from inference.errors import UserError, run_cli
from inference.io import atomic_write_json
from inference.manifest import input_record
from inference.prompts import generator_prompt, get_task

from .retriever_args import RetrieverArguments, build_retriever, encode_augmentations
from .stage import (ChunkResult, StageArguments, StageRun, build_generator, load_rows,
                    require_complete_stage, stage_main)

logger = logging.getLogger(__name__)
STAGE = "generate_generator_data"


@dataclass
class GeneratorDataArguments(RetrieverArguments, StageArguments):
    """Stage B (RLRF): sample augmentations, score them with the retriever, keep chosen/rejected pairs."""
    queries_path: str = field(default="", metadata={"help": "queries.jsonl from generate_queries"})
    dpo_num: int = field(default=5, metadata={"help": "augmentations sampled per query", "min": 2})  # a pair
    threshold: float = field(default=0.95, metadata={"help": "τ in the keep rule"})
    use_rule1: bool = field(default=True, metadata={"help": "also require s_max > r"})
    dataset_name: str = field(default="", metadata={"help": "LLaMA-Factory dataset name (default: task_rlrf)"})
    max_queries: int | None = field(default=None, metadata={
        "help": "RLRF on a seeded subset of the pseudo-queries (sampling dpo_num answers each is the costly part)"})
    temperature: float = 0.9
    top_p: float = 0.9
    max_new_tokens: int = 128

    def validate(self) -> None:
        super().validate()
        if not self.queries_path:
            raise UserError("required", field="queries_path")
        if self.dpo_num < 2:
            raise UserError("must be ≥ 2 (a pair needs two samples)", field="dpo_num")
        if self.temperature <= 0:
            raise UserError("must be > 0: identical greedy samples make no preference pair", field="temperature")


def select_pair(r: float, aug_scores: np.ndarray, weight: float, threshold: float, use_rule1: bool
                ) -> tuple[int, int, float, float] | str:
    """Return ``(k+, k-, s_max, s_min)`` or the reason the query is dropped."""
    fused = (1 - weight) * r + weight * aug_scores
    k_pos, k_neg = int(np.argmax(fused)), int(np.argmin(fused))  # ties: first index, as the reference
    s_max, s_min = float(fused[k_pos]), float(fused[k_neg])
    base = (1 - weight) * r
    if use_rule1 and not s_max > r:
        return "no_augmentation_beats_query"
    if not (s_max - base) * threshold >= (s_min - base):
        return "samples_too_similar"
    return k_pos, k_neg, s_max, s_min


def llamafactory_record(row: dict) -> dict:
    return {"conversations": [{"from": "human", "value": row["prompt"]}],
            "chosen": {"from": "gpt", "value": row["chosen"]},
            "rejected": {"from": "gpt", "value": row["rejected"]}}


def write_llamafactory_data(rows: list[dict], directory: Path, dataset_name: str) -> None:
    """Our own dataset_info.json with one entry per file (never an installed package's file, docs/design.md §10.11)."""
    atomic_write_json(directory / f"{dataset_name}.json", [llamafactory_record(r) for r in rows])
    atomic_write_json(directory / "dataset_info.json", {dataset_name: {
        "file_name": f"{dataset_name}.json", "ranking": True, "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}})


def run(args: GeneratorDataArguments) -> dict:
    task = get_task(args.task)
    queries_manifest = require_complete_stage(args.queries_path, "generate_queries")
    rows = load_rows(args.queries_path, ("id", "query", "doc_id", "passage"))
    stage = StageRun(STAGE, args, "train.jsonl", {"queries": input_record(args.queries_path),
                                                  "corpus": queries_manifest["inputs"]["corpus"]})
    dataset_name = args.dataset_name or f"{task.name}_rlrf"
    llama_dir = stage.dir / "llamafactory"
    if (skipped := stage.skipped_summary()) is not None:
        return skipped
    generator = build_generator(args)
    retriever = build_retriever(args)
    stage.models = {"generator": generator.describe(), "retriever": retriever.identity}
    stage.extra = {"llamafactory": {"dataset_dir": "llamafactory", "dataset": dataset_name}}

    def process(chunk: list[dict], index: int) -> ChunkResult:
        result = ChunkResult()
        prompts = [generator_prompt(r["query"], task.task_instruction, task.answer_type) for r in chunk]
        samples = generator.generate(prompts, n=args.dpo_num, temperature=args.temperature, top_p=args.top_p,
                                     max_new_tokens=args.max_new_tokens, seed=args.seed + index)
        q_emb = retriever.encode_queries([r["query"] for r in chunk])
        p_emb = retriever.encode_corpus([r["passage"] for r in chunk])
        flat = [g for row in samples for g in row]
        a_emb = encode_augmentations(retriever, flat).reshape(len(chunk), args.dpo_num, -1)
        for i, (row, gens) in enumerate(zip(chunk, samples)):
            if sum(1 for g in gens if g.strip()) < 2:
                result.drop("empty_samples", row)
                continue
            r = float(q_emb[i] @ p_emb[i])
            aug_scores = a_emb[i] @ p_emb[i]
            picked = select_pair(r, aug_scores, args.augmentation_weight, args.threshold, args.use_rule1)
            if isinstance(picked, str):
                result.drop(picked, row)
                continue
            k_pos, k_neg, s_max, s_min = picked
            if gens[k_pos].strip() == gens[k_neg].strip():
                result.drop("chosen_equals_rejected", row)
                continue
            result.rows.append({"id": row["id"], "query": row["query"], "doc_id": row["doc_id"],
                                "prompt": prompts[i], "chosen": gens[k_pos], "rejected": gens[k_neg],
                                "chosen_score": s_max / r if r else 0.0, "rejected_score": s_min / r if r else 0.0,
                                "raw_score": r})
        return result

    def finalize(rows_out: list[dict], totals: ChunkResult) -> list[dict]:
        if not rows_out:
            raise UserError("no preference pair survived the keep rule; sample more (dpo_num), raise temperature "
                            "or τ (threshold)", field="threshold")
        write_llamafactory_data(rows_out, llama_dir, dataset_name)
        return rows_out

    items = [dict(r) for r in rows]
    if args.max_queries is not None and args.max_queries < len(items):
        keep = set(random.Random(f"{args.seed}:rlrf").sample(range(len(items)), args.max_queries))
        items = [it for i, it in enumerate(items) if i in keep]
    return stage.run(items, process, finalize=finalize, generator=generator, desc="RLRF pairs")


def main(argv: Sequence[str]) -> int:
    return stage_main(argv, GeneratorDataArguments, run, STAGE)


if __name__ == "__main__":
    run_cli(main)
