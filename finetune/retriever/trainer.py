"""``RetrieverTrainer``: a ``transformers.Trainer`` subclass computing the Reinforced-IR retriever losses."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import Trainer, TrainerCallback

from .losses import EncodedBatch, build_retriever_loss
from .modeling import EmbeddingModel, gather_with_grad

logger = logging.getLogger(__name__)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class EpochCallback(TrainerCallback):
    """Rebuild the dataset order (groups, same-file batches) at each epoch, deterministically."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


class RetrieverTrainer(Trainer):
    def __init__(self, *args, max_seq_length: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_seq_length = max_seq_length
        self.retriever_loss = build_retriever_loss(self.args)
        self._components: dict[str, float] = {}

    def _get_train_sampler(self, *args, **kwargs):
        # The dataset already holds a seeded, per-epoch order (same-file global batches); keep it.
        return torch.utils.data.SequentialSampler(self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        a = self.args
        # Encode through the DDP / DeepSpeed wrapper itself (model(...)), so that gradients are averaged across ranks.
        q = model(inputs["query"])
        p_local = model(inputs["passages"])
        cross = a.negatives_cross_device and a.use_inbatch_neg
        batch = EncodedBatch(q=q, p=gather_with_grad(p_local) if cross else p_local, p_local=p_local,
                             group_size=p_local.size(0) // q.size(0), offset=_rank() * q.size(0) if cross else 0,
                             teacher=inputs.get("teacher"))
        if self.retriever_loss.needs_answers:
            batch.answers = model(inputs["answers"])
            batch.answers_all = gather_with_grad(batch.answers) if a.negatives_cross_device else batch.answers
            batch.answer_offset = _rank() * q.size(0) if a.negatives_cross_device else 0
        loss, parts = self.retriever_loss(batch)
        for k, v in parts.items():
            self._components[k] = self._components.get(k, 0.0) + float(v.detach())
        return (loss, {"q": q}) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        if self._components and "loss" in logs:
            steps = max(1, self.args.logging_steps)
            logs.update({f"loss_{k}": round(v / steps, 4) for k, v in self._components.items()})
            self._components = {}
        super().log(logs, *args, **kwargs)

    # ---------------------------------------------------------------- saving in sentence-transformers form
    def _save(self, output_dir: str | None = None, state_dict=None):
        output_dir = output_dir or self.args.output_dir
        model: EmbeddingModel = self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model
        backbone_state = None
        if state_dict is not None:
            backbone_state = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
        model.save(output_dir, tokenizer=self.processing_class, max_seq_length=self.max_seq_length,
                   state_dict=backbone_state)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = model or self.model
        target = model.module if hasattr(model, "module") else model
        from safetensors.torch import load_file

        weights = Path(resume_from_checkpoint) / "model.safetensors"
        state = load_file(str(weights))
        missing, unexpected = target.backbone.load_state_dict(state, strict=False)
        if unexpected:
            logger.warning("checkpoint has unexpected keys: %s", unexpected[:5])
        logger.info("resumed weights from %s", resume_from_checkpoint)
