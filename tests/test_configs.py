"""Every shipped YAML config parses into its CLI's arguments (a renamed option breaks this, not a user's run)."""
import importlib
import sys
from pathlib import Path

import pytest
import yaml

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


def profiles() -> list[Path]:
    """The self-boost profiles under configs/: the one place their stages' settings live."""
    return [p for p in sorted((REPO / "configs").glob("*/*.yaml"))
            if isinstance(data := yaml.safe_load(p.read_text()), dict) and "base_retriever" in data]


def parse_profile(profile: Path, runs_dir: Path):
    """A profile as the driver reads it, here: its GPU environment's Python and its dataset may be absent."""
    from scripts.self_boost import SelfBoostConfig

    values = yaml.safe_load(profile.read_text())
    argv = ["--config", str(profile), "--runs_dir", str(runs_dir), "--nproc_per_node", "1"]
    if "generation_python" in values:
        argv += ["--generation_python", sys.executable]
    if not Path(values["dataset"]).is_dir():
        (runs_dir / "data").mkdir(parents=True, exist_ok=True)
        argv += ["--dataset", str(runs_dir / "data")]
    return parse_args(SelfBoostConfig, argv)


def emitted_step_configs(profile: Path, runs_dir: Path, k: int = 1) -> dict[str, dict]:
    """Each step's standalone config as the driver writes it for round k (``--emit_commands`` writes the same)."""
    from scripts.self_boost import step_plan

    return {step: yaml.safe_load(Path(cmd[cmd.index("--config") + 1]).read_text()) for step, _, cmd in
            step_plan(parse_profile(profile, runs_dir), k)}


def test_every_profile_writes_step_configs_that_name_only_real_options(tmp_path):
    """Every step config of every profile (CPU and GPU, rounds 1 and 2) names only its CLI's options. (Building
    the GPU trainers' TrainingArguments with deepspeed/fp16 needs CUDA: names only, here.)"""
    from scripts.steps import BY_NAME

    assert {p.relative_to(REPO).as_posix() for p in profiles()} >= {"configs/cpu-demo/scifact.yaml",
                                                                   "configs/cpu-demo/scifact_full.yaml",
                                                                   "configs/gpu/scifact.yaml"}
    for profile in profiles():
        for k in (1, 2):
            for step, values in emitted_step_configs(profile, tmp_path / profile.stem / "runs", k).items():
                unknown = set(values) - BY_NAME[step].option_names()
                assert not unknown, (profile.name, step, unknown)


def test_training_configs_parse(tmp_path):
    """The CPU profiles' trainer configs parse with the trainers' own parsers; so does the reranker's config."""
    from finetune.generator.train import GeneratorTrainArguments
    from finetune.rerank.train import parse as parse_rerank
    from finetune.retriever.train import parse

    for name, distils, group in (("scifact", False, 4), ("scifact_full", True, 6)):
        steps = emitted_step_configs(REPO / "configs" / "cpu-demo" / f"{name}.yaml", tmp_path / name)
        for rows in steps["train_retriever"]["train_data"]:  # the inputs the option checks want to exist
            Path(rows).parent.mkdir(parents=True, exist_ok=True)
            Path(rows).touch()
        Path(steps["train_generator"]["generator_data_dir"]).mkdir(parents=True, exist_ok=True)
        for step in ("train_retriever", "train_generator"):
            (tmp_path / f"{name}-{step}.yaml").write_text(yaml.safe_dump(steps[step]))
        _, data_args, train_args, _ = parse(["--config", str(tmp_path / f"{name}-train_retriever.yaml")])
        assert train_args.knowledge_distillation is distils and data_args.train_group_size == group
        generator = parse_args(GeneratorTrainArguments, ["--config", str(tmp_path / f"{name}-train_generator.yaml")])
        assert generator.generator == "HuggingFaceTB/SmolLM2-135M-Instruct" and generator.template == "smollm2"
    rows = tmp_path / "rows.jsonl"
    rows.touch()
    _, data_args, train_args, _ = parse_rerank(["--config", str(REPO / "configs/cpu-demo/train_reranker.yaml"),
                                                "--train_data", str(rows)])
    assert data_args.train_group_size == 4 and train_args.learning_rate == 1e-4 and train_args.num_train_epochs == 5


# Standalone configs (not a profile) by file name → the CLI they configure. A self-boost step's CLI has none: its
# settings live in the profile's block, and a copy here would be a second place to set them.
STANDALONE = {"evaluate_": "evaluation.evaluate", "train_reranker": "finetune.rerank.train",
              "generate_queries": "data_generation.generate_queries",
              "generate_generator_data": "data_generation.generate_generator_data",
              "generate_retriever_data": "data_generation.generate_retriever_data",
              "generate_retriever_distill_data": "data_generation.generate_retriever_distill_data",
              "train_generator": "finetune.generator.train", "train_retriever": "finetune.retriever.train",
              "evaluate_round": "scripts.evaluate_round"}


def test_each_setting_is_defined_in_one_place(tmp_path):
    """A setting lives once. (1) A standalone config of a step's CLI beside a profile must not set anything to
    another value than the profile's step config (per-stage copies drifted: train_num 150 there, 96 in the
    profile); (2) a profile's step block must not restate a top-level setting the driver passes that step (seed,
    task, ...) with another value."""
    import dataclasses

    from scripts.self_boost import SelfBoostConfig, step_values
    from scripts.steps import STEPS

    step_by_module = {s.module: s.name for s in STEPS}
    profile_set = set(profiles())
    problems = []
    for path in sorted((REPO / "configs").glob("*/*.yaml")):
        if path.parent.name == "prompts" or path in profile_set:
            continue
        module = next((m for prefix, m in STANDALONE.items() if path.name.startswith(prefix)), None)
        assert module, f"{path.relative_to(REPO)}: neither a profile nor a standalone config listed in STANDALONE"
        if module not in step_by_module:
            continue
        values = yaml.safe_load(path.read_text()) or {}
        for profile in (p for p in profile_set if p.parent == path.parent):
            emitted = emitted_step_configs(profile, tmp_path / profile.parent.name / profile.stem)
            step = emitted.get(step_by_module[module], {})
            differ = sorted(k for k in values if k not in step or step[k] != values[k])
            if differ:
                problems.append(f"{path.relative_to(REPO)} sets {', '.join(differ)} otherwise than "
                                f"{profile.relative_to(REPO)}'s {step_by_module[module]} block (or not at all)")
    top_level = {f.name for f in dataclasses.fields(SelfBoostConfig)}
    for profile in profile_set:
        cfg = parse_profile(profile, tmp_path / "top" / profile.parent.name / profile.stem)
        blocks = {s.name: getattr(cfg, s.name) for s in STEPS}
        for s in STEPS:
            setattr(cfg, s.name, {})
        wired = step_values(cfg, 1, {s.name: tmp_path / s.name for s in STEPS})
        for step, block in blocks.items():
            for key, value in block.items():
                if key in top_level and key in wired[step] and wired[step][key] == getattr(cfg, key) != value:
                    problems.append(f"{profile.relative_to(REPO)}: {step}.{key} is {value!r}, the top-level "
                                    f"{key} {getattr(cfg, key)!r}")
    assert not problems, "\n".join(problems)


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
    from experiments.dev_ablation import DevAblationArguments

    args = parse_args(DevAblationArguments, ["--config", str(REPO / "experiments/configs/dev_ablation.yaml")])
    assert args.split == "train" and len(args.variants) >= 2
    with pytest.raises(Exception, match="never on test"):
        parse_args(DevAblationArguments, ["--config", str(REPO / "experiments/configs/dev_ablation.yaml"),
                                          "--split", "test"])
    queries = parse_args(DevAblationArguments, ["--config", str(REPO / "experiments/configs/dev_queries.yaml")])
    assert [(spec or {}).get("queries") for spec in queries.variants.values()] == [None, None, 480]
    with pytest.raises(Exception, match="number of pseudo-queries"):
        DevAblationArguments(run_config="x", output_dir="y", variants={"v": {"queries": 0}}).validate()
    teachers = parse_args(DevAblationArguments, ["--config", str(REPO / "experiments/configs/dev_teachers.yaml")])
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
    from experiments.dev_ablation import DevAblationArguments

    configs = REPO / "experiments" / "configs"
    paths = sorted(configs.glob("dev_*.yaml")) + sorted(configs.glob("*_ablation.yaml"))
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
