"""Unit checks of the stage rules: RLRF keep rule, negative mining, ranking parsing, teacher scores, text clean-up."""
import random

import numpy as np
import pytest

from data_generation.generate_generator_data import GeneratorDataArguments, select_pair
from data_generation.generate_queries import parse_qc_reply
from data_generation.generate_retriever_data import RetrieverDataArguments, mine_negatives, passes_round_trip
from data_generation.generate_retriever_distill_data import parse_ranking, teacher_rows
from data_generation.rows import read_training_row, training_row
from data_generation.text import (clean_generated_query, copies_document, is_repetitive, mentions_source,
                                  truncate_to_tokens)


@pytest.mark.parametrize("seed", range(20))
def test_keep_rule_equals_its_closed_form(seed):
    # s_max > r and (s_max − 0.8r)·τ ≥ (s_min − 0.8r)  ⇔ a_max > r and a_min ≤ τ·a_max (docs/design.md §4)
    rng = np.random.default_rng(seed)
    r, tau = float(rng.uniform(0.2, 0.8)), 0.95
    a = rng.uniform(0.1, 0.9, size=4)
    picked = select_pair(r, a, 0.2, tau, True)
    expected = a.max() > r and a.min() <= tau * a.max()
    assert (not isinstance(picked, str)) == expected
    if not isinstance(picked, str):
        k_pos, k_neg, s_max, s_min = picked
        assert (k_pos, k_neg) == (int(a.argmax()), int(a.argmin()))
        assert s_max == pytest.approx(0.8 * r + 0.2 * a.max()) and s_min == pytest.approx(0.8 * r + 0.2 * a.min())


def test_keep_rule_reasons():
    assert select_pair(0.5, np.array([0.45, 0.40]), 0.2, 0.95, True) == "no_augmentation_beats_query"
    assert select_pair(0.5, np.array([0.60, 0.59]), 0.2, 0.95, True) == "samples_too_similar"
    assert not isinstance(select_pair(0.5, np.array([0.45, 0.40]), 0.2, 0.95, False), str)  # rule 1 off


def _mining_args(**kw):
    base = dict(output_dir="x", queries_path="q", dataset="d", neg_window=3, num_negatives=3,
                fallback_range=[2, 6])
    base.update(kw)
    return RetrieverDataArguments(**base)


def test_95neg_window_starts_at_first_score_below_cutoff():
    ids = np.array([7, 3, 5, 1, 2, 8, 9, 4])
    scores = np.array([1.0, 0.99, 0.96, 0.94, 0.90, 0.80, 0.70, 0.60])
    # positive (3) at rank 1, score .99 → cutoff .9405 → first rank after it with score ≤ cutoff is rank 3
    negs, rank = mine_negatives(ids, scores, 3, 10, _mining_args(), random.Random(0))
    assert rank == 1 and negs == [1, 2, 8]


def test_missing_positive_falls_back_to_fallback_ranks_and_ignores_padding():
    ids = np.array([7, 3, 5, 1, 2, 8, 9, 4, -1, -1])
    scores = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, -np.inf, -np.inf])
    negs, rank = mine_negatives(ids, scores, 6, 10, _mining_args(), random.Random(0))
    assert rank == -1 and len(negs) == 3 and set(negs) <= {5, 1, 2, 8} and -1 not in negs
    assert negs == sorted(negs, key=lambda i: list(ids).index(i))  # kept in rank order


@pytest.mark.parametrize("pos_rank, k, kept", [
    (0, 1, True), (19, 20, True),      # the k-th best is rank k-1: kept
    (1, 1, False), (20, 20, False),    # rank k is one past the top k
    (-1, 20, False),                   # the source was not retrieved at all
])
def test_round_trip_keeps_exactly_ranks_below_k(pos_rank, k, kept):
    assert passes_round_trip(pos_rank, k) is kept


def test_positive_never_among_negatives_in_a_tiny_corpus():
    ids, scores = np.array([0, 1, 2]), np.array([0.9, 0.8, 0.7])
    for neg_type in ("95neg", "hard", "random"):
        negs, _ = mine_negatives(ids, scores, 1, 3, _mining_args(neg_type=neg_type), random.Random(1))
        assert 1 not in negs and negs


@pytest.mark.parametrize("reply, n, order, status", [
    ("[2] > [1] > [3]", 3, [1, 0, 2], "ok"),
    ("[3] > [3] > [1] > [9]", 3, [2, 0, 1], "partial"),       # repeated and out-of-range ids ignored
    ("2 > 3 > 1", 3, [1, 2, 0], "ok"),                         # bare numbers
    ("The first passage is best.", 3, [0, 1, 2], "fallback"),  # nothing usable: mining order
    ("[0] > [1]", 2, [0, 1], "partial"),                       # ids are 1-based; [0] is out of range
])
def test_parse_ranking(reply, n, order, status):
    assert parse_ranking(reply, n) == (order, status)


def test_teacher_scores_are_reciprocal_ranks_without_ties():
    row = {"pos": ["P"], "neg": ["A", "B", "C"], "pos_ids": ["p"], "neg_ids": ["a", "b", "c"]}
    out = teacher_rows(row, [2, 0, 3, 1], relabel=False)  # LLM: B > P > C > A
    assert out["pos"] == ["P"] and out["pos_scores"] == [0.5] and out["pos_ids"] == ["p"]
    assert out["neg"] == ["B", "C", "A"] and out["neg_ids"] == ["b", "c", "a"]
    assert out["neg_scores"] == pytest.approx([1.0, 1 / 3, 1 / 4])
    relabeled = teacher_rows(row, [2, 0, 3, 1], relabel=True)  # the reference: LLM's top becomes positive
    assert relabeled["pos"] == ["B"] and relabeled["pos_scores"] == [1.0] and relabeled["neg"] == ["P", "C", "A"]
    assert relabeled["pos_ids"] == ["b"] and relabeled["neg_ids"] == ["p", "c", "a"]


def test_teacher_rows_read_rows_written_with_a_single_pos_id():
    legacy = {"pos": ["P"], "neg": ["A", "B"], "pos_id": "p", "neg_ids": ["a", "b"]}
    out = teacher_rows(legacy, [1, 0, 2], relabel=True)
    assert out["pos_ids"] == ["a"] and out["neg_ids"] == ["p", "b"] and "pos_id" not in out


def test_training_rows_keep_ids_and_scores_aligned_with_their_passages():
    row = training_row("q", ["P"], ["A", "B"], pos_ids=["p"], neg_ids=["a", "b"], pos_scores=[0.9],
                       neg_scores=[0.5, 0.1], id="q1")
    assert row == {"id": "q1", "query": "q", "pos": ["P"], "neg": ["A", "B"], "pos_ids": ["p"],
                   "neg_ids": ["a", "b"], "pos_scores": [0.9], "neg_scores": [0.5, 0.1]}
    assert read_training_row(row, "f", 1, need_scores=True)["neg_scores"] == [0.5, 0.1]
    with pytest.raises(ValueError, match="neg_ids has 1 entries for 2 passages"):
        training_row("q", ["P"], ["A", "B"], pos_ids=["p"], neg_ids=["a"])


def test_qc_reply_is_parsed_strictly():
    assert parse_qc_reply("1") == 1 and parse_qc_reply("0: No, it cannot.") == 0 and parse_qc_reply(" [1]") == 1
    assert parse_qc_reply("10") is None and parse_qc_reply("Yes") is None and parse_qc_reply("1.5") is None


def test_text_helpers():
    assert clean_generated_query('The scientific claim is: "Statins lower LDL."') == "Statins lower LDL."
    assert clean_generated_query("\n\nQuery: how tall is everest\nBecause...") == "how tall is everest"
    # SmolLM2's framings of a claim are lifted off (seen in SciFact runs)
    assert clean_generated_query('The scientific claim is "MEF deletion blocks MET signalling.') == \
        "MEF deletion blocks MET signalling."
    assert clean_generated_query('A single sentence to convey a finding: "Butyrate boosts iPSC yield.') == \
        "Butyrate boosts iPSC yield."
    assert clean_generated_query("The findings of this study suggest that weight gain raises risk.") == \
        "Weight gain raises risk."
    passage = "Statins lower LDL cholesterol in adults with diabetes according to a large randomised trial."
    assert copies_document("statins lower LDL cholesterol in adults with diabetes", passage)
    assert not copies_document("Do statins reduce cholesterol for diabetic patients?", passage)
    assert truncate_to_tokens("one two three four five six seven eight", 4) == "one two three"


def test_stage_arguments_validate():
    from inference.errors import UserError

    with pytest.raises(UserError):
        GeneratorDataArguments(output_dir="o", queries_path="q", dpo_num=1).validate()
    with pytest.raises(UserError):
        GeneratorDataArguments(output_dir="o", queries_path="q", temperature=0).validate()


def test_degenerate_outputs_are_recognised():
    assert clean_generated_query("This abstract supports the claim that statins lower LDL.") == "Statins lower LDL."
    assert clean_generated_query('The claim is "PVT1 promotes proliferation."') == "PVT1 promotes proliferation."
    assert is_repetitive("the gene for the gene for the gene for the gene for")
    assert not is_repetitive("Vitamin D deficiency raises the risk of multiple sclerosis in adults.")
    assert mentions_source("The document can refute the claim.", "document")
    assert mentions_source("This abstract describes a trial.", "document")
    assert not mentions_source("Statins reduce LDL cholesterol.", "document")


def test_simple_prompt_style_for_small_models():
    from inference.prompts import get_task, query_generation_prompt

    task = get_task("scifact")
    simple = query_generation_prompt("Some abstract.", task, random.Random(0), style="simple")
    assert simple.startswith("Here is a document:\nSome abstract.")
    assert "one-sentence scientific claim that this document supports" in simple
    full = query_generation_prompt("Some abstract.", task, random.Random(0))
    assert "Example 3:" in full and "Mission:" in full  # the reference structure, three examples


def test_query_likelihood_prefers_the_passage_the_query_is_about(smollm2):
    from inference.prompts import query_likelihood_prompt

    from conftest import TINY_CORPUS, TINY_QUERIES

    passages = [f"{d['title']}. {d['text']}" for d in TINY_CORPUS]
    for query, source in [(TINY_QUERIES[0]["text"], 0), (TINY_QUERIES[1]["text"], 2), (TINY_QUERIES[2]["text"], 5)]:
        scores = smollm2.continuation_logprobs([query_likelihood_prompt(p) for p in passages], [query] * 6)
        assert max(range(6), key=scores.__getitem__) == source, scores
    # Batched (right-padded) scores equal one-at-a-time scores.
    prompts = [query_likelihood_prompt(passages[0]), query_likelihood_prompt(passages[3][:20])]
    texts = ["how do plants make oxygen from sunlight", "chess"]
    together = smollm2.continuation_logprobs(prompts, texts)
    alone = [smollm2.continuation_logprobs([p], [t])[0] for p, t in zip(prompts, texts)]
    assert together == pytest.approx(alone, abs=1e-4)
    # The same number as transformers' own loss over the continuation tokens (labels -100 on the prompt).
    import torch

    prompt_ids = smollm2.tokenizer(smollm2.format_prompt(prompts[0]), add_special_tokens=False)["input_ids"]
    cont_ids = smollm2.tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + cont_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + cont_ids])
    with torch.inference_mode():
        loss = float(smollm2.model(input_ids=ids, labels=labels).loss)
    assert together[0] == pytest.approx(-loss, abs=1e-4)
