"""The one manifest module: what makes a recorded step complete for a caller, and what it reports as changed."""
import json

import pytest

from inference.errors import UserError
from inference.manifest import (MANIFEST, input_record, is_complete, manifest_changes, read_manifest,
                                write_manifest)


@pytest.fixture
def step(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"id": 1}\n')
    out = tmp_path / "step"
    write_manifest(out, "train_retriever", "complete", parameters={"lr": 2e-5, "epochs": 2},
                   inputs={"data": input_record(data)}, counts={"rows": 1})
    return out, data


def test_written_manifest_has_stage_status_fields_and_versions(step):
    out, _ = step
    m = json.loads((out / MANIFEST).read_text())
    assert m["stage"] == "train_retriever" and m["status"] == "complete" and m["counts"] == {"rows": 1}
    assert "python" in m["versions"] and "torch" in m["versions"]
    assert read_manifest(out) == m and read_manifest(out / "missing") is None


def test_complete_only_with_the_same_parameters_and_unchanged_inputs(step):
    out, data = step
    assert is_complete(out) and is_complete(out, parameters={"lr": 2e-5, "epochs": 2})
    assert not is_complete(out, parameters={"lr": 1e-5, "epochs": 2})
    assert not is_complete(out, parameters={"lr": 2e-5})            # a parameter dropped is a change too
    assert manifest_changes(read_manifest(out), {"lr": 1e-5, "epochs": 3}) == ["parameters (epochs, lr)"]
    data.write_text('{"id": 2}\n')                                   # the input file changed on disk
    assert not is_complete(out)
    assert manifest_changes(read_manifest(out)) == [f"input {data}"]
    assert manifest_changes(read_manifest(out), inputs={"data": input_record(data)}) == \
        ["inputs (data)", f"input {data}"]


def test_a_running_step_is_not_complete_and_a_broken_manifest_is_a_clear_error(step):
    out, _ = step
    write_manifest(out, "train_retriever", "running", parameters={"lr": 2e-5, "epochs": 2})
    assert not is_complete(out, parameters={"lr": 2e-5, "epochs": 2})
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        is_complete(out)
