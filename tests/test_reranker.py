"""Cross-encoder reranker: trained a few steps under real torchrun (2 processes) from the bundled MiniLM, saved,
reloaded, scoring; the rerank of a first-stage run; ``evaluation.evaluate --rerank`` reporting both stages."""
import json
import os
import subprocess

import numpy as np
import pytest

from conftest import REPO
from inference.reranker import rerank_run
from scripts.steps import torchrun_command
from test_retriever_training import write_rows

COMMON = ["--use_cpu", "true", "--seed", "3", "--warmup_steps", "0", "--save_steps", "100", "--logging_steps", "1"]


def torchrun_rerank(*args: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m finetune.rerank ARGS`` (real processes, gloo), asserted to succeed."""
    cmd = torchrun_command(2, "finetune.rerank", [*COMMON, *args])
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_torchrun_train_save_reload_and_score(tmp_path, tiny_beir):
    data = write_rows(tmp_path / "train.jsonl", n=12)
    out = tmp_path / "reranker"
    proc = torchrun_rerank("--reranker", "sentence-transformers/all-MiniLM-L6-v2",
                           "--train_data", str(data), "--output_dir", str(out), "--per_device_train_batch_size", "2",
                           "--train_group_size", "4", "--max_length", "64", "--learning_rate", "1e-4",
                           "--max_steps", "8")
    assert "trained 8 steps" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["stage"] == "train_reranker" and manifest["replica_drift"] == 0.0
    state = json.loads(sorted(out.glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3])

    from inference.reranker import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(out), max_length=64, show_progress=False)
    scores = reranker.score("why does bread rise", ["Bread baking Yeast ferments sugars in dough, producing carbon "
                                                    "dioxide that makes bread rise.",
                                                    "Chess openings The Sicilian Defence begins with e4 c5."])
    assert scores.shape == (2,) and scores[0] > scores[1]

    # The evaluation harness reports both stages for each method (its CLI main, in this process).
    from evaluation.evaluate import main as evaluate_main

    assert evaluate_main(["--dataset", str(tiny_beir), "--method", "raw", "--reranker", str(out), "--rerank_top_k",
                          "4", "--embedding_cache", "none",
                          "--output", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["methods"]) == {"raw", "raw+rerank"} and report["run"]["reranker"]["top_k"] == 4
    assert report["run"]["reranker"]["kind"] == "cross-encoder"
    assert report["run"]["reranker"]["max_length"] == 64  # the length it was trained with, from its folder


class _LengthScorer:
    """Scores a pair by passage length: a deterministic stand-in to check the bookkeeping of ``rerank_run``."""

    def score_pairs(self, pairs):
        return np.array([len(p) for _, p in pairs], dtype=np.float32)


def test_rerank_run_reorders_top_k_and_keeps_the_rest_below():
    corpus = {"a": {"title": "", "text": "x"}, "b": {"title": "", "text": "xxx"}, "c": {"title": "", "text": "xx"},
              "d": {"title": "", "text": "xxxxxxxx"}}
    run = {"q": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}}
    out = rerank_run(run, {"q": "query"}, corpus, _LengthScorer(), top_k=3)
    order = [d for d, _ in sorted(out["q"].items(), key=lambda kv: -kv[1])]
    assert order == ["b", "c", "a", "d"]  # top 3 by the reranker; d (beyond top_k) stays last despite its length


def test_rerank_run_with_a_weight_fuses_the_reranker_with_the_first_stage():
    corpus = {"a": {"title": "", "text": "x"}, "b": {"title": "", "text": "xxx"}, "c": {"title": "", "text": "xx"},
              "d": {"title": "", "text": "xxxxxxxx"}}
    run = {"q": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}}
    order = lambda out: [d for d, _ in sorted(out["q"].items(), key=lambda kv: -kv[1])]  # noqa: E731
    # min-max over the top 3: first stage a 1, b 0.5, c 0; reranker (length) a 0, b 1, c 0.5
    assert order(rerank_run(run, {"q": "query"}, corpus, _LengthScorer(), top_k=3, weight=0.3)) == ["a", "b", "c", "d"]
    assert order(rerank_run(run, {"q": "query"}, corpus, _LengthScorer(), top_k=3, weight=0.7)) == ["b", "c", "a", "d"]
    fused = rerank_run(run, {"q": "query"}, corpus, _LengthScorer(), top_k=3, weight=0.3)["q"]
    assert fused["a"] == 0.7 and abs(fused["b"] - 0.65) < 1e-12 and fused["d"] < fused["c"]


def test_query_likelihood_reranker_scores_the_query_as_the_generators_reply(tiny_beir, tmp_path):
    from inference.prompts import get_task, query_likelihood_prompt
    from inference.reranker import load_reranker

    task = get_task("scifact")
    reranker = load_reranker("HuggingFaceTB/SmolLM2-135M-Instruct", "query_likelihood", task=task, batch_size=2)
    claim = "Yeast makes bread dough rise by producing carbon dioxide."
    passages = ["Bread baking. Yeast ferments the sugars in dough, producing carbon dioxide that makes bread rise.",
                "Chess openings. The Sicilian Defence begins with the moves e4 c5."]
    scores = reranker.score(claim, passages)
    assert scores[0] > scores[1]
    prompts = [query_likelihood_prompt(p, task) for p in passages]  # the task's claim prompt, RLGF's scoring
    assert "scientific claim that this document supports" in prompts[0]
    np.testing.assert_allclose(scores, reranker.generator.continuation_logprobs(prompts, [claim] * 2), rtol=1e-6)

    from evaluation.evaluate import main as evaluate_main

    assert evaluate_main(["--dataset", str(tiny_beir), "--methods", "bm25", "--reranker",
                          "HuggingFaceTB/SmolLM2-135M-Instruct", "--rerank_type", "query_likelihood",
                          "--rerank_top_k", "2", "--rerank_weight", "0.3,1", "--embedding_cache", "none",
                          "--output", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["methods"]) == {"bm25", "bm25+rerank@0.3", "bm25+rerank@1"}  # one scoring pass, two fusions
    for c in report["rerank_comparisons"]:  # each fusion paired against the run it reranked
        assert c["b"] == "bm25" and c["queries"] == len(report["per_query_ndcg@10"]["bm25"])
        assert c["delta"] == pytest.approx(report["methods"][c["a"]]["ndcg@10"] - report["methods"]["bm25"]["ndcg@10"])
    assert [c["a"] for c in report["rerank_comparisons"]] == ["bm25+rerank@0.3", "bm25+rerank@1"]
    assert {k: report["run"]["reranker"][k] for k in ("kind", "weights", "max_length")} == {
        "kind": "query_likelihood", "weights": [0.3, 1.0], "max_length": 192}



def test_query_likelihood_dtype_auto_is_bf16_only_where_native_and_keeps_the_order():
    from inference.errors import UserError
    from inference.generators.base import native_bf16
    from inference.reranker import load_reranker

    claim = "Yeast makes bread dough rise by producing carbon dioxide."
    passages = ["Bread baking. Yeast ferments the sugars in dough, producing carbon dioxide that makes bread rise.",
                "Sourdough. Wild yeast and lactic bacteria leaven the dough over many hours.",
                "Chess openings. The Sicilian Defence begins with the moves e4 c5."]
    scores = {}
    for dtype in ("auto", "fp32", "bf16"):
        reranker = load_reranker("HuggingFaceTB/SmolLM2-135M-Instruct", "query_likelihood", dtype=dtype, batch_size=3,
                                 show_progress=False)
        assert reranker.describe()["dtype"] == ("bf16" if dtype == "auto" and native_bf16() else dtype)
        scores[dtype] = reranker.score(claim, passages)
    # bf16 moves a mean log-probability by hundredths of a nat, not the ranking
    np.testing.assert_allclose(scores["bf16"], scores["fp32"], atol=0.15)
    assert list(np.argsort(scores["bf16"])) == list(np.argsort(scores["fp32"]))
    with pytest.raises(UserError, match="rerank_dtype"):
        load_reranker("HuggingFaceTB/SmolLM2-135M-Instruct", "query_likelihood", dtype="int4")
    with pytest.raises(UserError, match="only the query_likelihood reranker"):
        load_reranker("sentence-transformers/all-MiniLM-L6-v2", "cross-encoder", dtype="bf16")

def test_rows_from_qrels_hold_out_by_query_and_evaluate_on_them(tiny_beir, tmp_path):
    from data_generation.rows_from_qrels import main as rows_main
    from evaluation.evaluate import main as evaluate_main

    out = tmp_path / "rows"  # the CLIs' main functions, in this process
    assert rows_main(["--dataset", str(tiny_beir), "--split", "test", "--output_dir", str(out),
                      "--negative_ranks", "1,6", "--num_negatives", "2", "--holdout_fraction", "0.34", "--seed", "1",
                      "--embedding_cache", "none"]) == 0
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    heldout = (out / "heldout_query_ids.txt").read_text().split()
    assert len(rows) == 2 and len(heldout) == 1 and heldout[0] not in {r["id"] for r in rows}
    for r in rows:  # negatives are never a judged document of the query
        assert len(r["neg_ids"]) == 2 and not set(r["neg_ids"]) & set(r["pos_ids"])
        # the base retriever's cosines, a teacher for --knowledge_distillation
        assert len(r["pos_scores"]) == len(r["pos"]) and len(r["neg_scores"]) == 2
        assert all(-1.0 <= x <= 1.0 for x in r["pos_scores"] + r["neg_scores"])
    report = tmp_path / "r.json"
    assert evaluate_main(["--dataset", str(tiny_beir), "--query_ids_file", str(out / "heldout_query_ids.txt"),
                          "--embedding_cache", "none", "--output", str(report)]) == 0
    assert json.loads(report.read_text())["run"]["queries_evaluated"] == 1


def test_colbert_zero_shot_and_trained_under_torchrun(tmp_path):
    from inference.reranker import ColBERTReranker, load_reranker

    docs = ["Bread baking Yeast ferments sugars in dough, producing carbon dioxide that makes bread rise.",
            "Chess openings The Sicilian Defence is a chess opening that begins with the moves e4 c5."]
    zero_shot = load_reranker("sentence-transformers/all-MiniLM-L6-v2", "colbert", show_progress=False)
    assert isinstance(zero_shot, ColBERTReranker)
    s = zero_shot.score("why does bread rise", docs)
    assert s[0] > s[1]

    data = write_rows(tmp_path / "train.jsonl", n=12)
    out = tmp_path / "colbert"
    torchrun_rerank("--model_type", "colbert", "--reranker", "sentence-transformers/all-MiniLM-L6-v2",
                    "--train_data", str(data), "--output_dir", str(out), "--per_device_train_batch_size", "2",
                    "--train_group_size", "4", "--max_length", "64", "--query_max_len", "24",
                    "--learning_rate", "1e-4", "--max_steps", "8")
    assert json.loads((out / "reranker_config.json").read_text())["kind"] == "colbert"
    trained = load_reranker(str(out), show_progress=False)  # kind read from the folder
    assert isinstance(trained, ColBERTReranker)
    t = trained.score("why does bread rise", docs)
    assert t[0] > t[1] and not np.allclose(s, t)


def test_llm_reranker_lora_with_distillation_under_torchrun(tmp_path):
    from inference.reranker import LLMReranker, load_reranker

    data = write_rows(tmp_path / "train.jsonl", n=4)  # rows carry RLGF-style teacher scores
    out = tmp_path / "llm"
    proc = torchrun_rerank("--model_type", "llm", "--reranker", "HuggingFaceTB/SmolLM2-135M-Instruct",
                           "--train_data", str(data), "--output_dir", str(out), "--per_device_train_batch_size", "1",
                           "--train_group_size", "3", "--max_length", "160", "--learning_rate", "2e-4",
                           "--max_steps", "3", "--knowledge_distillation", "true",
                           "--task_instruction", "Judge relevance.")
    assert "trained 3 steps" in proc.stdout
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()  # merged
    assert json.loads((out / "manifest.json").read_text())["replica_drift"] == 0.0  # LoRA replicas in sync too
    reranker = load_reranker(str(out), show_progress=False)
    assert isinstance(reranker, LLMReranker)
    scores = reranker.score("why does bread rise", ["Yeast makes dough rise.", "Lava escapes from volcanoes."])
    assert scores.shape == (2,) and np.isfinite(scores).all()
