"""``RerankerTrainer``: listwise cross-entropy over each query's group (the positive is index 0).

Cross-encoder batches hold the joint (query, passage) features; ColBERT batches hold query and passage features
separately (the retriever trainer's collator) and are scored with MaxSim. Either way the model is a plain
``PreTrainedModel``, so the Trainer saves and resumes it natively."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import Trainer

from finetune.retriever.data import with_teacher


@dataclass
class RerankerCollator:
    """Each item's (query, passage) pairs, tokenised jointly; groups stay contiguous."""
    tokenizer: object
    max_length: int

    def __call__(self, items: list[dict]) -> dict:
        queries = [it["query"] for it in items for _ in it["passages"]]
        passages = [p for it in items for p in it["passages"]]
        features = dict(self.tokenizer(queries, passages, padding=True, truncation="longest_first",
                                       max_length=self.max_length, return_tensors="pt"))
        features["group_size"] = len(items[0]["passages"])
        return with_teacher(features, items)


@dataclass
class LLMRerankCollator:
    """Chat-formatted yes/no prompts for each (query, passage); groups stay contiguous."""
    tokenizer: object
    max_length: int
    task_instruction: str = ""

    def __call__(self, items: list[dict]) -> dict:
        from inference.reranker import yes_no_inputs

        pairs = [(it["query"], p) for it in items for p in it["passages"]]
        features = dict(yes_no_inputs(self.tokenizer, pairs, self.task_instruction, self.max_length))
        features["group_size"] = len(items[0]["passages"])
        return with_teacher(features, items)


class RerankerTrainer(Trainer):
    def __init__(self, *args, yes_no_ids: tuple[int, int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.yes_no_ids = yes_no_ids

    def _get_train_sampler(self, *args, **kwargs):
        # The dataset already holds a seeded, per-epoch order; keep it.
        return torch.utils.data.SequentialSampler(self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        teacher = inputs.pop("teacher", None)
        if "query" in inputs:
            logits = self._colbert_scores(model, inputs)
        else:
            group = int(inputs.pop("group_size"))
            out = model(**inputs).logits
            if self.yes_no_ids is not None:  # LLM: logit(Yes) − logit(No) at the answer position
                yes, no = self.yes_no_ids
                out = out[:, -1, yes] - out[:, -1, no]
            logits = out.reshape(-1, group)
        labels = torch.zeros(logits.size(0), dtype=torch.long, device=logits.device)
        loss = F.cross_entropy(logits, labels)
        if teacher is not None and self.args.knowledge_distillation:
            target = F.softmax(teacher.to(logits.device) / self.args.teacher_temperature, dim=-1)
            loss = loss + F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")
        return (loss, {"logits": logits}) if return_outputs else loss

    @staticmethod
    def _colbert_scores(model, inputs) -> torch.Tensor:
        from inference.reranker import maxsim

        q_feat, p_feat = inputs["query"], inputs["passages"]
        q = F.normalize(model(**q_feat).last_hidden_state, dim=-1)
        p = F.normalize(model(**p_feat).last_hidden_state, dim=-1)
        b = q.size(0)
        group = p.size(0) // b
        return maxsim(q, q_feat["attention_mask"], p.view(b, group, p.size(1), -1),
                      p_feat["attention_mask"].view(b, group, -1))
