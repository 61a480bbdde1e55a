"""The evaluation CLI end to end on a tiny dataset, and Reinforced_IR_Model with the bundled models."""
import json

import numpy as np
import pytest

from inference import Reinforced_IR_Model
from inference.prompts import augmentation_prefix, generator_prompt, get_task

from conftest import MINILM, SMOLLM2, SCIFACT, run_module


def test_raw_method_end_to_end(tiny_beir, tmp_path):
    out = tmp_path / "res.json"
    proc = run_module("evaluation.evaluate", "--retriever", MINILM, "--dataset", str(tiny_beir), "--split", "test",
                      "--method", "raw", "--output", str(out), "--embedding_cache", str(tmp_path / "emb"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["metrics"]["ndcg@10"] == pytest.approx(1.0)  # each query's answer is unmistakable
    assert set(report["metrics"]) >= {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "ndcg@100", "recall@10",
                                      "recall@100", "recall@1000", "map@100", "mrr@10"}
    assert report["run"]["queries_evaluated"] == 3 and report["run"]["documents"] == 6
    assert report["run"]["retriever"]["pooling"] == "mean"
    assert "| raw | 1.0000 |" in proc.stdout
    # The second run reads the corpus embeddings from the cache.
    assert len(list((tmp_path / "emb").glob("*.npy"))) == 1
    proc = run_module("evaluation.evaluate", "--retriever", MINILM, "--dataset", str(tiny_beir), "--method", "raw",
                      "--embedding_cache", str(tmp_path / "emb"))
    assert proc.returncode == 0 and "loaded from cache" in proc.stderr


def test_generative_methods_on_the_same_queries(tiny_beir, tmp_path):
    out = tmp_path / "gen.json"
    proc = run_module("evaluation.evaluate", "--dataset", str(tiny_beir), "--task", "scifact",
                      "--methods", "raw,hyde,query2doc,reinforced_ir", "--generator", SMOLLM2,
                      "--generator_backend", "hf", "--max_new_tokens", "24", "--max_queries", "2",
                      "--embedding_cache", "none", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report["methods"]) == {"raw", "hyde", "query2doc", "reinforced_ir"}
    assert report["run"]["queries_evaluated"] == 2
    assert report["run"]["generator"]["backend"] == "hf"
    rows = [json.loads(line) for line in out.with_suffix(".generations.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"hyde", "query2doc", "reinforced_ir"} and len(rows) == 6
    for line in ("| hyde |", "| query2doc |", "| reinforced_ir |"):
        assert line in proc.stdout


def test_reinforced_ir_model_fuses_query_and_augmentation(minilm, smollm2):
    model = Reinforced_IR_Model(MINILM, generator_model_name_or_path=SMOLLM2, retriever=minilm, generator=smollm2,
                                max_tokens=16)
    task = get_task("scifact")
    queries = ["Insulin lowers blood glucose.", "Volcanoes erupt lava."]
    answers = model.generate_augmentations(queries, task.task_instruction, task.answer_type)
    fused = model.encode_queries(queries, task=task.name)
    expected = 0.8 * minilm.encode_queries(queries) + 0.2 * minilm.encode_corpus(
        [augmentation_prefix() + a for a in answers])
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    # The prompt is P, and greedy generation makes the two calls agree.
    assert smollm2.generate([generator_prompt(queries[0], task.task_instruction, task.answer_type)],
                            max_new_tokens=16)[0][0] == answers[0]
    hits = model.search(queries, {"a": "Insulin is a hormone that lowers blood sugar.",
                                  "b": "Lava flows from erupting volcanoes."}, top_k=2, task="scifact")
    assert [h[0][0] for h in hits] == ["a", "b"]
    # The reference's positional order (task_instruction, answer_type, queries) gives the same vectors.
    reference_order = model.encode_queries(task.task_instruction, task.answer_type, queries)
    np.testing.assert_allclose(reference_order, fused, atol=1e-5)


def test_reinforced_ir_model_without_generator_is_the_plain_retriever(minilm):
    model = Reinforced_IR_Model(MINILM, retriever=minilm)
    q = ["what lowers blood sugar"]
    np.testing.assert_allclose(model.encode_queries(q), minilm.encode_queries(q))
    # A string is one query (one vector, as in sentence-transformers), never a list of characters.
    one = model.encode_queries(q[0])
    assert one.shape == (minilm.dim,)
    np.testing.assert_allclose(one, minilm.encode_queries(q)[0], atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not SCIFACT.is_dir(), reason="needs ../shared/data/scifact")
def test_minilm_reproduces_the_published_scifact_figure(tmp_path):
    out = tmp_path / "scifact.json"
    proc = run_module("evaluation.evaluate", "--retriever", MINILM, "--dataset", str(SCIFACT), "--split", "test",
                      "--method", "raw", "--output", str(out), timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["metrics"]["ndcg@10"] == pytest.approx(0.6451, abs=0.002)


def test_one_decoding_setting_for_the_stages_evaluation_and_the_model(tiny_beir, tmp_path):
    """The loops train on generations made with the stages' repetition penalty; evaluation and
    Reinforced_IR_Model decode with the same one unless told otherwise (they used to load at 1.0)."""
    from data_generation.stage import GeneratorArguments

    stage_default = GeneratorArguments().repetition_penalty
    model = Reinforced_IR_Model(MINILM, generator_model_name_or_path=SMOLLM2, generator_backend="hf")
    assert model.generator.describe()["repetition_penalty"] == stage_default
    out = tmp_path / "gen.json"
    proc = run_module("evaluation.evaluate", "--dataset", str(tiny_beir), "--task", "scifact", "--method", "hyde",
                      "--generator", SMOLLM2, "--generator_backend", "hf", "--max_new_tokens", "8",
                      "--max_queries", "1", "--embedding_cache", "none", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())["run"]["generator"]["repetition_penalty"] == stage_default


def test_round_evaluation_loads_the_base_retriever_once_for_heldout_signal_and_weight_choice(tiny_beir, tmp_path,
                                                                                             monkeypatch):
    """The held-out pseudo-query signal and the label-free weight choice share one base embedder."""
    import inference
    from conftest import TINY_QUERIES, write_jsonl
    from scripts.evaluate_round import RoundEvaluation, RoundEvaluationArguments

    loads = []

    class CountingEmbedder(inference.Embedder):
        def __init__(self, name, **kwargs):
            loads.append(name)
            super().__init__(name, **kwargs)

    monkeypatch.setattr(inference, "Embedder", CountingEmbedder)
    rows = [{"id": f"p{i}", "query": q["text"], "doc_id": d} for i, (q, d) in
            enumerate(zip(TINY_QUERIES, ("d1", "d3", "d6")))]
    write_jsonl(tmp_path / "queries.jsonl", rows[:2])
    write_jsonl(tmp_path / "heldout.jsonl", rows[2:])
    ev = RoundEvaluation(RoundEvaluationArguments(
        dataset=str(tiny_beir), output_dir=str(tmp_path / "eval"), base_retriever=MINILM,
        round_retriever=MINILM,
        round_generator=SMOLLM2, heldout_path=str(tmp_path / "heldout.jsonl"),
        embedding_cache=str(tmp_path / "emb")))
    ev.heldout()
    choice = ev.choose()
    assert ev.results["heldout"] == {"base_raw": 1.0, "round_raw": 1.0}
    assert choice["retriever"] == "round" and 0.0 <= choice["weight"] <= 1.0
    assert loads == [MINILM, MINILM]   # base once, round once (was: base twice)
