"""Retrieval metrics during training: the ``RetrievalEvaluator`` of the evaluate CLI, as a Trainer callback.

``--eval_dataset DIR --eval_split S`` (optionally ``--eval_query_ids_file``, e.g. rows_from_qrels'
``heldout_query_ids.txt``, and ``--eval_max_queries``) scores the model being trained at the end of every epoch:
the metrics enter the Trainer's log history (``eval_ndcg@10``, ...; so ``trainer_state.json`` and the run summary
hold them) and ``eval_results.jsonl`` in the output folder. Rank 0 evaluates; the other ranks wait at their next
collective. Score on train or dev queries, never on the test split you report.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from evaluation.evaluator import RetrievalEvaluator

from .data import RetrieverCollator
from .modeling import EmbeddingModel

logger = logging.getLogger(__name__)


class TrainingEncoder:
    """The model being trained, as the encoder ``RetrievalEvaluator`` calls: the training collator's instructions
    and lengths, eval mode and no gradients for the call, train mode restored after."""

    def __init__(self, model: EmbeddingModel, collator: RetrieverCollator, batch_size: int = 64):
        self.model, self.collator, self.batch_size = model, collator, batch_size

    def _encode(self, texts: list[str], instruction: str | None, max_len: int) -> np.ndarray:
        c, was_training = self.collator, self.model.training
        device = next(self.model.parameters()).device
        self.model.eval()
        try:
            with torch.no_grad():
                parts = []
                for start in range(0, len(texts), self.batch_size):
                    features = c._tok(c._fmt(texts[start:start + self.batch_size], instruction), max_len)
                    parts.append(self.model.encode({k: v.to(device) for k, v in features.items()}).float().cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(parts).numpy()

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return self._encode(list(queries), self.collator.query_instruction, self.collator.query_max_len)

    def encode_corpus(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts), self.collator.passage_instruction, self.collator.passage_max_len)


class RetrievalEvaluatorCallback(TrainerCallback):
    """Runs ``evaluator`` on the model at each epoch's end (rank 0) and logs ``eval_<metric>``."""

    def __init__(self, evaluator: RetrievalEvaluator, collator: RetrieverCollator, batch_size: int = 64):
        self.evaluator, self.collator, self.batch_size = evaluator, collator, batch_size

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        result = self.evaluator(TrainingEncoder(model, self.collator, self.batch_size))
        metrics = {f"eval_{k}": round(v, 5) for k, v in result.metrics.items()}
        record = {"epoch": round(float(state.epoch or 0), 4), "step": state.global_step,
                  "evaluator": self.evaluator.name, "queries": len(self.evaluator.query_ids), **metrics}
        state.log_history.append(record)
        logger.info("epoch %.2f: %s nDCG@10 %.4f on %d queries", record["epoch"], self.evaluator.name,
                    result.score, record["queries"])
        path = Path(args.output_dir) / "eval_results.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:  # one line per epoch; a resumed run appends
            f.write(json.dumps(record) + "\n")
