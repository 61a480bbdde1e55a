"""The vllm backend through vLLM's real engine: the CPU build in its own environment (`make test-vllm` builds
.venv-vllm and runs these) with the bundled SmolLM2. Nothing here fakes vLLM: a spy only records what reaches the
engine and what it returns. In .venv the whole module is deselected (`-m "not vllm"`) or skipped (no vllm)."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SCIFACT, SMOLLM2, TINY_CORPUS, run_module, sigkill_once_written, write_beir

pytestmark = pytest.mark.vllm
if os.environ.get("REQUIRE_VLLM"):  # make test-vllm: a broken vLLM install fails here instead of skipping
    importlib.import_module("vllm")
else:
    pytest.importorskip("vllm")

MAIN_PYTHON = REPO / ".venv" / "bin" / "python"   # the training environment (LLaMA-Factory) for the DPO round
PROMPTS = ["Name a primary colour.", "What does insulin do?"]


@pytest.fixture(scope="session")
def engine():
    from inference.generators import load_generator

    return load_generator(SMOLLM2, backend="vllm", show_progress=False)


class EngineSpy:
    """Wraps the real ``LLM.generate``: records the prompts, sampling parameters and outputs that pass."""

    def __init__(self, llm):
        self.real, self.calls = llm.generate, []

    def __call__(self, prompts, params, **kwargs):
        outputs = self.real(prompts, params, **kwargs)
        self.calls.append((prompts, params, outputs))
        return outputs


@pytest.fixture
def spy(engine, monkeypatch):
    recorder = EngineSpy(engine.llm)
    monkeypatch.setattr(engine.llm, "generate", recorder)
    return recorder


def test_n_seeded_samples_per_prompt_are_reproducible(engine):
    kwargs = dict(n=3, temperature=0.9, top_p=0.9, max_new_tokens=16)
    first = engine.generate(PROMPTS, seed=5, **kwargs)
    assert [len(row) for row in first] == [3, 3] and all(s for row in first for s in row)
    assert len(set(first[0])) > 1                       # three samples, not one answer three times
    assert engine.generate(PROMPTS, seed=5, **kwargs) == first
    assert engine.generate(PROMPTS, seed=6, **kwargs) != first


@pytest.fixture(scope="module")
def hf_smollm2():
    from inference.generators import load_generator

    return load_generator(SMOLLM2, backend="hf", show_progress=False)


def test_greedy_text_equals_the_hf_backend(engine, hf_smollm2):
    """Same prompt rendering, same decoding settings (repetition penalty 1.1, fp32): the same words."""
    assert engine.generate(PROMPTS, max_new_tokens=24) == hf_smollm2.generate(PROMPTS, max_new_tokens=24)


def test_query_likelihood_scores_equal_the_hf_backend(engine, hf_smollm2):
    """RLGF's query_likelihood teacher on vLLM (prompt log-probabilities) gives the hf backend's scores."""
    from inference.prompts import query_likelihood_prompt

    passages = [f"{d['title']}. {d['text']}" for d in TINY_CORPUS[:3]]
    prompts = [query_likelihood_prompt(p) for p in passages] * 2
    queries = ["which hormone lowers blood sugar"] * 3 + ["why do volcanoes erupt"] * 3
    scores = engine.continuation_logprobs(prompts, queries)
    assert scores == pytest.approx(hf_smollm2.continuation_logprobs(prompts, queries), abs=2e-3)
    assert max(range(3), key=scores.__getitem__) == 2 and max(range(3, 6), key=scores.__getitem__) == 4


def test_max_tokens_and_the_prompt_formats_stop_strings_reach_the_engine(engine, spy, monkeypatch):
    from inference.generators import load_generator

    engine.generate(["Describe the water cycle in detail."], max_new_tokens=6)
    (_, params, outputs), = spy.calls
    assert params.max_tokens == 6 and params.stop == []                       # chat (llm_instruct): no stop
    assert len(outputs[0].outputs[0].token_ids) == 6 and outputs[0].outputs[0].finish_reason == "length"
    instruction = load_generator(SMOLLM2, model_type="llm", backend="vllm", show_progress=False)
    assert instruction.llm is engine.llm                                       # one engine per model
    assert instruction.generate(["List two fruits."], max_new_tokens=40)[0][0]
    prompts, params, _ = spy.calls[-1]
    assert params.stop == ["###"]
    assert engine.tokenizer.decode(prompts[0]["prompt_token_ids"]).startswith("###Instruction:\nList two fruits.")
    # The engine itself stops at a stop string (not only the text cut afterwards).
    monkeypatch.setattr(type(engine), "stop_strings", property(lambda self: ["Title 2"]))
    text = engine.generate(["Write three markdown headings, each starting with ###."], max_new_tokens=60)[0][0]
    out = spy.calls[-1][2][0].outputs[0]
    assert out.finish_reason == "stop" and out.stop_reason == "Title 2" and len(out.token_ids) < 60
    assert text.startswith("###") and "Title 2" not in text


def test_a_template_that_writes_its_bos_reaches_the_engine_with_exactly_one(engine, spy, monkeypatch):
    from test_vllm_prompt_ids import llama3_style_tokenizer

    tok, bos_id = llama3_style_tokenizer()
    monkeypatch.setattr(engine, "tokenizer", tok)
    engine.generate(["Name a colour."], max_new_tokens=4)
    (prompts, _, outputs), = spy.calls
    ids = list(outputs[0].prompt_token_ids)
    assert ids == prompts[0]["prompt_token_ids"] and ids.count(bos_id) == 1 and ids[0] == bos_id


def test_one_engine_per_model_per_process(engine):
    from inference.generators import load_generator
    from inference.generators.vllm_backend import _ENGINES

    again = load_generator(SMOLLM2, backend="vllm", show_progress=False, repetition_penalty=1.0)
    assert again.llm is engine.llm
    assert sum(1 for key in _ENGINES if key[0] == engine.path) == 1


# ------------------------------------------------------------------------------ stages and evaluation
def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory) -> Path:
    if not SCIFACT.is_dir():
        pytest.skip("needs ../shared/data/scifact")
    root = tmp_path_factory.mktemp("scifact12")
    with open(SCIFACT / "corpus.jsonl") as src:
        (root / "corpus.jsonl").write_text("".join(next(src) for _ in range(12)))
    return root


VLLM = ["--generator_backend", "vllm", "--chunk_size", "3", "--seed", "7"]


@pytest.fixture(scope="module")
def queries(engine, corpus_slice, tmp_path_factory) -> Path:
    """Stage A through the vllm backend, in this process (the session's engine)."""
    from data_generation.generate_queries import main

    out = tmp_path_factory.mktemp("vllm_stages") / "queries"
    assert main(["--dataset", str(corpus_slice), "--output_dir", str(out), *VLLM, "--train_num", "9",
                 "--max_passage_tokens", "64", "--prompt_style", "simple", "--quality_control", "false",
                 "--max_new_tokens", "24"]) == 0
    rows = read_jsonl(out / "queries.jsonl")
    assert len(rows) >= 6 and all(r["query"].strip() for r in rows)
    assert json.loads((out / "manifest.json").read_text())["models"]["generator"]["backend"] == "vllm"
    return out / "queries.jsonl"


def rlrf_args(queries: Path, out: Path) -> list[str]:
    return ["--queries_path", str(queries), "--output_dir", str(out), *VLLM, "--dpo_num", "3", "--threshold", "1.0",
            "--use_rule1", "false", "--max_new_tokens", "20"]


def test_rlrf_stage_on_vllm_resumes_after_sigkill_with_the_uninterrupted_rows(engine, queries, tmp_path):
    from data_generation.generate_generator_data import main

    whole = tmp_path / "whole"
    assert main(rlrf_args(queries, whole)) == 0                      # uninterrupted, this process's engine
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "data_generation.generate_generator_data", *rlrf_args(queries, killed)]
    first_chunk = killed / "chunks" / "chunk-000000.json"
    sigkill_once_written(cmd, first_chunk)
    assert first_chunk.exists() and not (killed / "train.jsonl").exists()
    rerun = run_module("data_generation.generate_generator_data", *rlrf_args(queries, killed), timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming, 1 of" in rerun.stderr
    assert (killed / "train.jsonl").read_text() == (whole / "train.jsonl").read_text()
    pairs = read_jsonl(whole / "train.jsonl")
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)


def test_evaluate_reinforced_ir_on_vllm(engine, tmp_path):
    from evaluation.evaluate import main

    data = write_beir(tmp_path / "tiny", corpus=TINY_CORPUS)
    out = tmp_path / "res.json"
    assert main(["--dataset", str(data), "--task", "scifact", "--methods", "raw,reinforced_ir", "--generator",
                 SMOLLM2, "--generator_backend", "vllm", "--max_new_tokens", "24", "--embedding_cache", "none",
                 "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["run"]["generator"]["backend"] == "vllm"
    assert report["methods"]["reinforced_ir"]["ndcg@10"] >= 0.9      # each tiny query has one obvious answer
    rows = read_jsonl(out.with_suffix(".generations.jsonl"))
    assert len(rows) == 3 and all(r["method"] == "reinforced_ir" and r["generations"][0].strip() for r in rows)


# ------------------------------------------------------------------------------ a round's DPO-merged generator
@pytest.fixture(scope="module")
def merged_generator(tmp_path_factory) -> Path:
    """Stage C as a round runs it: DPO + LoRA with the real llamafactory-cli in .venv, then the merge."""
    if not MAIN_PYTHON.exists():
        pytest.fail(f"{MAIN_PYTHON} is missing: `make venv` builds the training environment (make test-vllm does)")
    from test_generator_training import write_dpo_dataset

    root = write_dpo_dataset(tmp_path_factory.mktemp("dpo"))
    out = root / "generator"
    proc = subprocess.run([str(MAIN_PYTHON), "-m", "finetune.generator.train", "--llamafactory_dataset_dir", str(root),
                           "--llamafactory_dataset", "toy_rlrf", "--output_dir", str(out), "--template", "smollm2",
                           "--max_steps", "2", "--per_device_train_batch_size", "2", "--cutoff_len", "256",
                           "--learning_rate", "1e-4"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "merged_model"


def test_the_dpo_merged_generator_loads_in_vllm_by_path(merged_generator):
    from inference.generators import load_generator

    merged = load_generator(str(merged_generator), backend="vllm", show_progress=False)
    rendered = merged.tokenizer.decode(merged.format_prompt("Name a primary colour."))
    assert rendered.startswith("<|im_start|>") and rendered.endswith("<|im_start|>assistant\n")  # template kept
    text = merged.generate(PROMPTS, max_new_tokens=24)
    assert all(t[0].strip() and "<|im_end|>" not in t[0] for t in text)
    hf = load_generator(str(merged_generator), backend="hf", show_progress=False)
    assert text == hf.generate(PROMPTS, max_new_tokens=24)           # the same merged weights as hf loads


QWEN = "Qwen/Qwen2.5-Coder-0.5B-Instruct"


@pytest.fixture(scope="module")
def qwen_engine():
    """Qwen 0.5B (the bundled GGUF's de-quantised folder; make test-vllm installs its packages) in vLLM."""
    from inference.generators import load_generator

    return load_generator(QWEN, backend="vllm", show_progress=False, max_model_len=1024)


def test_qwen_stops_at_im_end_in_the_engine_with_the_hf_backends_ids_and_text(qwen_engine, monkeypatch):
    """One stop rule and one BOS rule: the engine is told <|im_end|> and <|endoftext|>, gets the hf backend's
    token ids, ends its turn before the budget, and writes the hf backend's words."""
    from inference.generators import load_generator
    from inference.generators.base import prompt_token_ids

    recorder = EngineSpy(qwen_engine.llm)
    monkeypatch.setattr(qwen_engine.llm, "generate", recorder)
    prompts = ["Say hello in French.", "Name a primary colour in one word."]
    out = qwen_engine.generate(prompts, max_new_tokens=48)
    (sent, params, outputs), = recorder.calls
    assert {151645, 151643} <= set(params.stop_token_ids)
    hf = load_generator(QWEN, backend="hf", show_progress=False)
    assert [p["prompt_token_ids"] for p in sent] == [prompt_token_ids(hf.tokenizer, p, "chat") for p in prompts]
    assert all(len(o.outputs[0].token_ids) < 48 for o in outputs)  # each reply ended its turn
    assert all(text and "<|im" not in text for [text] in out)
    assert out == hf.generate(prompts, max_new_tokens=48)
