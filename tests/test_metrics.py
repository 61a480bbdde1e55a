"""Metric code against values computed by hand on a 3-query toy qrels."""
import math

import pytest

from evaluation.metrics import evaluate_run, per_query_metrics

# q1: two relevant docs at ranks 1 and 3.  q2: one doc of grade 2 at rank 2.
# q3: its only relevant doc is never retrieved, and the run's top hit is the query's own id (removed).
QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d2": 2}, "q3": {"d3": 1}}
RUN = {
    "q1": {"d1": 0.9, "d3": 0.8, "d2": 0.7},
    "q2": {"d1": 0.9, "d2": 0.5},
    "q3": {"q3": 0.99, "d1": 0.5, "d2": 0.4},
}

L2 = math.log2
NDCG10_Q1 = (1 / L2(2) + 1 / L2(4)) / (1 / L2(2) + 1 / L2(3))   # 1.5 / 1.6309 = 0.91972
NDCG10_Q2 = (2 / L2(3)) / (2 / L2(2))                              # trec_eval gain = grade: 0.63093
MAP_Q1 = (1 / 1 + 2 / 3) / 2


def test_per_query_values_match_hand_computation():
    m = per_query_metrics(QRELS, RUN)
    assert m["q1"]["ndcg@10"] == pytest.approx(NDCG10_Q1, abs=1e-6)
    assert m["q1"]["ndcg@1"] == pytest.approx(1.0)
    assert m["q1"]["ndcg@3"] == pytest.approx(NDCG10_Q1, abs=1e-6)
    assert m["q1"]["map@100"] == pytest.approx(MAP_Q1, abs=1e-6)
    assert m["q1"]["mrr@10"] == pytest.approx(1.0)
    assert m["q1"]["recall@10"] == pytest.approx(1.0)
    assert m["q2"]["ndcg@10"] == pytest.approx(NDCG10_Q2, abs=1e-6)
    assert m["q2"]["ndcg@1"] == pytest.approx(0.0)
    assert m["q2"]["mrr@10"] == pytest.approx(0.5)
    assert m["q2"]["map@100"] == pytest.approx(0.5)
    # The identical-id hit is removed, so q3 scores zero everywhere (not a hit on "q3").
    assert all(v == 0.0 for v in m["q3"].values())


def test_means_over_judged_queries():
    mean = evaluate_run(QRELS, RUN)
    assert mean["ndcg@10"] == pytest.approx((NDCG10_Q1 + NDCG10_Q2 + 0) / 3, abs=1e-6)
    assert mean["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-6)
    assert mean["map@100"] == pytest.approx((MAP_Q1 + 0.5 + 0) / 3, abs=1e-6)
    assert mean["recall@10"] == pytest.approx(2 / 3, abs=1e-6)


def test_judged_query_missing_from_run_counts_as_zero():
    run = {k: v for k, v in RUN.items() if k != "q2"}
    mean = evaluate_run(QRELS, run)
    assert mean["ndcg@10"] == pytest.approx((NDCG10_Q1 + 0 + 0) / 3, abs=1e-6)


def test_mrr_is_cut_at_10_and_recall_at_100_is_not():
    qrels = {"q": {"rel": 1}}
    run = {"q": {**{f"x{i:02d}": 1.0 - i / 100 for i in range(10)}, "rel": 0.5}}  # relevant doc at rank 11
    m = per_query_metrics(qrels, run)["q"]
    assert m["mrr@10"] == 0.0
    assert m["recall@10"] == 0.0
    assert m["recall@100"] == 1.0
    assert m["ndcg@100"] == pytest.approx(1 / L2(12), abs=1e-6)


def test_subset_of_queries():
    mean = evaluate_run(QRELS, RUN, query_ids=["q1"])
    assert mean["ndcg@10"] == pytest.approx(NDCG10_Q1, abs=1e-6)


def test_evaluator_scores_only_its_queries_and_counts_a_missing_one_as_zero():
    from evaluation.evaluator import RetrievalEvaluator

    evaluator = RetrievalEvaluator({"q1": "a", "q2": "b"}, None, {"q1": QRELS["q1"], "q2": QRELS["q2"]})
    result = evaluator.score_run({"q1": RUN["q1"]})          # q2 absent from the run
    assert result.per_query == pytest.approx({"q1": NDCG10_Q1, "q2": 0.0})
    assert result.score == pytest.approx(NDCG10_Q1 / 2)
    assert result.metrics == pytest.approx(evaluate_run(QRELS, {"q1": RUN["q1"]}, ["q1", "q2"]))


def test_evaluator_searches_with_an_embedder_and_caches_the_corpus(minilm, tmp_path):
    """Held-out pseudo-queries: each row's source is its only qrel; the corpus vectors are cached once."""
    from conftest import TINY_CORPUS, TINY_QUERIES
    from evaluation.evaluator import RetrievalEvaluator

    corpus = {d["_id"]: {"title": d["title"], "text": d["text"]} for d in TINY_CORPUS}
    rows = [{"id": q["_id"], "query": q["text"], "doc_id": d} for q, d in zip(TINY_QUERIES, ("d1", "d3", "d6"))]
    rows.append({"id": "wrong", "query": "the Sicilian Defence chess opening", "doc_id": "d2"})  # judged wrong
    evaluator = RetrievalEvaluator.from_pseudo_queries(rows, corpus, cache_dir=tmp_path)
    result = evaluator(minilm)
    assert result.per_query["q1"] == result.per_query["q2"] == result.per_query["q3"] == 1.0
    assert result.per_query["wrong"] < 1.0 and result.score == pytest.approx((3 + result.per_query["wrong"]) / 4)
    assert len(list(tmp_path.glob("*.npy"))) == 1
