"""Every shipped YAML config parses into its CLI's arguments (a renamed option breaks this, not a user's run)."""
import importlib
from pathlib import Path

import pytest

from inference.config import parse_args
from inference.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CLIS = {"generate_": "data_generation.{name}", "evaluate_": "evaluation.evaluate"}


def _configs():
    for path in sorted((REPO / "configs").glob("*/*.yaml")):
        for prefix, module in CLIS.items():
            if path.name.startswith(prefix) and path.parent.name != "prompts":
                yield path, module.format(name=path.stem)


@pytest.mark.parametrize("path, module", list(_configs()), ids=lambda x: str(x).split("configs/")[-1])
def test_config_parses(path, module):
    mod = importlib.import_module(module)
    arg_classes = [v for k, v in vars(mod).items() if k.endswith("Arguments") and getattr(v, "__module__", "") == mod.__name__]
    assert len(arg_classes) == 1
    parse_args(arg_classes[0], ["--config", str(path)])


def test_training_configs_parse():
    from finetune.generator.train import GeneratorTrainArguments
    from finetune.retriever.train import parse

    for path in sorted((REPO / "configs").glob("*/train_generator.yaml")):
        parse_args(GeneratorTrainArguments, ["--config", str(path)])
    model_args, data_args, train_args, _ = parse(["--config", str(REPO / "configs/cpu-demo/train_retriever.yaml")])
    assert train_args.knowledge_distillation and data_args.train_group_size == 8
    from finetune.rerank.train import parse as parse_rerank

    _, data_args, train_args, _ = parse_rerank(["--config", str(REPO / "configs/cpu-demo/train_reranker.yaml"),
                                                "--train_data", "rows.jsonl"])
    assert data_args.train_group_size == 4 and train_args.learning_rate == 1e-4 and train_args.num_train_epochs == 5


def test_gpu_retriever_config_names_only_real_options():
    # Building TrainingArguments with deepspeed/fp16 needs CUDA and deepspeed; here check every key exists.
    import dataclasses

    import yaml

    from finetune.retriever.arguments import (RetrieverTrainDataArguments, RetrieverModelArguments,
                                              RetrieverTrainingArguments)
    from finetune.retriever.train import RunArguments

    known = {f.name for cls in (RetrieverModelArguments, RetrieverTrainDataArguments, RetrieverTrainingArguments,
                                RunArguments) for f in dataclasses.fields(cls)}
    config = yaml.safe_load((REPO / "configs/gpu/train_retriever.yaml").read_text())
    assert set(config) <= known, set(config) - known


def test_generating_steps_run_in_the_generation_python_and_training_in_this_one(tmp_path):
    """The GPU profile's two environments: vLLM steps in .venv-vllm's Python, LLaMA-Factory / torchrun here."""
    import os
    import sys

    from scripts.self_boost import SelfBoostConfig, step_plan

    vllm_python = tmp_path / "bin" / "python"
    vllm_python.parent.mkdir()
    vllm_python.write_text("#!/bin/sh\n")
    os.chmod(vllm_python, 0o755)
    cfg = parse_args(SelfBoostConfig, ["--config", str(REPO / "configs/gpu/scifact.yaml"), "--runs_dir",
                                       str(tmp_path / "runs"), "--generation_python", str(vllm_python),
                                       "--nproc_per_node", "1"])
    plan = {step: cmd for step, _, cmd in step_plan(cfg, 1)}
    assert set(plan) == {"queries", "generator_data", "train_generator", "retriever_data", "distill",
                         "train_retriever", "evaluate"}
    for step, cmd in plan.items():
        expected = sys.executable if step.startswith("train_") else str(vllm_python)
        assert cmd[0] == expected, step
    from inference.errors import UserError

    with pytest.raises(UserError, match="generation_python"):
        parse_args(SelfBoostConfig, ["--config", str(REPO / "configs/gpu/scifact.yaml"),
                                     "--generation_python", str(tmp_path / "missing")])


def test_the_step_registry_drives_the_plan_and_the_report(tmp_path):
    """Each step's module, options, folder and upstream come from scripts/steps.py, and they are real."""
    import yaml

    from scripts.self_boost import SelfBoostConfig, step_plan
    from scripts.steps import STEP_NAMES, STEPS

    for i, step in enumerate(STEPS):
        assert callable(importlib.import_module(step.module).main) and step.option_names()
        assert set(step.upstream) <= set(STEP_NAMES[:i]), step.name  # upstream steps run earlier
    cfg = parse_args(SelfBoostConfig, ["--config", str(REPO / "configs/cpu-demo/scifact.yaml"), "--runs_dir",
                                       str(tmp_path / "runs")])
    plan = step_plan(cfg, 2)
    assert [name for name, _, _ in plan] == [s.name for s in STEPS if not s.first_round_only and (
        s.name != "distill" or cfg.train_retriever.get("knowledge_distillation"))]
    by_name = {s.name: s for s in STEPS}
    for name, out, cmd in plan:
        assert out == by_name[name].directory(cfg.run_dir, 2) and by_name[name].module in cmd
        written = yaml.safe_load(open(cmd[cmd.index("--config") + 1]))
        assert set(written) <= by_name[name].option_names(), name
    # round 2 reads round 1's pseudo-queries (the registry's first_round_only step)
    queries = yaml.safe_load((cfg.run_dir / "round_2" / "configs" / "retriever_data.yaml").read_text())["queries_path"]
    assert queries == str(cfg.run_dir / "round_1" / "synthetic" / "queries" / "queries.jsonl")


def test_torchrun_gets_a_port_that_is_free_now():
    """Two runs (or two test workers) must not meet on one rendezvous port: each command names a free one."""
    import socket

    from scripts.steps import torchrun_command

    cmd = torchrun_command(2, "finetune.retriever.train", ["--config", "x.yaml"])
    assert cmd[1:3] == ["--nproc_per_node", "2"]
    assert cmd[-4:] == ["-m", "finetune.retriever.train", "--config", "x.yaml"]
    port = int(cmd[cmd.index("--master_port") + 1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))  # free when the command was built
        holder.listen()
        assert int(torchrun_command(2, "m", [])[4]) != port  # a port in use is never handed out


def test_load_generator_gives_each_backend_its_own_options():
    from inference.generators import backend_options

    every = {"batch_size": 8, "show_progress": False, "repetition_penalty": 1.1, "cache_dir": "c", "timeout": 5.0,
             "tensor_parallel_size": None, "gpu_memory_utilization": 0.5, "enforce_eager": True, "dtype": "auto"}
    assert backend_options("hf", every) == {"batch_size": 8, "show_progress": False, "repetition_penalty": 1.1,
                                            "dtype": "auto"}
    assert backend_options("openai", every) == {"show_progress": False, "cache_dir": "c", "timeout": 5.0}
    assert backend_options("vllm", every) == {"show_progress": False, "repetition_penalty": 1.1,
                                              "gpu_memory_utilization": 0.5, "enforce_eager": True, "dtype": "auto"}
    assert backend_options("hf", {"batch_sise": 8}) == {"batch_sise": 8}  # a typo still reaches the backend


def test_vllm_dtype_and_eager_defaults_follow_the_device():
    from inference.errors import UserError
    from inference.generators.vllm_backend import engine_settings

    assert engine_settings("auto", None, on_cuda=False) == ("float32", True)   # as the hf backend on CPU
    assert engine_settings("auto", None, on_cuda=True) == ("auto", False)
    assert engine_settings("bf16", False, on_cuda=False) == ("bfloat16", False)
    with pytest.raises(UserError, match="dtype"):
        engine_settings("int3", None, on_cuda=True)


def test_dev_ablation_config_parses_and_names_known_variant_keys():
    from scripts.dev_ablation import DevAblationArguments

    args = parse_args(DevAblationArguments, ["--config", str(REPO / "configs/cpu-demo/dev_ablation.yaml")])
    assert args.split == "train" and len(args.variants) >= 2
    with pytest.raises(Exception, match="never on test"):
        parse_args(DevAblationArguments, ["--config", str(REPO / "configs/cpu-demo/dev_ablation.yaml"),
                                          "--split", "test"])
    queries = parse_args(DevAblationArguments, ["--config", str(REPO / "configs/cpu-demo/dev_queries.yaml")])
    assert [(spec or {}).get("queries") for spec in queries.variants.values()] == [None, None, 480]
    with pytest.raises(Exception, match="number of pseudo-queries"):
        DevAblationArguments(run_config="x", output_dir="y", variants={"v": {"queries": 0}}).validate()
    teachers = parse_args(DevAblationArguments, ["--config", str(REPO / "configs/cpu-demo/dev_teachers.yaml")])
    assert [(spec or {}).get("teacher") for spec in teachers.variants.values()] == [None, None, "hybrid", "hybrid"]


def test_the_trainers_parse_options_like_every_other_cli(tmp_path):
    """One option system: comma lists, strict booleans as one-line errors, typo hints, for the trainers too."""
    from finetune.rerank.train import parse as parse_rerank
    from finetune.retriever.train import parse

    _, data_args, train_args, _ = parse(["--train_data", "a.jsonl,b.jsonl", "--learning_rate", "1e-4"])
    assert data_args.train_data == ["a.jsonl", "b.jsonl"] and train_args.learning_rate == 1e-4
    with pytest.raises(UserError, match="expected true/false"):
        parse(["--train_data", "a.jsonl", "--knowledge_distillation", "maybe"])
    config = tmp_path / "train.yaml"
    config.write_text("train_data: [a.jsonl]\nlearning_rat: 1.0e-4\n")
    with pytest.raises(UserError, match="did you mean 'learning_rate'"):
        parse_rerank(["--config", str(config)])


def test_ablation_configs_parse(tmp_path):
    """The dev ablations and make demo-full's report table parse and validate (variant names, reused retrievers)."""
    from scripts.dev_ablation import DevAblationArguments

    paths = sorted((REPO / "configs").glob("*/dev_*.yaml")) + sorted((REPO / "configs").glob("*/*_ablation.yaml"))
    parsed = {p.name: parse_args(DevAblationArguments, ["--config", str(p)]) for p in paths}
    assert len(parsed) >= 4
    report = parsed["scifact_full_ablation.yaml"]
    assert report.purpose == "report" and report.split == "test" and report.corpus_sample is None
    assert all(a.purpose == "choose" and a.split != "test" for name, a in parsed.items() if name.startswith("dev_"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_config: x.yaml\noutput_dir: out\nvariants:\n  a: {retriever_of: b}\n  b: {}\n")
    with pytest.raises(UserError, match="earlier variant"):
        parse_args(DevAblationArguments, ["--config", str(bad)])
    for rerank, message in (({"top_k": 20, "weight": 0.3}, "reranks a hybrid first stage"),
                            ({"top_k": 0, "weight": 0.3, "method": "hybrid"}, "number of documents"),
                            ({"top_k": 20, "weight": 1.5, "method": "hybrid"}, "in \\[0, 1\\]")):
        method = rerank.pop("method", "raw")
        with pytest.raises(UserError, match=message):
            DevAblationArguments(run_config="x", output_dir="y",
                                 variants={"v": {"method": method, "rerank": rerank}}).validate()
