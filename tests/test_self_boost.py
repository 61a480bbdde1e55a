"""The self-boost driver for one round on a 30-document SciFact slice (with test qrels), tiny sizes: output
tree, manifests, report, rerun skips finished steps; and round.sh on the same run."""
import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SCIFACT, run_module

pytestmark = pytest.mark.skipif(not SCIFACT.is_dir(), reason="needs ../shared/data/scifact")

TINY = {
    "task": "scifact", "rounds": 1, "nproc_per_node": 2,
    "queries": {"train_num": 8, "holdout_fraction": 0.25, "max_passage_tokens": 64, "prompt_style": "simple",
                "quality_control": False, "max_new_tokens": 24, "chunk_size": 4},
    "generator_data": {"dpo_num": 2, "threshold": 1.0, "use_rule1": False, "max_new_tokens": 16, "chunk_size": 4},
    "train_generator": {"template": "smollm2", "max_steps": 2, "per_device_train_batch_size": 2, "cutoff_len": 256},
    "retriever_data": {"num_negatives": 4, "neg_window": 8, "max_new_tokens": 16, "chunk_size": 4,
                       "filter_data": True, "filter_num": 3},
    "distill": {"max_candidates": 4, "passage_max_tokens": 32, "teacher_scoring": "query_likelihood", "chunk_size": 4},
    "train_retriever": {"train_group_size": 3, "query_max_len": 32, "passage_max_len": 64,
                        "per_device_train_batch_size": 2, "max_steps": 2, "knowledge_distillation": True,
                        "negatives_cross_device": True, "training_type": "retrieval_answer", "logging_steps": 1,
                        "temperature": 0.05},
    "evaluate": {"max_queries": 4, "max_new_tokens": 16},
}


@pytest.fixture(scope="module")
def slice_with_qrels(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scifact_qrels")
    (root / "qrels").mkdir()
    with open(SCIFACT / "qrels" / "test.tsv") as fh:
        qrels = list(csv.DictReader(fh, delimiter="\t"))[:12]
    needed = {r["corpus-id"] for r in qrels}
    docs = [json.loads(line) for line in open(SCIFACT / "corpus.jsonl")]
    chosen = [d for d in docs if d["_id"] in needed]
    chosen += [d for d in docs if d["_id"] not in needed][:30 - len(chosen)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chosen))
    qids = {r["query-id"] for r in qrels}
    (root / "queries.jsonl").write_text("".join(line for line in open(SCIFACT / "queries.jsonl")
                                                if json.loads(line)["_id"] in qids))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{r['query-id']}\t{r['corpus-id']}\t{r['score']}\n" for r in qrels))
    return root


@pytest.fixture(scope="module")
def run(slice_with_qrels, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    config_dir = root / "configs" / "tiny-profile"
    config_dir.mkdir(parents=True)
    config = {"name": "tiny", "dataset": str(slice_with_qrels), "runs_dir": str(root / "runs"),
              "embedding_cache": str(root / "cache"), **TINY}
    path = config_dir / "scifact.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = run_module("scripts.self_boost", "--config", str(path), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"root": root, "config": path, "run_dir": root / "runs" / "tiny", "stdout": proc.stdout}


def test_output_tree_and_manifests(run):
    r1 = run["run_dir"] / "round_1"
    for sub in ("synthetic/queries", "synthetic/generator_data", "synthetic/retriever_data", "synthetic/distill",
                "generator", "retriever", "eval"):
        manifest = json.loads((r1 / sub / "manifest.json").read_text())
        assert manifest["status"] == "complete", sub
    assert (r1 / "generator" / "merged_model" / "model.safetensors").is_file()
    assert (r1 / "retriever" / "modules.json").is_file()
    assert (r1 / "synthetic" / "queries" / "heldout.jsonl").read_text().strip()
    for step in ("queries", "generator_data", "train_generator", "retriever_data", "distill", "train_retriever",
                 "evaluate"):
        assert (r1 / "configs" / f"{step}.yaml").is_file()
    # each step was a visible command line
    assert "+ " in run["stdout"] and "-m finetune.retriever.train" in run["stdout"] and "torchrun" in run["stdout"]


def test_generator_step_dpo_lora_merge_and_generate(run):
    """Stage C through the real llamafactory-cli: DPO + LoRA settings, export/merge, base tokenizer and chat
    template kept, the merged model generates, and a rerun of the finished stage is a no-op."""
    out = run["run_dir"] / "round_1" / "generator"
    train_cfg = (out / "llamafactory_train.yaml").read_text()
    for line in ("stage: dpo", "finetuning_type: lora", "lora_rank: 32", "lora_alpha: 64", "pref_beta: 0.1",
                 "pref_loss: sigmoid", "lr_scheduler_type: cosine", "bf16: false", "val_size: 0.0",
                 "template: smollm2"):
        assert line in train_cfg
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["models"]["template"] == "smollm2"
    from transformers import AutoTokenizer

    from inference import load_generator

    merged = out / "merged_model"
    tok = AutoTokenizer.from_pretrained(merged)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    text = load_generator(str(merged), backend="hf", show_progress=False).generate(["Name a primary colour."],
                                                                                     max_new_tokens=12)
    assert text[0][0].strip()
    again = run_module("finetune.generator.train", "--config",
                       str(run["run_dir"] / "round_1" / "configs" / "train_generator.yaml"), timeout=300)
    assert again.returncode == 0 and "already complete" in again.stderr


def test_report(run):
    report = json.loads((run["run_dir"] / "report.json").read_text())
    for key in ("before", "after", "hyde", "query2doc"):
        assert 0.0 <= report[key]["ndcg@10"] <= 1.0
    assert report["query_set"]["queries"] == 4 and report["query_set"]["split"] == "test"
    assert set(report["timings"]) >= {f"round_1/{s}" for s in ("queries", "train_generator", "train_retriever",
                                                                "evaluate")}
    assert report["sizes"]["round_1"]["queries"]["heldout"] >= 1
    distill = json.loads((run["run_dir"] / "round_1" / "synthetic" / "distill" / "manifest.json").read_text())
    teacher = report["sizes"]["round_1"]["distill"]                     # the RLGF teacher's outcomes reach the report
    assert teacher["teacher_scoring"] == "query_likelihood"
    assert teacher["rankings"] == {"scored": distill["counts"]["items"]}
    assert report["heldout_pseudo_queries"]["round_1"] is not None
    synthetic = run["run_dir"] / "round_1" / "synthetic"
    for stage, folder, output in [("queries", "queries", "queries.jsonl"),
                                  ("retriever_data", "retriever_data", "train.jsonl")]:
        sizes, m = report["sizes"]["round_1"][stage], json.loads((synthetic / folder / "manifest.json").read_text())
        assert sizes["kept_share"] == round((m["counts"]["kept"] + m.get("heldout", {}).get("rows", 0))
                                            / m["counts"]["items"], 4)
        kept = {json.loads(line)["query"] for line in (synthetic / folder / output).read_text().splitlines()}
        assert sizes["samples"]["kept"] and set(sizes["samples"]["kept"]) <= kept
        dropped = [json.loads(line) for line in (synthetic / folder / "dropped.jsonl").read_text().splitlines()]
        for reason, sample in sizes["samples"]["dropped"].items():
            assert sample and set(sample) <= {d["query"] for d in dropped if d["reason"] == reason}
    md = (run["run_dir"] / "report.md").read_text()
    assert "**after**" in md and "HyDE" in md and "## Timings" in md and "Pseudo-queries kept and dropped" in md
    assert "with statistics" in md and "Label-free choice" in md


def test_report_full_split_rows_match_the_rounds_own_files(run, slice_with_qrels):
    """BM25, hybrid and the label-free choice in report.json are the figures of the round's evaluation files,
    and every comparison's mean is the mean of the per-query values it was tested on."""
    report = json.loads((run["run_dir"] / "report.json").read_text())
    ev = run["run_dir"] / "round_1" / "eval"
    base_full = json.loads((ev / "base_full.json").read_text())
    round_full = json.loads((ev / "round_full.json").read_text())
    judged = {line.split("\t")[0] for line in (slice_with_qrels / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    n = len(judged)
    assert base_full["run"]["queries_evaluated"] == n and base_full["run"]["query_subset"] is None
    assert report["bm25"]["ndcg@10"] == base_full["methods"]["bm25"]["ndcg@10"]
    assert report["hybrid"]["base"]["ndcg@10"] == base_full["methods"]["hybrid"]["ndcg@10"]
    assert report["hybrid"]["round"]["ndcg@10"] == round_full["methods"]["hybrid"]["ndcg@10"]
    assert report["full_split"]["before"]["ndcg@10"] == base_full["methods"]["raw"]["ndcg@10"]
    choice = report["label_free_choice"]
    chosen = json.loads((ev / "label_free_full.json").read_text())
    assert choice["ndcg@10"] == chosen["methods"]["hybrid"]["ndcg@10"]
    assert chosen["run"]["hybrid"]["weight"] == choice["weight"] and choice["method"] == "hybrid"
    assert chosen["run"]["retriever"]["model"] == choice["retriever_path"]
    evidence = choice["evidence"]["weight"]
    assert choice["weight"] in [float(w) for w in evidence["ndcg_at_10"]]
    assert evidence["ndcg_at_10"][f"{choice['weight']:g}"] == max(evidence["ndcg_at_10"].values())
    assert 1 <= evidence["pseudo_queries"] <= evidence["pseudo_queries_total"] <= 8
    per_query = json.loads((ev / "results.json").read_text())["per_query_full_ndcg@10"]
    pairs = {(c["a"], c["b"]): c for c in report["comparisons"]}
    assert {("round_raw", "base_raw"), ("bm25", "base_raw"), ("label_free", "base_raw"),
            ("label_free", "base_hybrid")} <= set(pairs)
    for (a, b), c in pairs.items():
        assert c["queries"] == n and 0 < c["p_value"] <= 1
        assert c["mean_a"] == pytest.approx(sum(per_query[a].values()) / n)
        assert c["delta_ci95"][0] <= c["delta"] <= c["delta_ci95"][1]
    assert choice["p_value_vs_base"] == pairs[("label_free", "base_raw")]["p_value"]
    png = (run["run_dir"] / "ndcg_by_round.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_finished_steps_and_round_sh(run):
    proc = run_module("scripts.self_boost", "--config", str(run["config"]), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("complete, skipped") == 7
    # round.sh runs the same round as visible commands; every step finds its work done.
    env = {**os.environ, "RIR_CONFIG_DIR": str(run["root"] / "configs"), "PYTHONUNBUFFERED": "1"}
    sh = subprocess.run(["bash", "scripts/round.sh", "scifact", "1", "tiny-profile"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=900)
    assert sh.returncode == 0, sh.stdout[-2000:] + sh.stderr[-2000:]
    assert sh.stdout.count("+ [") == 7 and "round 1 of scifact (tiny-profile) done" in sh.stdout
    assert sh.stdout.count("complete, skipped: ") == 7  # finished steps are not even started again


def test_a_finished_step_with_other_parameters_or_inputs_is_refused_not_reported(run, tmp_path):
    """Edit the profile after a finished run: the driver names what changed and refuses (the report would show
    the old run otherwise); round.sh's plan says the same. A changed input file is caught by its hash."""
    config = yaml.safe_load(run["config"].read_text())
    config["train_retriever"] = {**config["train_retriever"], "learning_rate": 3.0e-5}
    edited = tmp_path / "scifact.yaml"
    edited.write_text(yaml.safe_dump(config))
    proc = run_module("scripts.self_boost", "--config", str(edited), timeout=600)
    assert proc.returncode == 2 and "step 'train_retriever'" in proc.stderr and "learning_rate" in proc.stderr
    assert "--overwrite true" in proc.stderr and proc.stdout.count("complete, skipped") == 5
    plan = run_module("scripts.self_boost", "--config", str(edited), "--round", "1", "--emit_commands").stdout
    assert "train_retriever\tchanged (learning_rate)\t" in plan
    # an input changed behind the driver's back: the rows the retriever trained on
    rows = run["run_dir"] / "round_1" / "synthetic" / "distill" / "train_distill.jsonl"
    original = rows.read_bytes()
    try:
        rows.write_bytes(original + b"\n")
        plan = run_module("scripts.self_boost", "--config", str(run["config"]), "--round", "1",
                          "--emit_commands").stdout
        assert f"train_retriever\tchanged (input {rows})" in plan
    finally:
        rows.write_bytes(original)
    plan = run_module("scripts.self_boost", "--config", str(run["config"]), "--round", "1", "--emit_commands").stdout
    assert plan.count("\tcomplete\t") == 7      # restored: the original profile's run is complete again


def test_round_sh_names_the_failing_step(run, tmp_path):
    config = yaml.safe_load(run["config"].read_text())
    config["runs_dir"] = str(tmp_path / "runs")
    config["dataset"] = str(tmp_path / "empty-dataset")  # a missing one is refused before any step is planned
    (tmp_path / "empty-dataset").mkdir()
    (tmp_path / "cfg" / "bad").mkdir(parents=True)
    (tmp_path / "cfg" / "bad" / "scifact.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "RIR_CONFIG_DIR": str(tmp_path / "cfg")}
    sh = subprocess.run(["bash", "scripts/round.sh", "scifact", "1", "bad"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
    assert sh.returncode == 1 and "step 'queries' failed" in sh.stderr
    assert "not a dataset folder" in sh.stderr


def test_dev_ablation_retrains_per_variant_on_the_rounds_rows_and_scores_on_train_qrels(run, slice_with_qrels,
                                                                                          tmp_path):
    """experiments.dev_ablation on the finished round: a round-trip variant trains on exactly the mined rows whose
    source ranked in the top k, is scored on train-qrels dev queries with a paired p-value against the base, and a
    rerun reuses finished variants. Test qrels are refused."""
    dev_data = tmp_path / "data"
    shutil.copytree(slice_with_qrels, dev_data)
    shutil.copy(dev_data / "qrels" / "test.tsv", dev_data / "qrels" / "train.tsv")  # stand-in train qrels
    profile = yaml.safe_load(run["config"].read_text())
    profile["dataset"] = str(dev_data)
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    ablation = {"run_config": str(tmp_path / "profile.yaml"), "output_dir": str(tmp_path / "ablation"),
                "max_queries": 6, "corpus_sample": 10,
                "variants": {"base": {"train": False},
                             "round trip k=1": {"round_trip": 1, "train_retriever": {"knowledge_distillation": False}}}}
    (tmp_path / "ablation.yaml").write_text(yaml.safe_dump(ablation, sort_keys=False))
    proc = run_module("experiments.dev_ablation", "--config", str(tmp_path / "ablation.yaml"), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    mined = [json.loads(line) for line in (run["run_dir"] / "round_1" / "synthetic" / "retriever_data" /
                                             "train.jsonl").read_text().splitlines()]
    folder = tmp_path / "ablation" / "variants" / "round_trip_k=1"
    trained_on = [json.loads(line)["id"] for line in (folder / "train.jsonl").read_text().splitlines()]
    assert trained_on == [r["id"] for r in mined if r["pos_rank"] == 0]
    assert json.loads((folder / "retriever" / "manifest.json").read_text())["status"] == "complete"
    results = json.loads((tmp_path / "ablation" / "results.json").read_text())["variants"]
    assert [r["name"] for r in results] == ["base", "round trip k=1"] and results[1]["rows"] == len(trained_on)
    dev = json.loads((folder / "scores.json").read_text())
    assert dev["run"]["split"] == "train" and dev["run"]["queries_evaluated"] == 6
    assert results[1]["ndcg@10"] == dev["methods"]["raw"]["ndcg@10"] and 0 < results[1]["vs_base"]["p_value"] <= 1
    assert "| round trip k=1 |" in (tmp_path / "ablation" / "results.md").read_text()
    again = run_module("experiments.dev_ablation", "--config", str(tmp_path / "ablation.yaml"), timeout=600)
    assert again.returncode == 0 and "evaluation.evaluate" not in again.stdout  # finished variants are reused
    refused = run_module("experiments.dev_ablation", "--config", str(tmp_path / "ablation.yaml"), "--split", "test")
    assert refused.returncode == 2 and "never on test" in refused.stderr


def test_ablation_report_pairs_each_row_with_the_row_above_on_the_full_test_split(run, tmp_path):
    """``purpose: report`` (make demo-full's table): every judged test query on the full corpus; a row that reuses
    a trained retriever is not trained again and is scored by its own method (hybrid; label_free at the round's
    chosen weight; reranked by query likelihood on top of that); each row is paired with the row above, its figures
    are those of its own scores file."""
    from evaluation.stats import compare

    ablation = {"run_config": str(run["config"]), "output_dir": str(tmp_path / "ablation"), "purpose": "report",
                "split": "test", "max_queries": None, "corpus_sample": None,
                "variants": {"base": {"train": False},
                             "trained": {"round_trip": 3, "train_retriever": {"knowledge_distillation": False}},
                             "+ hybrid": {"retriever_of": "trained", "method": "hybrid"},
                             "label-free": {"retriever_of": "trained", "method": "label_free"},
                             "+ QL": {"retriever_of": "trained", "method": "label_free",
                                      "rerank": {"top_k": 2, "weight": 0.3}}}}
    (tmp_path / "ablation.yaml").write_text(yaml.safe_dump(ablation, sort_keys=False))
    proc = run_module("experiments.dev_ablation", "--config", str(tmp_path / "ablation.yaml"), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("-m finetune.retriever.train") == 1          # the reusing rows trained nothing
    variants = tmp_path / "ablation" / "variants"
    scores = {name: json.loads((variants / folder / "scores.json").read_text()) for name, folder in
              (("base", "base"), ("trained", "trained"), ("+ hybrid", "hybrid"), ("label-free", "label-free"),
               ("+ QL", "QL"))}
    assert all(s["run"]["split"] == "test" and s["run"]["documents"] == 30 and s["run"]["query_subset"] is None
               and s["run"]["corpus_sample"] is None for s in scores.values())
    assert len({s["run"]["queries_evaluated"] for s in scores.values()}) == 1
    assert scores["+ hybrid"]["run"]["retriever"] == scores["trained"]["run"]["retriever"]
    weight = json.loads((run["run_dir"] / "report.json").read_text())["label_free_choice"]["weight"]
    assert scores["label-free"]["run"]["arguments"]["fusion_weight"] == weight
    ql = scores["+ QL"]  # the label-free first stage, its top 2 reranked by the base generator's likelihood
    assert ql["run"]["arguments"]["fusion_weight"] == weight and set(ql["methods"]) == {"hybrid", "hybrid+rerank@0.3"}
    assert ql["per_query_ndcg@10"]["hybrid"] == scores["label-free"]["per_query_ndcg@10"]["hybrid"]
    assert {k: ql["run"]["reranker"][k] for k in ("kind", "top_k", "weights")} == {
        "kind": "query_likelihood", "top_k": 2, "weights": [0.3]}
    table = json.loads((tmp_path / "ablation" / "results.json").read_text())["variants"]
    assert table[-1]["method"] == "label_free+rerank@0.3"
    methods = {"base": "raw", "trained": "raw", "+ hybrid": "hybrid", "label-free": "hybrid",
               "+ QL": "hybrid+rerank@0.3"}
    for above, row in zip(table, table[1:]):
        mine, theirs = (scores[r["name"]]["per_query_ndcg@10"][methods[r["name"]]] for r in (row, above))
        assert row["ndcg@10"] == scores[row["name"]]["methods"][methods[row["name"]]]["ndcg@10"]
        assert row["vs_reference"]["name"] == above["name"]
        assert row["vs_reference"]["p_value"] == compare(row["name"], mine, above["name"], theirs).p_value
    assert "vs_reference" not in table[0] and "| + hybrid | " in (tmp_path / "ablation" / "results.md").read_text()


def test_dev_ablation_queries_variant_reruns_the_rounds_query_and_mining_steps_with_n_queries(run, tmp_path):
    """``queries: n`` reruns round 1's own query and retriever-data step configs with only ``train_num`` and the
    paths changed, so the variant differs from the profile in the number of pseudo-queries alone."""
    from inference.config import parse_args
    from experiments.dev_ablation import DevAblationArguments, pseudo_query_rows
    from scripts.self_boost import SelfBoostConfig

    cfg = parse_args(SelfBoostConfig, ["--config", str(run["config"])])
    args = DevAblationArguments(run_config=str(run["config"]), output_dir=str(tmp_path / "ablation"),
                                variants={"more": {"queries": 4}})
    rows = pseudo_query_rows(args, cfg, 4)
    configs = run["run_dir"] / "round_1" / "configs"
    for step, changed in (("queries", {"train_num", "output_dir"}),
                          ("retriever_data", {"queries_path", "output_dir"})):
        round_cfg = yaml.safe_load((configs / f"{step}.yaml").read_text())
        variant_cfg = yaml.safe_load((tmp_path / "ablation" / "queries-4" / f"{step}.yaml").read_text())
        assert {k for k in round_cfg.keys() | variant_cfg.keys() if round_cfg.get(k) != variant_cfg.get(k)} == changed
    manifest = json.loads((tmp_path / "ablation" / "queries-4" / "queries" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["items"] == 4
    mined = [json.loads(line) for line in rows.read_text().splitlines()]
    generated = [json.loads(line)["id"] for line in (rows.parent.parent / "queries" / "queries.jsonl").read_text()
                 .splitlines()]
    assert [r["id"] for r in mined] == [q for q in generated if q in {r["id"] for r in mined}]
    assert all(0 <= r["pos_rank"] < 3 for r in mined)          # the profile's round trip (TINY: filter_num 3)
