"""BM25 (bm25s + PyStemmer), dense + BM25 fusion, paired statistics and the label-free weight rule."""
import itertools
import json

import numpy as np
import pytest

from evaluation.label_free import PseudoQueries, choose_hybrid_weight, choose_weight, round_trip_mask
from evaluation.search import bm25_index_cached
from evaluation.stats import bootstrap_interval, compare, paired_randomization_test
from inference.hybrid import HybridCandidates, fuse_scores
from inference.sparse import BM25Config, BM25Index

from conftest import MINILM, SCIFACT, TINY_CORPUS, run_module


def test_bm25_ranks_by_shared_stemmed_words_and_skips_unknown_words():
    index = BM25Index.build(TINY_CORPUS)
    scores, ids = index.search(["volcanic eruptions of lava", "zzzunknownword", "the"], top_k=3)
    assert ids[0, 0] == 1                      # "eruptions" → "erupt", "lava": the volcano document
    assert (ids[1] == -1).all() and (ids[2] == -1).all()   # unknown word / stop word only: no hit, no crash
    assert scores[0, 0] > 0 and np.isneginf(scores[1]).all()


def test_bm25_cache_is_reused_and_keyed_by_settings(tmp_path, caplog):
    first = bm25_index_cached(TINY_CORPUS, tmp_path)
    with caplog.at_level("INFO"):
        again = bm25_index_cached(TINY_CORPUS, tmp_path)
    assert "BM25 index loaded from cache" in caplog.text
    q = ["plants sunlight oxygen"]
    np.testing.assert_allclose(next(first.iter_scores(q)), next(again.iter_scores(q)))
    other = bm25_index_cached(TINY_CORPUS, tmp_path, BM25Config(k1=0.9))
    assert len(list((tmp_path / "bm25").iterdir())) == 2 and other.config.k1 == 0.9
    changed = bm25_index_cached(TINY_CORPUS[:5], tmp_path)   # another corpus: another key, never a stale index
    assert changed.num_documents == 5 and len(list((tmp_path / "bm25").iterdir())) == 3


def test_fusion_endpoints_are_the_two_rankings_and_rrf_is_symmetric():
    dense = np.array([0.9, 0.5, 0.1, 0.3])
    sparse = np.array([0.0, 2.0, 7.0, 1.0])
    assert np.argsort(-fuse_scores(dense, sparse, 0.0)).tolist() == [0, 1, 3, 2]
    assert np.argsort(-fuse_scores(dense, sparse, 1.0)).tolist() == [2, 1, 3, 0]
    mid = fuse_scores(dense, sparse, 0.5)
    assert mid[1] == pytest.approx(0.5 * 2 / 7 + 0.5 * 0.5)
    rrf = fuse_scores(dense, sparse, 0.5, "rrf")
    assert rrf[0] == pytest.approx(1 / 61 + 1 / 64) and rrf[2] == pytest.approx(1 / 64 + 1 / 61)
    with pytest.raises(ValueError):
        fuse_scores(dense, sparse, 1.5)


def test_hybrid_candidates_score_both_retrievers_exactly():
    rng = np.random.default_rng(0)
    doc_emb = rng.normal(size=(6, 4)).astype(np.float32)
    query_emb = rng.normal(size=(2, 4)).astype(np.float32)
    index = BM25Index.build(TINY_CORPUS)
    queries = ["insulin hormone pancreas", "bread dough yeast"]
    cands = HybridCandidates.gather(query_emb, doc_emb, index, queries, depth=2)
    for qi, row in enumerate(index.iter_scores(queries)):
        pool = cands.doc_indices[qi]
        np.testing.assert_allclose(cands.dense[qi], doc_emb[pool] @ query_emb[qi], rtol=1e-5)
        np.testing.assert_allclose(cands.sparse[qi], row[pool])
        assert set(np.argsort(-(doc_emb @ query_emb[qi]))[:2]) <= set(pool)
    _, ids = cands.fuse(1.0, top_k=1)
    assert ids[:, 0].tolist() == [2, 5]         # weight 1 = BM25's first hit


def test_randomization_test_matches_exact_enumeration():
    a = np.array([0.9, 0.7, 0.65, 0.8, 0.3, 0.55, 0.6, 0.9, 0.2, 0.75])
    b = np.array([0.6, 0.7, 0.5, 0.6, 0.35, 0.4, 0.5, 0.85, 0.1, 0.5])
    diff = a - b
    flips = np.array(list(itertools.product([-1, 1], repeat=len(diff))))
    exact = np.mean(np.abs((flips * diff).mean(axis=1)) >= abs(diff.mean()) - 1e-12)
    assert paired_randomization_test(a, b, resamples=20000) == pytest.approx(exact, abs=0.01)
    assert paired_randomization_test(a, a) == 1.0
    lo, hi = bootstrap_interval(diff)
    assert lo < diff.mean() < hi and lo > 0     # every query but one or two gains: the interval excludes 0
    c = compare("a", dict(enumerate(a)), "b", dict(enumerate(b)))
    assert c.queries == 10 and c.delta == pytest.approx(diff.mean()) and c.p_value < 0.05


def test_weight_choice_is_the_argmax_with_ties_to_dense():
    base = np.resize([0.5, 0.9, 0.7], 60)
    curve = {0.0: base - 0.1, 0.3: base, 0.4: base.copy(), 0.7: base - 0.02, 1.0: base - 0.05}
    choice = choose_weight(curve)
    assert choice.weight == 0.3 and choice.pseudo_queries == 60      # 0.3 and 0.4 tie: the more dense one
    assert choice.loss_to_best["0"] == pytest.approx(0.1) and choice.standard_error["0"] == pytest.approx(0.0)
    curve[0.7] = base + 0.001
    assert choose_weight(curve).weight == 0.7


def test_round_trip_keeps_only_pseudo_queries_the_dense_retriever_can_find():
    """Pseudo-query p2's source is the document farthest from it in the dense space: dropped before scoring."""
    doc_emb = np.eye(4, dtype=np.float32)
    query_emb = np.array([[1, 0.1, 0, 0], [0, 0, 0.1, 1], [0, 1, 0, 0]], dtype=np.float32)
    corpus = [{"text": t} for t in ("alpha beta", "gamma delta", "epsilon zeta", "eta theta")]
    pseudo = PseudoQueries(["p1", "p2", "p3"], ["alpha", "epsilon", "gamma"], ["0", "0", "1"])
    assert round_trip_mask(query_emb, doc_emb, pseudo, ["0", "1", "2", "3"], depth=2).tolist() == [True, False, True]
    choice = choose_hybrid_weight(query_emb, doc_emb, BM25Index.build(corpus), pseudo, ["0", "1", "2", "3"],
                                  round_trip_depth=2)
    assert choice.pseudo_queries == 2 and choice.pseudo_queries_total == 3 and "top 2" in choice.rule
    assert choice.ndcg_at_10["0"] == pytest.approx(1.0) and choice.weight == 0.0


def test_pseudo_queries_skip_sources_outside_the_corpus(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"id": "p1", "query": "x y", "doc_id": "d1"},
                                                           {"id": "p2", "query": "z w", "doc_id": "gone"}]))
    pseudo = PseudoQueries.load([path], {"d1", "d2"})
    assert pseudo.ids == ["p1"] and pseudo.qrels == {"p1": {"d1": 1}}


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="needs ../shared/data/scifact")
def test_bm25_on_the_full_scifact_test_split(tmp_path):
    """The README's BM25 row: no neural model is loaded, and the score is BEIR's BM25 baseline."""
    out = tmp_path / "bm25.json"
    proc = run_module("evaluation.evaluate", "--dataset", str(SCIFACT), "--method", "bm25", "--output", str(out),
                      "--embedding_cache", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["metrics"]["ndcg@10"] == pytest.approx(0.6791, abs=0.0005)
    assert report["run"]["queries_evaluated"] == 300 and report["run"]["retriever"] is None
    assert report["run"]["bm25"]["k1"] == 1.2 and len(report["per_query_ndcg@10"]["bm25"]) == 300


@pytest.mark.slow
@pytest.mark.skipif(not SCIFACT.is_dir(), reason="needs ../shared/data/scifact")
def test_hybrid_default_on_the_full_scifact_test_split(tmp_path):
    out = tmp_path / "hybrid.json"
    proc = run_module("evaluation.evaluate", "--dataset", str(SCIFACT), "--retriever", MINILM,
                      "--methods", "raw,hybrid", "--output", str(out), timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    methods = json.loads(out.read_text())["methods"]
    assert methods["raw"]["ndcg@10"] == pytest.approx(0.6451, abs=0.0005)
    assert methods["hybrid"]["ndcg@10"] >= 0.70


def test_evaluate_hybrid_endpoints_are_raw_and_bm25_and_label_free_cli(tiny_beir, tmp_path):
    """Through the CLI: hybrid at weight 0 scores exactly as raw, at 1 exactly as bm25 (per query); the
    label-free CLI chooses on pseudo-queries and prints the judged row beside them."""
    cache = str(tmp_path / "cache")
    reports = {}
    for w in ("0", "1"):
        out = tmp_path / f"h{w}.json"
        proc = run_module("evaluation.evaluate", "--dataset", str(tiny_beir), "--methods", "raw,bm25,hybrid",
                          "--fusion_weight", w, "--embedding_cache", cache, "--output", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
        reports[w] = json.loads(out.read_text())
    assert reports["0"]["per_query_ndcg@10"]["hybrid"] == reports["0"]["per_query_ndcg@10"]["raw"]
    assert reports["1"]["per_query_ndcg@10"]["hybrid"] == reports["1"]["per_query_ndcg@10"]["bm25"]
    assert reports["1"]["run"]["hybrid"] == {"fusion": "minmax", "weight": 1.0, "depth": 100}
    pseudo = tmp_path / "pseudo.jsonl"
    pseudo.write_text("".join(json.dumps({"id": f"p{i}", "query": q, "doc_id": d}) + "\n" for i, (q, d) in enumerate(
        [("sunlight glucose chloroplasts", "d1"), ("magma lava eruption", "d2"), ("pancreas hormone", "d3"),
         ("e4 c5 opening", "d4"), ("fast air currents", "d5"), ("yeast dough", "d6")])))
    out = tmp_path / "lf.json"
    proc = run_module("evaluation.label_free", "--dataset", str(tiny_beir), "--pseudo_queries", str(pseudo),
                      "--judge_split", "test", "--embedding_cache", cache, "--round_trip_depth", "3",
                      "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["choice"]["pseudo_queries_total"] == 6 and len(result["choice"]["ndcg_at_10"]) == 11
    assert result["judged"]["split"] == "test" and "| test qrels |" in proc.stdout
    bad = run_module("evaluation.evaluate", "--dataset", str(tiny_beir), "--method", "hybrid", "--fusion", "max")
    assert bad.returncode == 2 and "fusion" in bad.stderr and "Traceback" not in bad.stderr


def test_every_hybrid_pools_the_same_depth(minilm):
    """Min-max fusion depends on the pool, so evaluation, the label-free choice, the hybrid teacher and
    ``Reinforced_IR_Model.search`` must pool alike, or the figure measured is not the system a user runs."""
    from data_generation.generate_retriever_distill_data import DistillDataArguments
    import dataclasses

    from evaluation.evaluate import EvaluateArguments
    from inference import Reinforced_IR_Model
    from inference.hybrid import DEFAULT_HYBRID_DEPTH, pool_depth

    defaults = [f.default for cls in (EvaluateArguments, DistillDataArguments) for f in dataclasses.fields(cls)
                if f.name == "hybrid_depth"]
    assert defaults == [DEFAULT_HYBRID_DEPTH] * 2
    assert pool_depth(10) == DEFAULT_HYBRID_DEPTH and pool_depth(DEFAULT_HYBRID_DEPTH + 7) == DEFAULT_HYBRID_DEPTH + 7
    rng = np.random.default_rng(0)   # more documents than the pool, all sharing words, so the depth matters
    vocab = [f"w{i}" for i in range(40)]
    corpus = [" ".join(rng.choice(vocab, size=12)) for _ in range(3 * DEFAULT_HYBRID_DEPTH)]
    doc_emb = rng.normal(size=(len(corpus), 384)).astype(np.float32)
    queries = [" ".join(rng.choice(vocab, size=4)) for _ in range(5)]
    model = Reinforced_IR_Model("sentence-transformers/all-MiniLM-L6-v2", retriever=minilm)
    searched = model.search(queries, corpus, top_k=20, corpus_embeddings=doc_emb, bm25_weight=0.5)
    pooled = HybridCandidates.gather(model.encode_queries(queries), doc_emb, BM25Index.build(corpus), queries)
    _, ids = pooled.fuse(0.5, top_k=20)
    assert [[i for i, _ in row] for row in searched] == ids.tolist()
    _, deeper = HybridCandidates.gather(model.encode_queries(queries), doc_emb, BM25Index.build(corpus), queries,
                                        depth=3 * DEFAULT_HYBRID_DEPTH).fuse(0.5, top_k=20)
    assert deeper.tolist() != ids.tolist()   # the check above could fail: another depth ranks otherwise
