"""Each retriever loss against a hand computation on small tensors."""
import math

import pytest
import torch

from finetune.retriever.losses import (AnswerNormRegularizer, GroupOnlyInfoNCELoss, InfoNCELoss, KLDistillationLoss,
                                       PlackettLuceKDLoss)

Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
# Group size 2: query 0 owns passages 0 (positive) and 1; query 1 owns 2 (positive) and 3.
P = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
E = math.e


def test_infonce_in_batch():
    # row 0 scores [1, 0, 0, 1] target 0; row 1 scores [0, 1, 1, 0] target 2: both −log(e / (2e + 2))
    assert InfoNCELoss(1.0)(Q, P, 2).item() == pytest.approx(math.log(2 * E + 2) - 1, abs=1e-6)


def test_infonce_temperature_and_cross_device_offset():
    # One local query on rank 1 of a 2-rank gather: its positive is column (1 + 0) * 2 = 2.
    q = torch.tensor([[0.0, 1.0]])
    expected = -math.log(math.exp(1 / 0.5) / (2 * math.exp(0) + 2 * math.exp(1 / 0.5)))
    assert InfoNCELoss(0.5)(q, P, 2, offset=1).item() == pytest.approx(expected, abs=1e-6)


def test_group_only_infonce_ignores_other_queries():
    # row 0 sees [1, 0] → −log(e/(e+1)); row 1 sees [1, 0] → same
    assert GroupOnlyInfoNCELoss(1.0)(Q, P, 2).item() == pytest.approx(math.log(E + 1) - 1, abs=1e-6)


def test_plackett_luce_kd():
    # k = 0 is InfoNCE; k = 1 masks each row's positive: row 0 [−∞, 0, 0, 1] target 1 → log(2 + e);
    # row 1 [0, 1, −∞, 0] target 3 → log(2 + e).
    expected = ((math.log(2 * E + 2) - 1) + math.log(2 + E)) / 2
    assert PlackettLuceKDLoss(1.0)(Q, P, 2).item() == pytest.approx(expected, abs=1e-6)


def test_plackett_luce_backward_runs():
    q = Q.clone().requires_grad_(True)
    PlackettLuceKDLoss(0.02)(q, P, 2).backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_kl_distillation():
    teacher = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    t0 = [E ** 2 / (E ** 2 + 1), 1 / (E ** 2 + 1)]
    # student groups: row 0 [1, 0], row 1 [1, 0] (τ = 1)
    log_s = [1 - math.log(E + 1), -math.log(E + 1)]
    row0 = -(t0[0] * log_s[0] + t0[1] * log_s[1])
    row1 = -(0.5 * log_s[0] + 0.5 * log_s[1])
    assert KLDistillationLoss(1.0, 1.0)(Q, P, teacher).item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    # A teacher temperature sharpens the target: T = 0.5 doubles the logits.
    sharper = KLDistillationLoss(1.0, 0.5)(Q, P, teacher / 2).item()
    assert sharper == pytest.approx((row0 + row1) / 2, abs=1e-6)


def test_answer_norm_regularizer():
    assert AnswerNormRegularizer()(torch.tensor([[3.0, 4.0], [0.0, 1.0]])).item() == pytest.approx(8.0)


def loss_args(**overrides):
    from types import SimpleNamespace

    values = {"training_type": "retrieval", "knowledge_distillation": False, "kd_loss_type": "m3_kd_loss",
              "use_inbatch_neg": True, "normalize_answer": False, "temperature": 1.0, "teacher_temperature": 1.0,
              "answer_temperature": 1.0}
    return SimpleNamespace(**{**values, **overrides})


@pytest.mark.parametrize("overrides, names", [
    ({}, ["infonce"]),
    ({"knowledge_distillation": True}, ["kd_pl"]),
    ({"knowledge_distillation": True, "kd_loss_type": "kl_div"}, ["infonce", "kd_kl"]),
    ({"training_type": "retrieval_answer", "normalize_answer": True}, ["infonce", "answer", "answer_norm"]),
    ({"training_type": "answer"}, ["answer"]),
])
def test_the_loss_builder_chooses_the_terms_the_arguments_name(overrides, names):
    from finetune.retriever.losses import EncodedBatch, build_retriever_loss

    loss = build_retriever_loss(loss_args(**overrides))
    teacher = torch.tensor([[1.0, 0.5], [1.0, 0.5]])
    answers = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    batch = EncodedBatch(q=Q, p=P, p_local=P, group_size=2, teacher=teacher, answers=answers, answers_all=answers)
    total, parts = loss(batch)
    assert list(parts) == names and loss.needs_answers == ("answer" in names)
    assert total.item() == pytest.approx(sum(v.item() for v in parts.values()))
    expected = {"infonce": InfoNCELoss(1.0)(Q, P, 2), "kd_pl": PlackettLuceKDLoss(1.0)(Q, P, 2),
                "kd_kl": KLDistillationLoss(1.0, 1.0)(Q, P, teacher), "answer": InfoNCELoss(1.0)(Q, answers, 1),
                "answer_norm": AnswerNormRegularizer()(answers)}
    for name in names:
        assert parts[name].item() == pytest.approx(expected[name].item(), abs=1e-6)


def test_without_in_batch_negatives_each_query_sees_only_its_group():
    from finetune.retriever.losses import EncodedBatch, build_retriever_loss

    loss = build_retriever_loss(loss_args(use_inbatch_neg=False))
    _, parts = loss(EncodedBatch(q=Q, p=P, p_local=P, group_size=2))
    assert parts["infonce"].item() == pytest.approx(GroupOnlyInfoNCELoss(1.0)(Q, P, 2).item(), abs=1e-6)
