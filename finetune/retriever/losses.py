"""Retriever training losses (docs/design.md §8), each a small module checked by hand in the tests.

Shapes: B queries, G passages per query (group 0 is the positive), answers B. Scores are dot products divided
by a temperature. Passages/answers may be gathered from other devices first (more negatives); the target
index of query i is then ``(rank·B + i)·G`` — the caller passes ``offset = rank·B``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCELoss(nn.Module):
    """CE(⟨q_i, p_*⟩/τ, target = (offset + i)·G): in-batch (and cross-device) negatives plus hard negatives."""

    def __init__(self, temperature: float = 0.02):
        super().__init__()
        self.temperature = temperature

    def forward(self, q: torch.Tensor, p: torch.Tensor, group_size: int, offset: int = 0) -> torch.Tensor:
        scores = q @ p.T / self.temperature
        target = (torch.arange(q.size(0), device=q.device) + offset) * group_size
        return F.cross_entropy(scores, target)


class GroupOnlyInfoNCELoss(nn.Module):
    """``use_inbatch_neg = false``: each query sees only its own group."""

    def __init__(self, temperature: float = 0.02):
        super().__init__()
        self.temperature = temperature

    def forward(self, q: torch.Tensor, p_local: torch.Tensor, group_size: int) -> torch.Tensor:
        groups = p_local.view(q.size(0), group_size, -1)
        scores = torch.einsum("bd,bgd->bg", q, groups) / self.temperature
        return F.cross_entropy(scores, torch.zeros(q.size(0), dtype=torch.long, device=q.device))


class PlackettLuceKDLoss(nn.Module):
    """The reference's ``m3_kd_loss`` (order-only ListMLE): member k of each group, in teacher order, must beat
    every not-yet-placed member of its group *and* every other passage in the (gathered) batch:

        L = (1/G) Σ_k mean_i CE(S_i + M_k, (offset+i)·G + k),   M_k masks columns (offset+i)·G + 0..k−1 of row i.

    Teacher values only set the order; the caller sorts each group by teacher score (positive first).
    """

    def __init__(self, temperature: float = 0.02):
        super().__init__()
        self.temperature = temperature

    def forward(self, q: torch.Tensor, p: torch.Tensor, group_size: int, offset: int = 0) -> torch.Tensor:
        scores = q @ p.T / self.temperature
        rows = torch.arange(q.size(0), device=q.device)
        base = (rows + offset) * group_size
        total = scores.new_zeros(())
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for k in range(group_size):
            if k > 0:
                mask = mask.clone()  # masked_fill keeps the previous mask for backward
                mask[rows, base + k - 1] = True  # the member placed at step k−1 leaves the candidate set
            masked = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
            total = total + F.cross_entropy(masked, base + k)
        return total / group_size


class KLDistillationLoss(nn.Module):
    """``kl_div``: −Σ softmax(t / T_t) · log_softmax(group scores / τ), averaged over queries.

    With the RLGF teacher scores 1, 1/2, 1/3, ... a teacher temperature T_t < 1 sharpens an otherwise almost
    flat target (docs/design.md §8)."""

    def __init__(self, temperature: float = 0.02, teacher_temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.teacher_temperature = teacher_temperature

    def forward(self, q: torch.Tensor, p_local: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        groups = p_local.view(q.size(0), teacher.size(1), -1)
        student = torch.einsum("bd,bgd->bg", q, groups) / self.temperature
        target = torch.softmax(teacher / self.teacher_temperature, dim=-1)
        return -(target * torch.log_softmax(student, dim=-1)).sum(-1).mean()


class AnswerNormRegularizer(nn.Module):
    """MSE(‖a_i‖₂, 1): keeps unnormalised answer embeddings on the unit sphere's scale."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        norms = a.norm(dim=-1)
        return F.mse_loss(norms, torch.ones_like(norms))


@dataclass
class EncodedBatch:
    """What the loss terms read. ``q``: this rank's B queries; ``p``: passages, gathered from every rank when
    negatives cross devices (else ``p_local``); ``offset``: this rank's first query in the gathered batch; G
    passages per query; ``teacher``: (B, G) scores; answers, when a term needs them, local and gathered."""
    q: torch.Tensor
    p: torch.Tensor
    p_local: torch.Tensor
    group_size: int
    offset: int = 0
    teacher: torch.Tensor | None = None
    answers: torch.Tensor | None = None
    answers_all: torch.Tensor | None = None
    answer_offset: int = 0


class RetrieverLoss(nn.Module):
    """The sum of named terms, chosen once from the training arguments by :func:`build_retriever_loss`."""

    def __init__(self, terms: dict[str, Callable[[EncodedBatch], torch.Tensor]], needs_answers: bool):
        super().__init__()
        self.terms = terms
        self.needs_answers = needs_answers

    def forward(self, batch: EncodedBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {name: term(batch) for name, term in self.terms.items()}
        return sum(parts.values()), parts


def build_retriever_loss(args) -> RetrieverLoss:
    """The terms ``training_type``, ``knowledge_distillation``, ``kd_loss_type``, ``use_inbatch_neg`` and
    ``normalize_answer`` select (docs/design.md §8). ``m3_kd_loss`` replaces InfoNCE (its first step is InfoNCE);
    ``kl_div`` is added to it."""
    terms: dict[str, Callable[[EncodedBatch], torch.Tensor]] = {}
    if args.training_type in ("retrieval", "retrieval_answer"):
        if args.knowledge_distillation and args.kd_loss_type == "m3_kd_loss":
            pl = PlackettLuceKDLoss(args.temperature)
            terms["kd_pl"] = lambda b: pl(b.q, b.p, b.group_size, b.offset)
        else:
            if args.use_inbatch_neg:
                infonce = InfoNCELoss(args.temperature)
                terms["infonce"] = lambda b: infonce(b.q, b.p, b.group_size, b.offset)
            else:
                group_only = GroupOnlyInfoNCELoss(args.temperature)
                terms["infonce"] = lambda b: group_only(b.q, b.p_local, b.group_size)
            if args.knowledge_distillation:
                kl = KLDistillationLoss(args.temperature, args.teacher_temperature)
                terms["kd_kl"] = lambda b: kl(b.q, b.p_local, b.teacher.to(b.q.device))
    needs_answers = args.training_type in ("answer", "retrieval_answer")
    if needs_answers:
        answer = InfoNCELoss(args.answer_temperature)
        terms["answer"] = lambda b: answer(b.q, b.answers_all, 1, b.answer_offset)
        if args.normalize_answer:
            norm = AnswerNormRegularizer()
            terms["answer_norm"] = lambda b: norm(b.answers)
    return RetrieverLoss(terms, needs_answers)
