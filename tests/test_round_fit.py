"""A round finishes on any corpus: a training step is sized down to the rows filtering left, or skipped with its
input model carried forward, and the round still ends with its report and label-free choice."""
import json
from pathlib import Path

import pytest
import yaml

from conftest import SCIFACT, run_module
from inference.manifest import write_manifest
from scripts.fit import fit_step, input_rows, output_model, skip_step


def test_a_step_runs_is_sized_down_or_skipped_by_the_rows_it_will_have():
    assert fit_step("train_retriever", None, {"per_device_train_batch_size": 8}, 2).action == "run"  # not known yet
    assert fit_step("train_retriever", 16, {"per_device_train_batch_size": 8}, 2).action == "run"
    resized = fit_step("train_retriever", 15, {"per_device_train_batch_size": 8}, 2)
    assert resized.action == "resized" and resized.options == {"per_device_train_batch_size": 7}
    assert "15 training rows cannot fill a global batch of 16" in resized.reason
    assert fit_step("train_retriever", 1, {"per_device_train_batch_size": 8}, 2).action == "skipped"
    assert fit_step("train_generator", 3, {}, 1).options == {"per_device_train_batch_size": 3}  # default batch 4
    assert fit_step("train_generator", 0, {}, 1).action == "skipped"


def test_rows_come_from_the_input_stages_manifest(tmp_path):
    dirs = {name: tmp_path / name for name in ("generator_data", "retriever_data", "distill")}
    assert input_rows("train_generator", dirs, False) is None
    write_manifest(dirs["retriever_data"], "retriever_data", "complete", counts={"kept": 15})
    write_manifest(dirs["distill"], "distill", "complete", counts={"kept": 12})
    assert input_rows("train_retriever", dirs, distilling=False) == 15
    assert input_rows("train_retriever", dirs, distilling=True) == 12


def test_a_skipped_step_hands_its_input_model_on(tmp_path):
    out = tmp_path / "generator"
    assert output_model(out, str(out / "merged_model")) == str(out / "merged_model")
    skip_step(out, "train_generator", fit_step("train_generator", 0, {}, 1), "HuggingFaceTB/SmolLM2-135M-Instruct",
              {"generator": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    assert output_model(out, str(out / "merged_model")) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and "0 training row(s)" in manifest["skipped"]


# A slice built so that filtering leaves almost nothing: twelve near-identical short entity descriptions (the
# dense top 1 rarely holds a pseudo-query's own source) beside the judged documents.
ENTITY = "{name} is a small village in the district of Nordmark, in the region of Westvale."


@pytest.fixture(scope="module")
def filtered_away_slice(tmp_path_factory) -> Path:
    if not SCIFACT.is_dir():
        pytest.skip("needs ../shared/data/scifact")
    root = tmp_path_factory.mktemp("entities")
    docs = [{"_id": f"e{i}", "title": f"Village {i}", "text": ENTITY.format(name=f"Village {i}")} for i in range(12)]
    qrels = [line.split("\t") for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:4]]
    judged = {d: json.loads(line) for line in open(SCIFACT / "corpus.jsonl")
              for d in [json.loads(line)["_id"]] if d in {r[1] for r in qrels}}
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in [*docs, *judged.values()]))
    qids = {r[0] for r in qrels}
    (root / "queries.jsonl").write_text("".join(line for line in open(SCIFACT / "queries.jsonl")
                                                if json.loads(line)["_id"] in qids))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


def test_a_round_on_a_corpus_whose_pseudo_queries_are_filtered_away_ends_with_its_report(filtered_away_slice,
                                                                                            tmp_path):
    profile = {
        "name": "entities", "dataset": str(filtered_away_slice), "runs_dir": str(tmp_path / "runs"),
        "embedding_cache": str(tmp_path / "cache"), "task": "scifact", "rounds": 1, "nproc_per_node": 2,
        "queries": {"train_num": 10, "holdout_fraction": 0.2, "max_passage_tokens": 48, "prompt_style": "simple",
                    "quality_control": False, "max_new_tokens": 16, "chunk_size": 8},
        "generator_data": {"max_queries": 4, "dpo_num": 2, "threshold": 1.0, "use_rule1": False,
                           "max_new_tokens": 12, "chunk_size": 8},
        "train_generator": {"template": "smollm2", "max_steps": 1, "per_device_train_batch_size": 8,
                            "cutoff_len": 128},
        "retriever_data": {"num_negatives": 2, "neg_window": 4, "max_new_tokens": 12, "chunk_size": 8,
                           "filter_data": True, "filter_num": 1},
        "train_retriever": {"train_group_size": 2, "query_max_len": 32, "passage_max_len": 48,
                            "per_device_train_batch_size": 16, "max_steps": 1, "knowledge_distillation": False,
                            "training_type": "retrieval", "temperature": 0.05},
        "evaluate": {"max_queries": 3, "max_new_tokens": 12},
    }
    path = tmp_path / "entities.yaml"
    path.write_text(yaml.safe_dump(profile))
    proc = run_module("scripts.self_boost", "--config", str(path), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "entities"
    report = json.loads((run_dir / "report.json").read_text())
    fits = {k: v["fit"] for k, v in report["timings"].items() if "fit" in v}
    assert fits and all(f["action"] in ("resized", "skipped") for f in fits.values()), report["timings"]
    assert "round_1/train_retriever" in fits  # 10 pseudo-queries can never fill 2 x 16
    assert report["label_free_choice"]["ndcg@10"] >= 0.0
    md = (run_dir / "report.md").read_text()
    assert "Label-free choice" in md
    for step, fit in fits.items():
        assert fit["reason"] in md, step  # the report says what was sized down or skipped, and why
