"""The bi-encoder being trained: one HF backbone for queries, passages and answers, pooling, optional L2 norm.

Pooling and normalisation are the same functions the inference ``Embedder`` uses, and ``save`` writes a
sentence-transformers folder (``modules.json``, ``1_Pooling``, ``sentence_bert_config.json``, ``2_Normalize``
when normalising), so the result loads with ``SentenceTransformer(path)``, ``Embedder(path)`` and
``Reinforced_IR_Model(path)`` and gives the same vectors in all three.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from inference.embedder import ST_POOLING, pool

logger = logging.getLogger(__name__)

def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 keeping this rank's slice differentiable (the others are constants).

    Each rank's loss then back-propagates into its own encoder outputs; DDP averages gradients across ranks.
    Ranks must hold equally sized tensors (the trainer drops incomplete last batches)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.detach().contiguous())
    parts[dist.get_rank()] = t
    return torch.cat(parts, dim=0)


class EmbeddingModel(nn.Module):
    def __init__(self, backbone: nn.Module, pooling_method: str = "mean", normalize: bool = True):
        super().__init__()
        self.backbone = backbone
        self.pooling_method = pooling_method
        self.normalize = normalize
        # Encoder poolers (BERT's [CLS] dense layer) are unused by our pooling; under DDP unused parameters
        # would need find_unused_parameters. BertModel and kin accept a missing pooler.
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None
        self.config = backbone.config

    def encode(self, features: dict) -> torch.Tensor:
        hidden = self.backbone(**features).last_hidden_state
        emb = pool(hidden, features["attention_mask"], self.pooling_method)
        return F.normalize(emb, dim=-1) if self.normalize else emb

    def forward(self, features: dict) -> torch.Tensor:
        """The trainer encodes through here, i.e. through the DDP wrapper's ``__call__``: DDP only averages the
        gradients of a backward whose forward went through it (``model.module.encode`` trains each rank alone)."""
        return self.encode(features)

    # Trainer hooks delegate to the backbone.
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)
        if hasattr(self.backbone, "enable_input_require_grads"):
            self.backbone.enable_input_require_grads()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.backbone, "is_gradient_checkpointing", False))

    def save(self, output_dir: str | Path, tokenizer=None, max_seq_length: int | None = None,
             state_dict: dict | None = None) -> None:
        """Write HF weights + tokenizer + sentence-transformers module files."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        backbone = self.backbone
        if hasattr(backbone, "merge_and_unload"):  # LoRA: save a plain model that loads without peft
            import copy

            backbone = copy.deepcopy(backbone).merge_and_unload()
            state_dict = None
        backbone.save_pretrained(output_dir, state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)
        dim = int(self.config.hidden_size)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        pooling = {"word_embedding_dimension": dim, "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
                   "pooling_mode_lasttoken": False, "include_prompt": True}
        pooling[ST_POOLING[self.pooling_method][1]] = True
        (output_dir / "1_Pooling").mkdir(exist_ok=True)
        (output_dir / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
            (output_dir / "2_Normalize").mkdir(exist_ok=True)
        (output_dir / "modules.json").write_text(json.dumps(modules, indent=2))
        (output_dir / "sentence_bert_config.json").write_text(json.dumps(
            {"max_seq_length": max_seq_length or 512, "do_lower_case": False}, indent=2))
