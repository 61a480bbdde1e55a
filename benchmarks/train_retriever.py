"""Retriever training speed: our RetrieverTrainer vs sentence-transformers' trainer with
MultipleNegativesRankingLoss, same model, data, batch size and group size, one process, one run.

    python -m benchmarks.train_retriever --dataset ../shared/data/scifact [--steps 12] [--batch_size 8]
        [--group_size 4] [--max_len 128]

Data: the dataset's train claims with their judged abstract as positive and random abstracts as negatives. Both
trainers run plain contrastive training (in-batch + hard negatives; no distillation), fp32 on CPU, the same
truncation for queries and passages. Each is timed over its whole ``train()`` call (after a 2-step warm-up run).
Prints steps/s and the ratio ours / sentence-transformers (goal ≥ 1.0).
"""
from __future__ import annotations

import csv
import json
import logging
import random
import tempfile
from pathlib import Path
from typing import Sequence

from benchmarks.common import MINILM, parse_args, print_rates, timed
from evaluation.data import load_corpus_jsonl, load_queries_jsonl
from inference.embedder import document_text
from inference.errors import setup_logging


def build_rows(data: Path, n: int, group: int, seed: int = 0) -> list[dict]:
    corpus = {doc_id: document_text(doc) for doc_id, doc in load_corpus_jsonl(data / "corpus.jsonl").items()}
    queries = load_queries_jsonl(data / "queries.jsonl")
    rng = random.Random(seed)
    ids = list(corpus)
    rows = []
    with open(data / "qrels" / "train.tsv") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            rows.append({"query": queries[r["query-id"]], "pos": [corpus[r["corpus-id"]]],
                         "neg": [corpus[i] for i in rng.sample(ids, group - 1)]})
            if len(rows) == n:
                break
    return rows


def time_ours(rows, args, out: Path, steps: int) -> float:
    from finetune.retriever.train import parse, train

    data = out / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--retriever", MINILM, "--train_data", str(data),
            "--output_dir", str(out / f"ours{steps}"), "--per_device_train_batch_size", str(args.batch_size),
            "--train_group_size", str(args.group_size), "--query_max_len", str(args.max_len),
            "--passage_max_len", str(args.max_len), "--max_steps", str(steps), "--learning_rate", "2e-5",
            "--logging_steps", "1000", "--save_strategy", "no", "--use_cpu", "true", "--temperature", "0.05",
            "--auto_resume", "false", "--disable_tqdm", "true"]
    return timed(train, *parse(argv))[1]


def time_st(rows, args, out: Path, steps: int) -> float:
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from inference.resolver import bundled_minilm_path

    model = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    model.max_seq_length = args.max_len
    cols = {"anchor": [r["query"] for r in rows], "positive": [r["pos"][0] for r in rows]}
    for k in range(args.group_size - 1):
        cols[f"negative_{k + 1}"] = [r["neg"][k] for r in rows]
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / f"st{steps}"), per_device_train_batch_size=args.batch_size, max_steps=steps,
        learning_rate=2e-5, logging_steps=1000, save_strategy="no", use_cpu=True, report_to="none",
        disable_tqdm=True, dataloader_drop_last=True)
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=Dataset.from_dict(cols),
                                         loss=MultipleNegativesRankingLoss(model, scale=20.0))
    return timed(trainer.train)[1]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("train_retriever", __doc__, argv, steps=12, batch_size=8, group_size=4, max_len=128)
    setup_logging()
    logging.getLogger().setLevel(logging.WARNING)
    rows = build_rows(args.dataset, args.batch_size * (args.steps + 2), args.group_size)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        time_ours(rows, args, out, 2)  # warm-up both code paths
        time_st(rows, args, out, 2)
        st = time_st(rows, args, out, args.steps)
        ours = time_ours(rows, args, out, args.steps)
    print_rates(f"{args.steps} steps, batch {args.batch_size}, group {args.group_size}, max_len {args.max_len}, "
                f"all-MiniLM-L6-v2 on CPU, one process",
                {"reinforced-ir RetrieverTrainer": args.steps / ours, "sentence-transformers (MNRL)": args.steps / st},
                "steps/s", ("reinforced-ir RetrieverTrainer", "sentence-transformers (MNRL)"), goal=1.0, digits=3)

if __name__ == "__main__":
    main()
