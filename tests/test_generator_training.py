"""Generator DPO with the real llamafactory-cli (LoRA, a few steps on CPU), export/merge, then generation."""
import json

import pytest

from conftest import SMOLLM2, run_module

PAIRS = [
    ("Insulin lowers blood glucose.", "Insulin, made by the pancreas, helps cells absorb glucose.", "I do not know."),
    ("Volcanoes erupt lava.", "Magma rises through the crust and erupts as lava.", "Sorry, no idea."),
    ("Yeast makes bread rise.", "Yeast ferments sugar and releases carbon dioxide in dough.", "Bread is food."),
    ("Jet streams steer weather.", "Fast upper-air currents move weather systems.", "Weather happens."),
]


@pytest.fixture
def dpo_dataset(tmp_path):
    from inference.prompts import generator_prompt, get_task

    task = get_task("scifact")
    folder = tmp_path / "lf"
    folder.mkdir()
    records = [{"conversations": [{"from": "human", "value": generator_prompt(q, task.task_instruction,
                                                                               task.answer_type)}],
                "chosen": {"from": "gpt", "value": good}, "rejected": {"from": "gpt", "value": bad}}
               for q, good, bad in PAIRS]
    (folder / "toy_rlrf.json").write_text(json.dumps(records))
    (folder / "dataset_info.json").write_text(json.dumps({"toy_rlrf": {
        "file_name": "toy_rlrf.json", "ranking": True, "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}))
    return folder


def test_dpo_lora_train_export_and_generate(dpo_dataset, tmp_path):
    out = tmp_path / "generator"
    args = ["--model_name_or_path", SMOLLM2, "--dataset_dir", str(dpo_dataset), "--dataset", "toy_rlrf",
            "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "2",
            "--cutoff_len", "384", "--learning_rate", "5e-5"]
    proc = run_module("finetune.generator.train", *args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    merged = out / "merged_model"
    assert (merged / "model.safetensors").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    train_cfg = (out / "llamafactory_train.yaml").read_text()
    for line in ("stage: dpo", "finetuning_type: lora", "lora_rank: 32", "lora_alpha: 64", "pref_beta: 0.1",
                 "pref_loss: sigmoid", "lr_scheduler_type: cosine", "bf16: false", "val_size: 0.0",
                 "template: smollm2"):
        assert line in train_cfg
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["models"]["template"] == "smollm2"

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template  # the base tokenizer and chat template

    from inference import load_generator

    gen = load_generator(str(merged), backend="hf", show_progress=False)
    out_text = gen.generate(["Name a primary colour."], max_new_tokens=12)
    assert out_text[0][0].strip()

    # A rerun of the finished stage is a no-op.
    again = run_module("finetune.generator.train", *args, timeout=300)
    assert again.returncode == 0 and "already complete" in again.stderr


def test_missing_dataset_is_a_clear_error(dpo_dataset, tmp_path):
    proc = run_module("finetune.generator.train", "--dataset_dir", str(dpo_dataset), "--dataset", "nope",
                      "--output_dir", str(tmp_path / "g"), timeout=300)
    assert proc.returncode == 2 and "dataset 'nope' is not in dataset_info.json" in proc.stderr
