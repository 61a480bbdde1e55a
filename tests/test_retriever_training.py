"""The retriever trainer under real torchrun (2 processes, gloo), checkpoint resume, and reloading the result."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, TINY_CORPUS, run_module, write_beir
from scripts.steps import torchrun_command


def write_rows(path: Path, n: int = 8) -> Path:
    """Distillation rows (ours) over the tiny corpus: positive + three negatives with teacher scores."""
    docs = [f"{d['title']} {d['text']}" for d in TINY_CORPUS]
    queries = ["how do plants make oxygen", "what is a volcano eruption", "which hormone lowers blood sugar",
               "what is the sicilian defence", "what steers weather systems", "why does bread rise"]
    rows = []
    for k in range(n):
        i = k % len(docs)
        negs = [docs[(i + j) % len(docs)] for j in (1, 2, 3)]
        # teacher scores deliberately not in list order, so the trainer's re-ordering by teacher runs
        rows.append({"query": queries[i], "pos": [docs[i]], "neg": negs, "pos_scores": [1.0],
                     "neg_scores": [0.25, 0.5, 1 / 3], "answer": f"An answer about {queries[i]}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def common_args(data: Path, out: Path) -> list[str]:
    return ["--retriever", "sentence-transformers/all-MiniLM-L6-v2", "--train_data", str(data),
            "--output_dir", str(out), "--per_device_train_batch_size", "2", "--train_group_size", "3",
            "--query_max_len", "24", "--passage_max_len", "48", "--learning_rate", "1e-4", "--logging_steps", "1",
            "--use_cpu", "true", "--seed", "3", "--temperature", "0.05", "--warmup_steps", "0"]


KD_ARGS = ["--max_steps", "8", "--negatives_cross_device", "true", "--knowledge_distillation", "true",
           "--kd_loss_type", "m3_kd_loss", "--training_type", "retrieval_answer", "--save_steps", "100"]


def torchrun(data: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = torchrun_command(2, "finetune.retriever.train", [*common_args(data, out), *KD_ARGS, *extra])
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def logged(out: Path, key: str) -> list[float]:
    state = json.loads(sorted(out.glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    return [h[key] for h in state["log_history"] if key in h]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    out = root / "model"
    # 8 rows in global batches of 4: 2 steps an epoch, 4 epochs; the evaluator callback scores each epoch's end
    evaluation = write_beir(root / "eval", split="dev")
    proc = torchrun(write_rows(root / "train.jsonl"), out, "--eval_dataset", str(evaluation))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "trained 8 steps" in proc.stdout
    return out


def test_torchrun_two_processes_cross_device_kd(ddp_run):
    out = ddp_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["counts"]["steps"] == 8
    assert manifest["replica_drift"] == 0.0  # DDP averaged the gradients: both ranks hold the same model
    losses, kd = logged(out, "loss"), logged(out, "loss_kd_pl")
    assert len(losses) == 8 and len(kd) == 8
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # the loss goes down

    # Reloadable with sentence-transformers and with our Embedder / Reinforced_IR_Model: same vectors.
    from sentence_transformers import SentenceTransformer

    from inference import Embedder, Reinforced_IR_Model

    texts = ["why does bread rise", "Insulin lowers blood glucose."]
    st = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_numpy=True)
    ours = Embedder(str(out), show_progress=False)
    assert ours.pooling_method == "mean" and ours.normalize is True
    np.testing.assert_allclose(ours.encode(texts), st, atol=1e-5)
    model = Reinforced_IR_Model(str(out))
    np.testing.assert_allclose(model.encode_queries(texts), st, atol=1e-5)
    base = Embedder("sentence-transformers/all-MiniLM-L6-v2", show_progress=False).encode(texts)
    assert not np.allclose(base, st, atol=1e-4)  # it did train


def test_retrieval_evaluator_callback_scores_each_epoch_like_the_evaluate_cli(ddp_run):
    from evaluation.evaluator import RetrievalEvaluator
    from inference import Embedder

    records = [json.loads(line) for line in (ddp_run / "eval_results.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8] and all(r["queries"] == 3 for r in records)
    # the Trainer's log history holds them too, and the manifest records it (rank 0 evaluates, once an epoch)
    assert json.loads((ddp_run / "manifest.json").read_text())["evaluation"] == records
    final = RetrievalEvaluator.from_dataset(ddp_run.parent / "eval", "dev")(Embedder(str(ddp_run), show_progress=False))
    assert records[-1]["eval_ndcg@10"] == pytest.approx(final.metrics["ndcg@10"], abs=1e-4)
    assert records[-1]["eval_map@100"] == pytest.approx(final.metrics["map@100"], abs=1e-4)


def test_training_encoder_encodes_as_the_inference_embedder(minilm):
    from finetune.retriever.arguments import RetrieverModelArguments
    from finetune.retriever.data import RetrieverCollator
    from finetune.retriever.evaluation import TrainingEncoder
    from finetune.retriever.train import build_model

    model, tokenizer, _ = build_model(RetrieverModelArguments())
    model.train()
    encoder = TrainingEncoder(model, RetrieverCollator(tokenizer, 256, 256), batch_size=2)
    texts = [f"{d['title']} {d['text']}" for d in TINY_CORPUS]
    np.testing.assert_allclose(encoder.encode_corpus(texts), minilm.encode_corpus(texts), atol=1e-5)
    np.testing.assert_allclose(encoder.encode_queries(texts[:3]), minilm.encode_queries(texts[:3]), atol=1e-5)
    assert model.training  # the training mode is restored after the evaluation


@pytest.mark.parametrize("zero", ["zero1", "zero2"])
def test_deepspeed_zero_on_cpu_trains_as_ddp_does(ddp_run, tmp_path, zero):
    """configs/deepspeed ZeRO-1 / ZeRO-2 under torchrun on CPU (DS_ACCELERATOR=cpu, gloo; DeepSpeed builds its
    shared-memory all-reduce op once with ninja): same data, seed and fp32 as the DDP run, so the same steps."""
    out = tmp_path / zero
    proc = torchrun(write_rows(tmp_path / "train.jsonl"), out,
                    "--deepspeed", str(REPO / "configs" / "deepspeed" / f"{zero}.json"), env={"DS_ACCELERATOR": "cpu"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["replica_drift"] == 0.0
    np.testing.assert_allclose(logged(out, "loss"), logged(ddp_run, "loss"), rtol=1e-3)
    np.testing.assert_allclose(logged(out, "grad_norm"), logged(ddp_run, "grad_norm"), rtol=1e-3)
    from inference import Embedder

    texts = ["why does bread rise", "Insulin lowers blood glucose."]
    np.testing.assert_allclose(Embedder(str(out), show_progress=False).encode(texts),
                               Embedder(str(ddp_run), show_progress=False).encode(texts), atol=1e-4)


def test_distillation_groups_are_ordered_by_teacher_score_with_their_scores():
    """Plackett-Luce KD reads the group order: negatives must come sorted by teacher score, each with its own."""
    from finetune.retriever.data import RetrieverTrainDataset

    row = {"query": "q", "pos": ["P"], "neg": ["low", "high", "mid", "lowest"], "pos_scores": [1.0],
           "neg_scores": [0.2, 0.9, 0.5, 0.1]}
    data = RetrieverTrainDataset([[row]], group_size=5, global_batch_size=1, seed=0,
                                 same_dataset_within_batch=False, use_teacher=True)
    item = data[0]
    assert item["passages"] == ["P", "high", "mid", "low", "lowest"]
    assert item["teacher"] == [1.0, 0.9, 0.5, 0.2, 0.1]


def state_is_whole(checkpoint: Path) -> bool:
    try:
        return json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] > 0
    except (OSError, ValueError, KeyError):
        return False


def test_interrupted_training_resumes_to_the_same_final_step(tmp_path):
    data = write_rows(tmp_path / "train.jsonl")
    out = tmp_path / "model"
    args = [sys.executable, "-m", "finetune.retriever.train", *common_args(data, out), "--max_steps", "6",
            "--save_steps", "2"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not state_is_whole(out / "checkpoint-2") and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)    # the Trainer writes trainer_state.json last: checkpoint-2 is complete
    proc.wait()
    assert state_is_whole(out / "checkpoint-2") and not (out / "manifest.json").exists()
    # A newer checkpoint killed mid-save: weights half written, no trainer_state.json. It must be passed over.
    for stale in out.glob("checkpoint-*"):
        if stale.name != "checkpoint-2":
            shutil.rmtree(stale)
    partial = out / "checkpoint-4"
    shutil.copytree(out / "checkpoint-2", partial)
    (partial / "trainer_state.json").unlink()
    weights = partial / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    rerun = run_module("finetune.retriever.train", *common_args(data, out), "--max_steps", "6", "--save_steps", "2")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert f"auto-resuming from {out / 'checkpoint-2'}" in rerun.stderr and "trained 6 steps" in rerun.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["steps"] == 6


def test_open_retrievals_pairwise_format_and_bad_rows(tmp_path):
    data = tmp_path / "pairs.jsonl"
    docs = [f"{d['title']} {d['text']}" for d in TINY_CORPUS]
    data.write_text("".join(json.dumps({"query": f"query {i}", "positive": [docs[i]],
                                        "negative": [docs[(i + 1) % 6], docs[(i + 2) % 6]]}) + "\n" for i in range(6)))
    out = tmp_path / "m"
    proc = run_module("finetune.retriever.train", *common_args(data, out), "--max_steps", "2",
                      "--use_inbatch_neg", "false")
    assert proc.returncode == 0, proc.stderr[-4000:]
    # KD asked for, but the rows have no teacher scores: a one-line error naming file, line and field.
    proc = run_module("finetune.retriever.train", *common_args(data, tmp_path / "m2"), "--max_steps", "2",
                      "--knowledge_distillation", "true")
    assert proc.returncode == 2 and "pairs.jsonl:1, field 'pos_scores'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_module("finetune.retriever.train", *common_args(data, tmp_path / "m3"), "--no_such_option", "1")
    assert proc.returncode == 2 and "unknown option '--no_such_option'" in proc.stderr


def test_llm_embedder_lora_last_pooling_with_instructions(tmp_path):
    """An LLM embedder (SmolLM2, last-token pooling, query/passage instructions) fine-tuned with LoRA; the saved
    model is merged (no peft needed) and loads in Embedder with the same pooling."""
    data = write_rows(tmp_path / "train.jsonl", n=4)
    out = tmp_path / "llm-embedder"
    proc = run_module("finetune.retriever.train", "--retriever", "HuggingFaceTB/SmolLM2-135M-Instruct",
                      "--train_data", str(data), "--output_dir", str(out), "--per_device_train_batch_size", "2",
                      "--train_group_size", "2", "--query_max_len", "24", "--passage_max_len", "48",
                      "--learning_rate", "1e-4", "--max_steps", "2", "--use_cpu", "true", "--seed", "3",
                      "--temperature", "0.05", "--use_lora", "true", "--pooling_method", "last",
                      "--query_instruction", "Query: ", "--passage_instruction",
                      "Passage: ", "--save_steps", "100", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not (out / "adapter_config.json").exists() and (out / "modules.json").is_file()
    from inference import Embedder

    emb = Embedder(str(out), show_progress=False)
    assert emb.pooling_method == "last"
    vec = emb.encode(["why does bread rise"])
    assert vec.shape == (1, 576) and np.isfinite(vec).all()
