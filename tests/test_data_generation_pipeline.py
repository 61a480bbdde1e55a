"""All four stages end to end on a 30-document SciFact slice with the bundled SmolLM2 + MiniLM on CPU, run as a
user runs them (``python -m data_generation.<stage>``); resume after a real SIGKILL; the openai backend."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SCIFACT, run_module, sigkill_once_written

pytestmark = pytest.mark.skipif(not SCIFACT.is_dir(), reason="needs ../shared/data/scifact")

COMMON = ["--generator_backend", "hf", "--chunk_size", "3", "--seed", "7"]
STAGE_ARGS = {
    "generate_queries": ["--train_num", "6", "--max_passage_tokens", "96", "--prompt_style", "simple",
                         "--quality_control", "false", "--max_new_tokens", "32"],
    "generate_generator_data": ["--dpo_num", "3", "--threshold", "1.0", "--use_rule1", "false",
                                "--max_new_tokens", "24"],
    "generate_retriever_data": ["--max_new_tokens", "24", "--num_negatives", "5", "--neg_window", "10"],
    # listwise SmolLM2 rankings often do not parse: the limit is lifted here (its own test below)
    "generate_retriever_distill_data": ["--passage_max_tokens", "48", "--max_candidates", "6",
                                        "--max_new_tokens", "32", "--max_fallback_share", "1.0"],
}


def stage_cmd(stage: str, root: Path, out: Path, slice_dir: Path) -> list[str]:
    io = {
        "generate_queries": ["--dataset", str(slice_dir)],
        "generate_generator_data": ["--queries_path", str(root / "queries" / "queries.jsonl")],
        "generate_retriever_data": ["--queries_path", str(root / "queries" / "queries.jsonl"),
                                    "--dataset", str(slice_dir)],
        "generate_retriever_distill_data": ["--retriever_data_path", str(root / "retriever" / "train.jsonl")],
    }[stage]
    return [*io, "--output_dir", str(out), *COMMON, *STAGE_ARGS[stage]]


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scifact30")
    with open(SCIFACT / "corpus.jsonl") as src:
        lines = [next(src) for _ in range(30)]
    (root / "corpus.jsonl").write_text("".join(lines))
    return root


@pytest.fixture(scope="module")
def pipeline(slice_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    for stage, folder in [("generate_queries", "queries"), ("generate_generator_data", "generator"),
                          ("generate_retriever_data", "retriever"), ("generate_retriever_distill_data", "distill")]:
        proc = run_module(f"data_generation.{stage}", *stage_cmd(stage, root, root / folder, slice_dir))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "rows kept from" in proc.stdout  # the closing summary paragraph
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_outputs_have_the_documented_schemas(pipeline, slice_dir):
    corpus_ids = {json.loads(line)["_id"] for line in (slice_dir / "corpus.jsonl").read_text().splitlines()}
    queries = read_jsonl(pipeline / "queries" / "queries.jsonl")
    assert 1 <= len(queries) <= 6
    for q in queries:
        assert set(q) == {"id", "query", "doc_id", "passage"} and q["doc_id"] in corpus_ids and q["query"].strip()

    pairs = read_jsonl(pipeline / "generator" / "train.jsonl")
    assert pairs
    for p in pairs:
        assert {"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "query", "doc_id"} <= set(p)
        assert p["chosen"] != p["rejected"] and p["chosen_score"] >= p["rejected_score"]
        assert p["prompt"].startswith("Given a retrieval task and a query") and p["query"] in p["prompt"]

    rows = read_jsonl(pipeline / "retriever" / "train.jsonl")
    assert rows
    for r in rows:
        assert {"query", "answer", "pos", "neg", "neg_answer", "pos_ids", "neg_ids", "pos_rank"} <= set(r)
        assert len(r["pos"]) == 1 and 1 <= len(r["neg"]) <= 5 and r["pos_ids"] == [r["doc_id"]]
        assert r["pos_ids"][0] not in r["neg_ids"] and len(r["neg_ids"]) == len(r["neg"])
        assert r["pos"][0] not in r["neg"] and len(set(r["neg_ids"])) == len(r["neg_ids"])

    distill = read_jsonl(pipeline / "distill" / "train_distill.jsonl")
    assert len(distill) == len(rows)
    for d, r in zip(distill, rows):
        assert d["pos"] == r["pos"] and sorted(d["neg"]) == sorted(r["neg"])  # reordered, never rewritten
        scores = d["pos_scores"] + d["neg_scores"]
        assert sorted(scores, reverse=True) == [1 / (k + 1) for k in range(len(scores))]
        assert d["neg_scores"] == sorted(d["neg_scores"], reverse=True)
        assert d["ranking_status"] in {"ok", "partial", "fallback"}
        if d["ranking_status"] == "fallback":  # nothing parsed: the mining order stands, with no reordering
            assert d["neg"] == r["neg"][:len(d["neg"])]
        assert d["ranking"] and sorted(d["ranking"]) == list(range(len(d["ranking"])))
    statuses = [d["ranking_status"] for d in distill]
    notes = json.loads((pipeline / "distill" / "manifest.json").read_text())["counts"]["notes"]
    assert {k: notes.get(f"ranking_{k}", 0) for k in ("ok", "partial", "fallback")} == \
        {k: statuses.count(k) for k in ("ok", "partial", "fallback")}


def test_manifests_record_inputs_models_counts(pipeline):
    for folder, stage in [("queries", "generate_queries"), ("generator", "generate_generator_data"),
                          ("retriever", "generate_retriever_data"), ("distill", "generate_retriever_distill_data")]:
        m = json.loads((pipeline / folder / "manifest.json").read_text())
        assert m["stage"] == stage and m["status"] == "complete" and m["seed"] == 7
        assert m["inputs"] and all(len(v["sha256"]) == 64 for v in m["inputs"].values())
        assert m["models"]["generator"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert {"items", "kept", "dropped", "failed"} <= set(m["counts"]) and m["versions"]["torch"]
        assert m["generation"]["new_tokens"] > 0 and m["wall_seconds"] > 0 and len(m["output"]["sha256"]) == 64
    ranking = json.loads((pipeline / "distill" / "manifest.json").read_text())["counts"]["notes"]
    assert sum(ranking.values()) == json.loads((pipeline / "distill" / "manifest.json").read_text())["counts"]["kept"]


def test_every_dropped_item_is_listed_with_its_reason(pipeline):
    """dropped.jsonl beside each output names every item that produced no row, with the manifest's reasons."""
    from collections import Counter

    for folder, output in [("queries", "queries.jsonl"), ("generator", "train.jsonl"), ("retriever", "train.jsonl"),
                           ("distill", "train_distill.jsonl")]:
        m = json.loads((pipeline / folder / "manifest.json").read_text())
        dropped = read_jsonl(pipeline / folder / "dropped.jsonl") if m["counts"]["dropped"] else []
        assert Counter(d["reason"] for d in dropped) == Counter(m["counts"]["dropped"]), folder
        kept_ids = {r["id"] for r in read_jsonl(pipeline / folder / output)}
        if folder == "queries":
            kept_ids |= {r["id"] for r in read_jsonl(pipeline / folder / "heldout.jsonl")}
        assert not kept_ids & {d["id"] for d in dropped}
        assert len(kept_ids) + len(dropped) == m["counts"]["items"], folder
    queries = json.loads((pipeline / "queries" / "manifest.json").read_text())
    assert queries["counts"]["dropped"], "the slice's query stage drops nothing: this test checks too little"


def test_round_trip_filter_keeps_exactly_the_queries_whose_source_the_retriever_ranks_in_its_top_k(
        pipeline, slice_dir, tmp_path):
    unfiltered = {r["id"]: r["pos_rank"] for r in read_jsonl(pipeline / "retriever" / "train.jsonl")}
    k = 1  # the 30-document slice: most sources rank first, a few do not
    out = tmp_path / "filtered"
    proc = run_module("data_generation.generate_retriever_data",
                      *stage_cmd("generate_retriever_data", pipeline, out, slice_dir), "--filter_data", "true",
                      "--filter_num", str(k))
    assert proc.returncode == 0, proc.stderr[-2000:]
    kept = {r["id"] for r in read_jsonl(out / "train.jsonl")}
    failed = {d["id"] for d in read_jsonl(out / "dropped.jsonl") if d["reason"] == "failed_round_trip"}
    assert kept == {i for i, rank in unfiltered.items() if 0 <= rank < k}
    assert failed == {i for i, rank in unfiltered.items() if not 0 <= rank < k}
    assert kept and failed, f"pos_ranks {unfiltered}: choose k so that the filter both keeps and drops"
    assert json.loads((out / "manifest.json").read_text())["counts"]["dropped"]["failed_round_trip"] == len(failed)


def test_llamafactory_accepts_the_preference_data(pipeline, tmp_path):
    """Load the pairs with LLaMA-Factory's own dataset pipeline (DPO stage), as llamafactory-cli would."""
    llama_dir = pipeline / "generator" / "llamafactory"
    info = json.loads((llama_dir / "dataset_info.json").read_text())
    (name, entry), = info.items()
    assert entry["ranking"] is True and (llama_dir / entry["file_name"]).is_file()
    script = f"""
from llamafactory.hparams import get_train_args
from llamafactory.data import get_template_and_fix_tokenizer, get_dataset
from llamafactory.model import load_tokenizer
from inference.resolver import resolve_model_path
args = dict(model_name_or_path=resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct"), stage="dpo", do_train=True,
            finetuning_type="lora", dataset={name!r}, dataset_dir={str(llama_dir)!r}, template="default",
            cutoff_len=512, output_dir={str(tmp_path / 'lf')!r}, bf16=False, report_to="none")
model_args, data_args, training_args, *_ = get_train_args(args)
tok = load_tokenizer(model_args)
template = get_template_and_fix_tokenizer(tok["tokenizer"], data_args)
ds = get_dataset(template, model_args, data_args, training_args, stage="rm", **tok)["train_dataset"]
print("ROWS", len(ds), "COLUMNS", ",".join(sorted(ds.column_names)))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pairs = len((pipeline / "generator" / "train.jsonl").read_text().splitlines())
    assert f"ROWS {pairs} " in proc.stdout and "chosen_input_ids" in proc.stdout and "rejected_input_ids" in proc.stdout


OUTPUTS = {"generate_queries": ("queries", ["queries.jsonl"]),
           "generate_generator_data": ("generator", ["train.jsonl", "llamafactory/scifact_rlrf.json"]),
           "generate_retriever_data": ("retriever", ["train.jsonl"]),
           "generate_retriever_distill_data": ("distill", ["train_distill.jsonl"])}


@pytest.mark.parametrize("stage", list(OUTPUTS))
def test_sigkill_then_rerun_gives_exactly_the_uninterrupted_rows(pipeline, slice_dir, tmp_path, stage):
    folder, files = OUTPUTS[stage]
    out = tmp_path / f"{folder}_killed"
    cmd = [sys.executable, "-m", f"data_generation.{stage}", *stage_cmd(stage, pipeline, out, slice_dir)]
    first_chunk = out / "chunks" / "chunk-000000.json"
    sigkill_once_written(cmd, first_chunk)
    assert first_chunk.exists() and not (out / files[0]).exists()  # killed part-way
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    rerun = run_module(f"data_generation.{stage}", *stage_cmd(stage, pipeline, out, slice_dir))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming, 1 of" in rerun.stderr
    for name in files:
        assert (out / name).read_text() == (pipeline / folder / name).read_text(), name
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def distill_cmd(pipeline: Path, out: Path, *extra: str) -> list[str]:
    return ["--retriever_data_path", str(pipeline / "retriever" / "train.jsonl"), "--output_dir", str(out), *COMMON,
            "--passage_max_tokens", "48", "--max_candidates", "6", *extra]


def test_listwise_rankings_that_do_not_parse_stop_the_stage_and_a_higher_limit_resumes(pipeline, tmp_path):
    out = tmp_path / "distill"
    one_token = distill_cmd(pipeline, out, "--max_new_tokens", "1")   # "[" at best: no ranking parses
    proc = run_module("data_generation.generate_retriever_distill_data", *one_token)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    rows = len((pipeline / "retriever" / "train.jsonl").read_text().splitlines())
    found = re.search(r"(\d+) of (\d+) listwise rankings did not parse", proc.stderr)
    assert found and int(found[2]) == rows and int(found[1]) > 0.2 * rows and "(limit 20%)" in proc.stderr
    assert "teacher_scoring query_likelihood" in proc.stderr and not (out / "train_distill.jsonl").exists()
    proc = run_module("data_generation.generate_retriever_distill_data", *one_token, "--max_fallback_share", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stderr and "Generation: 0 completions" in proc.stdout  # nothing generated again
    statuses = [r["ranking_status"] for r in read_jsonl(out / "train_distill.jsonl")]
    assert statuses.count("fallback") == int(found[1])


def test_query_likelihood_teacher_scores_every_candidate_without_parsing(pipeline, tmp_path):
    out = tmp_path / "distill_ql"
    proc = run_module("data_generation.generate_retriever_distill_data",
                      *distill_cmd(pipeline, out, "--teacher_scoring", "query_likelihood"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    mined = read_jsonl(pipeline / "retriever" / "train.jsonl")
    rows = read_jsonl(out / "train_distill.jsonl")
    assert len(rows) == len(mined)
    for d, r in zip(rows, mined):
        assert d["ranking_status"] == "scored" and d["pos"] == r["pos"] and sorted(d["neg"]) == sorted(r["neg"])
        assert all(s < 0 for s in d["pos_scores"] + d["neg_scores"])        # mean log-probabilities
        assert d["neg_scores"] == sorted(d["neg_scores"], reverse=True)   # negatives in teacher order
        assert len(set(d["pos_scores"] + d["neg_scores"])) == 1 + len(d["neg"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["notes"] == {"scored": len(rows)} and manifest["generation"]["completions"] == 0


def test_hybrid_teacher_scores_each_candidate_with_the_fused_bm25_and_dense_score(pipeline, slice_dir, tmp_path):
    import numpy as np

    from inference.embedder import Embedder, document_text
    from inference.hybrid import fuse_scores
    from inference.sparse import BM25Index

    out = tmp_path / "distill_hybrid"
    proc = run_module("data_generation.generate_retriever_distill_data", *distill_cmd(
        pipeline, out, "--teacher_scoring", "hybrid", "--dataset", str(slice_dir), "--fusion_weight", "0.3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    corpus = read_jsonl(slice_dir / "corpus.jsonl")
    texts = [document_text(d) for d in corpus]
    position = {d["_id"]: i for i, d in enumerate(corpus)}
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2", show_progress=False)
    doc_emb, bm25 = embedder.encode_corpus(texts), BM25Index.build(texts)
    rows = read_jsonl(out / "train_distill.jsonl")
    assert len(rows) == len(read_jsonl(pipeline / "retriever" / "train.jsonl"))
    for row, bm25_row in zip(rows, bm25.iter_scores([r["query"] for r in rows])):
        # 30 documents: every one is in the query's candidate pool, so min-max runs over the whole corpus
        fused = fuse_scores(doc_emb @ embedder.encode_queries([row["query"]])[0], bm25_row, 0.3)
        ids = row["pos_ids"] + row["neg_ids"]
        assert np.allclose(row["pos_scores"] + row["neg_scores"], [fused[position[d]] for d in ids], atol=1e-5)
        assert row["neg_scores"] == sorted(row["neg_scores"], reverse=True) and row["ranking_status"] == "scored"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["teacher"]["bm25_weight"] == 0.3 and manifest["generation"] == {}
    other = tmp_path / "other"
    other.mkdir()
    (other / "corpus.jsonl").write_text("".join(line + "\n" for line in (slice_dir / "corpus.jsonl").read_text(
        ).splitlines()[:29]))
    proc = run_module("data_generation.generate_retriever_distill_data", *distill_cmd(
        pipeline, tmp_path / "wrong", "--teacher_scoring", "hybrid", "--dataset", str(other)))
    assert proc.returncode == 2 and "not the corpus stage D mined" in proc.stderr and "Traceback" not in proc.stderr


def test_rerun_of_a_finished_stage_is_a_no_op_and_changed_parameters_need_overwrite(pipeline, slice_dir):
    args = stage_cmd("generate_retriever_distill_data", pipeline, pipeline / "distill", slice_dir)
    before = (pipeline / "distill" / "train_distill.jsonl").stat().st_mtime_ns
    proc = run_module("data_generation.generate_retriever_distill_data", *args)
    assert proc.returncode == 0 and "already complete" in proc.stderr
    assert (pipeline / "distill" / "train_distill.jsonl").stat().st_mtime_ns == before
    changed = [a if a != "48" else "64" for a in args]  # passage_max_tokens 48 → 64
    proc = run_module("data_generation.generate_retriever_distill_data", *changed)
    assert proc.returncode == 2 and "different parameters (passage_max_tokens)" in proc.stderr
    assert "--overwrite" in proc.stderr and "Traceback" not in proc.stderr


def test_inputs_are_validated_against_the_previous_manifest(pipeline, tmp_path, tiny_beir):
    # Queries generated from the SciFact slice, mined against another corpus: a clear error.
    proc = run_module("data_generation.generate_retriever_data", "--queries_path",
                      str(pipeline / "queries" / "queries.jsonl"), "--dataset", str(tiny_beir),
                      "--output_dir", str(tmp_path / "r"), *COMMON)
    assert proc.returncode == 2 and "generated from a different corpus" in proc.stderr
    # A file without its stage's manifest (or edited after the stage finished) is refused.
    copy = tmp_path / "loose" / "queries.jsonl"
    copy.parent.mkdir()
    copy.write_text((pipeline / "queries" / "queries.jsonl").read_text())
    proc = run_module("data_generation.generate_generator_data", "--queries_path", str(copy),
                      "--output_dir", str(tmp_path / "g"), *COMMON)
    assert proc.returncode == 2 and "no manifest.json beside the input" in proc.stderr


def test_a_stage_through_the_openai_backend(server, slice_dir, tmp_path):
    out = tmp_path / "queries_api"
    proc = run_module("data_generation.generate_queries", "--dataset", str(slice_dir), "--output_dir", str(out),
                      "--generator", "smollm2-local", "--generator_backend", "openai", "--generation_cache",
                      str(tmp_path / "cache"), "--train_num", "3", "--chunk_size", "3", "--max_passage_tokens", "64",
                      "--use_examples", "false", "--quality_control", "false", "--max_new_tokens", "24",
                      "--prompt_style", "simple", env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "local-test"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(out / "queries.jsonl")
    assert rows and all(r["query"] for r in rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["generator"]["backend"] == "openai" and server.plan.requests == 3
    assert "local-test" not in (out / "manifest.json").read_text()
