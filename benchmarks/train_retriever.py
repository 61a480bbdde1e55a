"""Retriever training speed: our RetrieverTrainer vs sentence-transformers' trainer with
MultipleNegativesRankingLoss, same model, data, batch size and group size, one process, one run.

    python benchmarks/train_retriever.py [--steps 12] [--batch_size 8] [--group_size 4] [--max_len 128]

Data: SciFact train claims with their judged abstract as positive and random abstracts as negatives. Both
trainers run plain contrastive training (in-batch + hard negatives; no distillation), fp32 on CPU, the same
truncation for queries and passages. Each is timed over its whole ``train()`` call (after a 2-step warm-up run).
Prints steps/s and the ratio ours / sentence-transformers (goal ≥ 1.0).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_rows(data: Path, n: int, group: int, seed: int = 0) -> list[dict]:
    corpus = {}
    for line in open(data / "corpus.jsonl"):
        d = json.loads(line)
        corpus[d["_id"]] = f"{d['title']} {d['text']}"
    queries = {json.loads(l)["_id"]: json.loads(l)["text"] for l in open(data / "queries.jsonl")}
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
    argv = ["--model_name_or_path", "sentence-transformers/all-MiniLM-L6-v2", "--train_data", str(data),
            "--output_dir", str(out / f"ours{steps}"), "--per_device_train_batch_size", str(args.batch_size),
            "--train_group_size", str(args.group_size), "--query_max_len", str(args.max_len),
            "--passage_max_len", str(args.max_len), "--max_steps", str(steps), "--learning_rate", "2e-5",
            "--logging_steps", "1000", "--save_strategy", "no", "--use_cpu", "true", "--temperature", "0.05",
            "--auto_resume", "false", "--disable_tqdm", "true"]
    start = time.perf_counter()
    train(*parse(argv))
    return time.perf_counter() - start


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
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--group_size", type=int, default=4)
    parser.add_argument("--max_len", type=int, default=128)
    args = parser.parse_args()
    from inference.errors import setup_logging

    setup_logging()
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    rows = build_rows(Path(args.data), args.batch_size * (args.steps + 2), args.group_size)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        time_ours(rows, args, out, 2)  # warm-up both code paths
        time_st(rows, args, out, 2)
        st = time_st(rows, args, out, args.steps)
        ours = time_ours(rows, args, out, args.steps)
    print(f"{args.steps} steps, batch {args.batch_size}, group {args.group_size}, max_len {args.max_len}, "
          f"all-MiniLM-L6-v2 on CPU, one process")
    print(f"  reinforced-ir RetrieverTrainer    {args.steps / ours:6.3f} steps/s")
    print(f"  sentence-transformers (MNRL)      {args.steps / st:6.3f} steps/s")
    print(f"  ratio ours / sentence-transformers: {st / ours:.2f}  (goal >= 1.0)")


if __name__ == "__main__":
    main()
