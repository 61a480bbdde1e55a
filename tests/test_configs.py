"""Every shipped YAML config parses into its CLI's arguments (a renamed option breaks this, not a user's run)."""
import importlib
from pathlib import Path

import pytest

from inference.config import parse_args

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

    from finetune.retriever.arguments import (RetrieverDataArguments, RetrieverModelArguments,
                                              RetrieverTrainingArguments)
    from finetune.retriever.train import RunArguments

    known = {f.name for cls in (RetrieverModelArguments, RetrieverDataArguments, RetrieverTrainingArguments,
                                RunArguments) for f in dataclasses.fields(cls)}
    config = yaml.safe_load((REPO / "configs/gpu/train_retriever.yaml").read_text())
    assert set(config) <= known, set(config) - known
