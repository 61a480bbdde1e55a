"""Dataset loading: formats, and bad input → one-line error naming file/line/field, exit 2, no traceback."""
import json

import pytest

from evaluation.data import load_dataset
from inference.errors import UserError

from conftest import TINY_CORPUS, TINY_QRELS, TINY_QUERIES, run_module, write_beir, write_jsonl


def test_beir_folder_loads_with_titles_and_judged_queries(tiny_beir):
    ds = load_dataset(tiny_beir, "test")
    assert ds.format == "beir" and len(ds.corpus) == 6 and set(ds.queries) == {"q1", "q2", "q3"}
    assert ds.corpus["d1"] == {"title": "Photosynthesis", "text": TINY_CORPUS[0]["text"]}
    assert ds.qrels["q2"] == {"d3": 1}


def test_air_bench_layout(tmp_path):
    root = tmp_path / "air"
    write_jsonl(root / "corpus.jsonl", [{"id": d["_id"], "text": d["text"]} for d in TINY_CORPUS])
    write_jsonl(root / "dev_queries.jsonl", [{"id": q["_id"], "text": q["text"]} for q in TINY_QUERIES])
    write_jsonl(root / "dev_qrels.jsonl", [{"qid": q, "docid": d, "relevance": r} for q, d, r in TINY_QRELS])
    ds = load_dataset(root, "dev")
    assert ds.format == "air-bench" and ds.qrels["q3"] == {"d6": 1} and ds.corpus["d2"]["title"] == ""


def test_reference_corpus_json_list(tmp_path):
    root = tmp_path / "ref"
    root.mkdir()
    (root / "corpus.json").write_text(json.dumps(["first doc", "second doc"]))
    ds = load_dataset(root, None)
    assert ds.format == "reference" and ds.corpus["1"] == {"title": "", "text": "second doc"}


def test_unknown_ids_in_qrels_are_counted_not_fatal(tmp_path):
    root = write_beir(tmp_path / "d", qrels=TINY_QRELS + [("q1", "ghost-doc", 1), ("ghost-q", "d1", 1)])
    ds = load_dataset(root, "test")
    assert ds.report.unknown_doc_ids == 1 and ds.report.unknown_query_ids == 1
    assert ds.qrels["q1"] == {"d1": 1}


def _corrupt(root, name, lineno, text):
    path = root / name
    lines = path.read_text().splitlines(keepends=True)
    lines[lineno - 1] = text
    path.write_text("".join(lines))


def _bad_corpus_line(root):
    _corrupt(root, "corpus.jsonl", 3, '{"_id": "d3", "title": "x", "text": \n')


def _missing_query_text(root):
    _corrupt(root, "queries.jsonl", 2, json.dumps({"_id": "q2"}) + "\n")


def _wrong_type(root):
    _corrupt(root, "corpus.jsonl", 2, json.dumps({"_id": "d2", "text": 42}) + "\n")


def _empty_corpus(root):
    (root / "corpus.jsonl").write_text("")


def _bad_qrels_score(root):
    _corrupt(root, "qrels/test.tsv", 3, "q2\td3\thigh\n")


def _short_qrels_row(root):
    _corrupt(root, "qrels/test.tsv", 2, "q1\n")


def _duplicate_doc(root):
    _corrupt(root, "corpus.jsonl", 4, json.dumps({"_id": "d1", "text": "again"}) + "\n")


def _non_utf8(root):
    path = root / "queries.jsonl"
    path.write_bytes(path.read_bytes().replace(b"plants", b"pl\xffnts"))


def _only_unknown_qrels(root):
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nqx\tdx\t1\n")


@pytest.mark.parametrize("damage, split, expected", [
    (_bad_corpus_line, "test", ["corpus.jsonl:3", "malformed JSON"]),
    (_missing_query_text, "test", ["queries.jsonl:2", "field 'text'", "missing"]),
    (_wrong_type, "test", ["corpus.jsonl:2", "field 'text'", "expected a string"]),
    (_empty_corpus, "test", ["corpus.jsonl", "corpus is empty"]),
    (_bad_qrels_score, "test", ["test.tsv:3", "field 'score'"]),
    (_short_qrels_row, "test", ["test.tsv:2", "3 tab-separated columns"]),
    (_duplicate_doc, "test", ["corpus.jsonl:4", "duplicate document id 'd1'"]),
    (_non_utf8, "test", ["queries.jsonl:1", "UTF-8"]),
    (_only_unknown_qrels, "test", ["test.tsv", "no qrels row names a known query"]),
    (lambda root: None, "dev", ["dev.tsv", "split 'dev' not found (available: test)"]),
], ids=["malformed-json", "missing-field", "wrong-type", "empty-corpus", "bad-score", "short-row",
        "duplicate-id", "non-utf8", "only-unknown-ids", "missing-split"])
def test_bad_input_is_one_clean_line_with_exit_2(tmp_path, damage, split, expected):
    root = write_beir(tmp_path / "bad")
    damage(root)
    with pytest.raises(UserError) as err:
        load_dataset(root, split)
    for needle in expected:
        assert needle in str(err.value)
    # The same through the CLI a user runs: exit 2, a single "error:" line, no traceback.
    proc = run_module("evaluation.evaluate", "--dataset", str(root), "--split", split, "--method", "raw",
                      timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(n in errors[0] for n in expected), proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_config_key_and_missing_dataset_folder(tmp_path, tiny_beir):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"dataset: {tiny_beir}\nretreiver: x\n")
    proc = run_module("evaluation.evaluate", "--config", str(cfg), timeout=120)
    assert proc.returncode == 2 and "field 'retreiver': unknown option" in proc.stderr
    proc = run_module("evaluation.evaluate", "--dataset", str(tmp_path / "nowhere"), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: --dataset must be an existing folder (a BEIR / AIR-Bench dataset), not found: {tmp_path / 'nowhere'}" \
        in proc.stderr
