"""Generator stage C input checks. The real llamafactory-cli DPO + export + generation from the merged model runs
once, inside the self-boost round (``tests/test_self_boost.py::test_generator_step_dpo_lora_merge_and_generate``),
to keep the suite's minutes down."""
import json
from pathlib import Path

import pytest

from conftest import run_module

PAIRS = [
    ("Insulin lowers blood glucose.", "Insulin, made by the pancreas, helps cells absorb glucose.", "I do not know."),
    ("Volcanoes erupt lava.", "Magma rises through the crust and erupts as lava.", "Sorry, no idea."),
    ("Yeast makes bread rise.", "Yeast ferments sugar and releases carbon dioxide in dough.", "Bread is food."),
    ("Jet streams steer weather.", "Fast upper-air currents move weather systems.", "Weather happens."),
]


def write_dpo_dataset(folder: Path) -> Path:
    """PAIRS as a LLaMA-Factory dataset_dir (dataset ``toy_rlrf``), prompts in the generator's prompt P."""
    from inference.prompts import generator_prompt, get_task

    task = get_task("scifact")
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"conversations": [{"from": "human", "value": generator_prompt(q, task.task_instruction,
                                                                               task.answer_type)}],
                "chosen": {"from": "gpt", "value": good}, "rejected": {"from": "gpt", "value": bad}}
               for q, good, bad in PAIRS]
    (folder / "toy_rlrf.json").write_text(json.dumps(records))
    (folder / "dataset_info.json").write_text(json.dumps({"toy_rlrf": {
        "file_name": "toy_rlrf.json", "ranking": True, "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}))
    return folder


@pytest.fixture
def dpo_dataset(tmp_path):
    return write_dpo_dataset(tmp_path / "lf")


def test_missing_dataset_is_a_clear_error(dpo_dataset, tmp_path):
    proc = run_module("finetune.generator.train", "--llamafactory_dataset_dir", str(dpo_dataset),
                      "--llamafactory_dataset", "nope",
                      "--output_dir", str(tmp_path / "g"), timeout=300)
    assert proc.returncode == 2 and "dataset 'nope' is not in dataset_info.json" in proc.stderr
