"""Hardening across stages (docs/RELIABILITY.md): the key never reaches an output, partial API results survive a
failed run and are not paid for again, empty generations are counted skips, the disk check refuses before
encoding, over-long documents are truncated, and a missing model or damaged stage file is one clean line."""
from __future__ import annotations

import json
import uuid
from collections import namedtuple

import numpy as np
import pytest

from conftest import run_module
from inference.errors import UserError

QUERY_STAGE = ["--train_num", "3", "--chunk_size", "3", "--max_passage_tokens", "64", "--use_examples", "false",
               "--quality_control", "false", "--max_new_tokens", "24", "--prompt_style", "simple", "--task", "scifact"]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_failed_requests_keep_partial_results_and_the_key_reaches_no_output(server, tiny_beir, tmp_path):
    key = f"sk-rir-secret-{uuid.uuid4().hex}"
    key_file = tmp_path / "secrets" / "key.txt"
    key_file.parent.mkdir()
    key_file.write_text(key + "\n")
    out, cache = tmp_path / "run" / "queries", tmp_path / "run" / "cache"
    argv = ["--dataset", str(tiny_beir), "--output_dir", str(out), "--generator", "smollm2-local",
            "--generator_backend", "openai", "--generation_cache", str(cache), "--api_key_file", str(key_file),
            "--max_attempts", "1", *QUERY_STAGE]
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": ""}

    server.plan.queue.extend(["500", "500"])       # two of the three requests fail, one attempt each
    failed = run_module("data_generation.generate_queries", *argv, env=env)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    errors = _error_lines(failed.stderr)
    assert len(errors) == 1 and "2 of 3 requests failed, 1 succeeded" in errors[0] and "rerun" in errors[0]
    assert len(list(cache.rglob("*.json"))) == 1   # the finished request is kept

    server.plan.reset()
    rerun = run_module("data_generation.generate_queries", *argv, env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert server.plan.requests == 2               # only the two that failed are asked again
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["items"] == 3

    # The key appears nowhere: not in any file the run wrote, not in any output stream, failed run included.
    outputs = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(outputs) >= 5
    for path in outputs:
        assert key.encode() not in path.read_bytes(), path
    for stream in (failed.stdout, failed.stderr, rerun.stdout, rerun.stderr):
        assert key not in stream
    assert str(key_file) not in (out / "manifest.json").read_text()  # secret-marked options are not recorded


def test_empty_generation_is_a_counted_skip(server, tiny_beir, tmp_path):
    server.plan.queue.append("empty")
    out = tmp_path / "queries"
    proc = run_module("data_generation.generate_queries", "--dataset", str(tiny_beir), "--output_dir",
                      str(out), "--generator", "smollm2-local", "--generator_backend", "openai", *QUERY_STAGE,
                      env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "local-test"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["items"] == 3 and counts["dropped"].get("empty") == 1
    assert counts["kept"] + sum(counts["dropped"].values()) == 3


class _NeverEncodes:
    identity = {"model": "fake"}
    dim = 384

    def encode_corpus(self, texts):  # the check must refuse before any encoding work
        raise AssertionError("encoded despite the disk check")


def test_disk_check_refuses_before_encoding(monkeypatch, tmp_path):
    from evaluation import search

    # A full disk cannot be produced safely in a test: only the free-space figure is faked.
    monkeypatch.setattr(search.shutil, "disk_usage", lambda _: namedtuple("U", "total used free")(1, 1, 4096))
    with pytest.raises(UserError) as err:
        search.encode_corpus_cached(_NeverEncodes(), [{"title": "", "text": "x"}] * 1000, tmp_path / "cache")
    assert "not enough free disk space" in str(err.value) and str(tmp_path / "cache") in str(err.value)


def test_documents_far_beyond_max_length_are_truncated(minilm):
    long_doc = " ".join(f"word{i % 97}" for i in range(40_000))
    emb = minilm.encode_corpus([long_doc, long_doc + " and a tail far past the limit"])
    assert emb.shape == (2, minilm.dim) and np.isfinite(emb).all()
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)  # only the first max_length tokens count


def test_missing_generator_model_is_one_clean_line(tiny_beir, tmp_path):
    missing = tmp_path / "no-such-model"
    proc = run_module("data_generation.generate_queries", "--dataset", str(tiny_beir), "--output_dir",
                      str(tmp_path / "q"), "--generator", str(missing), "--generator_backend", "hf", *QUERY_STAGE,
                      timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and str(missing) in errors[0], proc.stderr[-2000:]


def test_a_damaged_stage_file_is_refused_with_its_name(tmp_path):
    from data_generation.stage import require_complete_stage

    out = tmp_path / "queries"
    out.mkdir()
    (out / "queries.jsonl").write_text('{"id": "q1", "query": "a claim", "doc_id": "d1", "passage": "a passage"}\n{"id": "q2", "que\n')
    manifest = {"stage": "generate_queries", "status": "running", "inputs": {}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError) as err:  # a stage that never finished is never read as complete
        require_complete_stage(out / "queries.jsonl", "generate_queries")
    assert str(out / "manifest.json") in str(err.value) and "has not finished" in str(err.value)

    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "complete",
                                                   "output": {"sha256": "0" * 64}}))
    with pytest.raises(UserError) as err:  # edited after its stage finished
        require_complete_stage(out / "queries.jsonl", "generate_queries")
    assert "file changed since its stage finished" in str(err.value)

    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "complete"}))
    proc = run_module("data_generation.generate_generator_data", "--queries_path", str(out / "queries.jsonl"),
                      "--output_dir", str(tmp_path / "g"), "--generator_backend", "hf", timeout=300)
    errors = _error_lines(proc.stderr)
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "queries.jsonl:2" in errors[0]
