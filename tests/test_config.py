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


CORPUS_ENCODING_CLIS = ("evaluation.evaluate", "evaluation.label_free", "data_generation.generate_retriever_data",
                        "data_generation.generate_retriever_distill_data", "data_generation.rows_from_qrels",
                        "scripts.evaluate_round", "scripts.self_boost", "scripts.rag_demo",
                        "scripts.dev_label_free_addons")


def test_every_cli_that_encodes_a_corpus_shares_one_cache_option_with_one_default(tmp_path, monkeypatch):
    """Issue 13: ``embedding_cache`` was declared nine times with two defaults (stage D and E cached nothing unless
    told; evaluate cached in the user cache). Now one inherited declaration: 'auto' everywhere."""
    import dataclasses
    import importlib

    from inference.config import EmbeddingCacheArguments

    monkeypatch.setenv("RIR_CACHE_DIR", str(tmp_path))
    declaring = []
    for name in CORPUS_ENCODING_CLIS:
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == name):
                continue
            if "embedding_cache" in {f.name for f in dataclasses.fields(cls)}:
                declaring.append(cls)
                assert issubclass(cls, EmbeddingCacheArguments), f"{name}.{cls.__name__} declares its own option"
                assert "embedding_cache" not in cls.__dict__.get("__annotations__", {}), cls
    assert len(declaring) == len(CORPUS_ENCODING_CLIS)  # one argument class per CLI, none missed

    from evaluation.evaluate import EvaluateArguments
    from data_generation.generate_retriever_data import RetrieverDataArguments

    stage_d = ["--queries_path", "q", "--dataset_path", "d", "--output_dir", "o"]
    assert parse_args(RetrieverDataArguments, stage_d).embedding_cache_dir == tmp_path / "embeddings"
    assert parse_args(EvaluateArguments, ["--dataset", "d"]).embedding_cache_dir == tmp_path / "embeddings"
    assert parse_args(EvaluateArguments, ["--dataset", "d", "--embedding_cache", "none"]).embedding_cache_dir is None
    folder = parse_args(RetrieverDataArguments, [*stage_d, "--embedding_cache", str(tmp_path / "x")])
    assert folder.embedding_cache_dir == tmp_path / "x"


def test_moving_the_embedding_cache_does_not_make_a_finished_step_stale(tmp_path):
    """Caches are keyed by content, so a step finished with one cache folder is complete with another: for the
    stage itself (no refusal), for the driver's step check and for round evaluation. A real change still counts."""
    import yaml

    from data_generation.generate_retriever_data import RetrieverDataArguments
    from data_generation.stage import StageRun
    from inference.manifest import write_manifest
    from scripts.evaluate_round import RoundEvaluationArguments, round_parameters
    from scripts.self_boost import step_state

    out = tmp_path / "stage_d"

    def stage_args(*extra):
        return parse_args(RetrieverDataArguments, ["--queries_path", "q", "--dataset_path", "d", "--output_dir",
                                                   str(out), *extra])

    def stage_run(*extra):
        return StageRun("generate_retriever_data", stage_args(*extra), "train.jsonl", {})

    first = stage_run("--embedding_cache", str(tmp_path / "c1"))
    write_manifest(out, "generate_retriever_data", "complete", parameters=first.parameters, inputs={})
    assert stage_run("--embedding_cache", str(tmp_path / "c2")).previous_status == "complete"
    with pytest.raises(UserError, match="num_negatives"):
        stage_run("--num_negatives", "4")

    config = tmp_path / "retriever_data.yaml"
    config.write_text(yaml.safe_dump({**first.parameters, "embedding_cache": str(tmp_path / "c2")}))
    assert step_state(out, config) == ("complete", [])
    config.write_text(yaml.safe_dump({**first.parameters, "num_negatives": 4}))
    assert step_state(out, config) == ("changed", ["num_negatives"])

    required = [f"--{n}=x" for n in ("dataset_path", "output_dir", "round_retriever", "round_generator")]
    assert round_parameters(parse_args(RoundEvaluationArguments, [*required, "--embedding_cache", "a"])) == \
        round_parameters(parse_args(RoundEvaluationArguments, [*required, "--embedding_cache", "b"]))
