"""Typed config parsing: YAML + flags, strict booleans, and no silently ignored typos."""
from dataclasses import dataclass, field

import pytest

from inference.config import parse_args
from inference.errors import UserError


@dataclass
class Args:
    dataset: str = field(metadata={"help": "folder"})
    top_k: int = 10
    normalize: bool | None = None
    devices: list[str] | None = None
    weight: float = 0.2


def test_yaml_then_flags_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: a\ntop_k: 5\nnormalize: false\ndevices: [cuda:0, cuda:1]\n")
    args = parse_args(Args, ["--config", str(cfg), "--top_k", "7"])
    assert (args.dataset, args.top_k, args.normalize, args.devices) == ("a", 7, False, ["cuda:0", "cuda:1"])
    args = parse_args(Args, ["--dataset", "b", "--normalize", "yes", "--devices", "cpu,cpu"])
    assert args.normalize is True and args.devices == ["cpu", "cpu"]
    # a bare boolean flag means true, as users of argparse's store_true expect
    assert parse_args(Args, ["--dataset", "b", "--normalize"]).normalize is True
    assert parse_args(Args, ["--normalize", "--dataset", "b"]).dataset == "b"


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: a\ntopk: 5\n")
    with pytest.raises(UserError) as err:
        parse_args(Args, ["--config", str(cfg)])
    assert str(cfg) in str(err.value) and "'topk'" in str(err.value) and "did you mean 'top_k'" in str(err.value)


@pytest.mark.parametrize("argv, needle", [
    (["--dataset", "a", "--normalize", "maybe"], "expected true/false"),
    (["--dataset", "a", "--top_k", "1.5"], "integer"),
    (["--dataset", "a", "--nope", "1"], "unknown option '--nope'"),
    ([], "required option(s) missing: --dataset"),
])
def test_bad_values_are_user_errors(argv, needle):
    with pytest.raises(UserError) as err:
        parse_args(Args, argv)
    assert needle in str(err.value)


@dataclass
class AliasArgs:
    normalize_embeddings: bool | None = field(default=None, metadata={"aliases": ("normalize",)})


def test_an_alias_sets_the_option_under_its_one_name(tmp_path):
    assert parse_args(AliasArgs, ["--normalize", "false"]).normalize_embeddings is False
    assert parse_args(AliasArgs, ["--normalize_embeddings", "false"]).normalize_embeddings is False
    cfg = tmp_path / "c.yaml"
    cfg.write_text("normalize: false\n")
    assert parse_args(AliasArgs, ["--config", str(cfg)]).normalize_embeddings is False
    cfg.write_text("normalize: false\nnormalize_embeddings: true\n")
    with pytest.raises(UserError, match="given twice"):
        parse_args(AliasArgs, ["--config", str(cfg)])


def test_the_cli_options_for_normalisation_have_one_name():
    from evaluation.evaluate import EvaluateArguments
    from scripts.evaluate_round import RoundEvaluationArguments

    assert parse_args(EvaluateArguments, ["--dataset", "d", "--normalize", "no"]).normalize_embeddings is False
    required = [f"--{n}=x" for n in ("dataset_path", "output_dir", "round_retriever", "round_generator")]
    round_args = parse_args(RoundEvaluationArguments, [*required, "--base_normalize", "no"])
    assert round_args.base_normalize_embeddings is False
