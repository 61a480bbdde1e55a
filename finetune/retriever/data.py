"""Training data for the retriever: our stage D/E rows and the Open-Retrievals pairwise format.

Accepted rows (JSONL): the schema of :mod:`data_generation.rows` (``{query, pos, neg, answer?, pos_scores?,
neg_scores?}``) and the Open-Retrievals format ``{query, positive: [...] | str, negative: [...] | str}``.

Each item yields one group: a positive and ``train_group_size − 1`` negatives (sampled without replacement,
repeated when too few), seeded by (seed, epoch, index) so a resumed run sees the same groups. With teacher
scores the negatives are ordered by score, best first (the order the Plackett-Luce loss uses). With
``same_dataset_within_batch`` every global batch comes from a single file; the order is rebuilt each epoch.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data_generation.rows import read_training_row
from inference.errors import UserError
from inference.io import iter_jsonl
from inference.prompts import augmentation_prefix

logger = logging.getLogger(__name__)


def load_train_files(paths: list[str], need_scores: bool) -> list[list[dict]]:
    files = []
    for path in paths:
        p = Path(path)
        targets = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
        for target in targets:
            rows = [read_training_row(r, target, n, need_scores) for n, r in iter_jsonl(target)]
            if not rows:
                raise UserError("no training rows", file=target)
            files.append(rows)
    if not files:
        raise UserError("no training files found", field="train_data")
    return files


class RetrieverTrainDataset(Dataset):
    def __init__(self, files: list[list[dict]], group_size: int, global_batch_size: int, seed: int,
                 same_dataset_within_batch: bool, use_teacher: bool):
        self.files = files
        self.group_size = group_size
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.same_dataset = same_dataset_within_batch
        self.use_teacher = use_teacher
        self.epoch = 0
        self.order = self._build_order(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = self._build_order(epoch)

    def _build_order(self, epoch: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng(self.seed + epoch)
        if not self.same_dataset:
            flat = [(f, i) for f, rows in enumerate(self.files) for i in range(len(rows))]
            return [flat[j] for j in rng.permutation(len(flat))]
        blocks = []
        for f, rows in enumerate(self.files):
            perm = rng.permutation(len(rows))
            usable = len(perm) - len(perm) % self.global_batch_size  # a global batch never mixes files
            blocks += [[(f, int(i)) for i in perm[s:s + self.global_batch_size]]
                       for s in range(0, usable, self.global_batch_size)]
        return [pair for b in rng.permutation(len(blocks)) for pair in blocks[b]]

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> dict:
        f, i = self.order[index]
        row = self.files[f][i]
        rng = random.Random(f"{self.seed}:{self.epoch}:{f}:{i}")
        p = rng.randrange(len(row["pos"]))
        need = self.group_size - 1
        neg_idx = list(range(len(row["neg"])))
        if need and not neg_idx:
            raise UserError(f"a row has no negatives but train_group_size is {self.group_size}", field="neg")
        picked = rng.sample(neg_idx, need) if len(neg_idx) >= need else \
            [neg_idx[k % len(neg_idx)] for k in range(need)]
        if self.use_teacher:
            picked.sort(key=lambda k: -row["neg_scores"][k])
        item = {"query": row["query"], "passages": [row["pos"][p]] + [row["neg"][k] for k in picked],
                "answer": row.get("answer")}
        if self.use_teacher:
            item["teacher"] = [float(row["pos_scores"][p])] + [float(row["neg_scores"][k]) for k in picked]
        return item


@dataclass
class RetrieverCollator:
    tokenizer: object
    query_max_len: int
    passage_max_len: int
    query_instruction: str | None = None
    passage_instruction: str | None = None
    instruction_format: str = "{}{}"
    with_answers: bool = False

    def _fmt(self, texts: list[str], instruction: str | None) -> list[str]:
        return [self.instruction_format.format(instruction, t) for t in texts] if instruction else texts

    def _tok(self, texts: list[str], max_len: int) -> dict:
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt"))

    def __call__(self, items: list[dict]) -> dict:
        batch = {"query": self._tok(self._fmt([it["query"] for it in items], self.query_instruction),
                                    self.query_max_len),
                 "passages": self._tok(self._fmt([p for it in items for p in it["passages"]],
                                                 self.passage_instruction), self.passage_max_len)}
        if self.with_answers:
            missing = [it for it in items if not it.get("answer")]
            if missing:
                raise UserError("training_type includes 'answer' but a row has no answer (stage D writes it)",
                                field="answer")
            # Answers are encoded exactly as at inference: PREFIX + answer, on the passage side.
            answers = [augmentation_prefix() + it["answer"] for it in items]
            batch["answers"] = self._tok(self._fmt(answers, self.passage_instruction), self.passage_max_len)
        return with_teacher(batch, items)


def with_teacher(features: dict, items: list[dict]) -> dict:
    """Adds the groups' teacher scores (rows with ``pos_scores``/``neg_scores``) for distillation."""
    if "teacher" in items[0]:
        features["teacher"] = torch.tensor([it["teacher"] for it in items], dtype=torch.float32)
    return features
