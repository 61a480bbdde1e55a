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
    required = [f"--{n}=x" for n in ("dataset", "output_dir", "round_retriever", "round_generator")]
    round_args = parse_args(RoundEvaluationArguments, [*required, "--base_normalize", "no"])
    assert round_args.base_normalize_embeddings is False


CORPUS_ENCODING_CLIS = ("evaluation.evaluate", "evaluation.label_free", "data_generation.generate_retriever_data",
                        "data_generation.generate_retriever_distill_data", "data_generation.rows_from_qrels",
                        "scripts.evaluate_round", "scripts.self_boost", "scripts.rag_demo",
                        "experiments.dev_label_free_addons")


def test_every_cli_that_encodes_a_corpus_shares_one_cache_option_with_one_default(tmp_path, monkeypatch):
    """``embedding_cache`` was once declared nine times with two defaults (stages D and E cached nothing unless
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

    stage_d = ["--queries_path", "q", "--dataset", "d", "--output_dir", "o"]
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
        return parse_args(RetrieverDataArguments, ["--queries_path", "q", "--dataset", "d", "--output_dir",
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

    required = [f"--{n}=x" for n in ("dataset", "output_dir", "round_retriever", "round_generator")]
    assert round_parameters(parse_args(RoundEvaluationArguments, [*required, "--embedding_cache", "a"])) == \
        round_parameters(parse_args(RoundEvaluationArguments, [*required, "--embedding_cache", "b"]))


PROJECT_PACKAGES = ("data_generation", "evaluation", "finetune", "scripts", "experiments", "inference")
# A model a CLI uses is named for its role: the one model of its kind, or, where two meet, the base and the round's.
MODEL_FIELDS = {"retriever", "base_retriever", "round_retriever", "generator", "base_generator", "round_generator",
                "reranker"}
# Names that became aliases (each concept has one name): never a field again.
OLD_NAMES = {"model_name_or_path", "model", "backend", "rerank", "query_instruction_for_retrieval",
             "passage_instruction_for_retrieval", "max_tokens",
             # the dataset folder is ``dataset`` everywhere (LLaMA-Factory's dataset name is llamafactory_dataset)
             "dataset_path", "data", "eval_dataset_path", "dataset_dir",
             # the hybrid: its fusion method ``fusion``, BM25's share ``fusion_weight``
             "hybrid_fusion", "hybrid_weight",
             # the retriever's encoding batch is ``retriever_batch_size`` (a bare batch_size says not whose)
             "batch_size"}


def cli_argument_classes() -> dict[str, list[type]]:
    """Every CLI (a module that ends in ``run_cli(main)``) → the argument dataclasses in its namespace."""
    import dataclasses
    import importlib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = {}
    for package in PROJECT_PACKAGES:
        for path in sorted((repo / package).rglob("*.py")):
            if path.name == "__main__.py" or "run_cli(main" not in path.read_text(encoding="utf-8"):
                continue
            name = ".".join(path.relative_to(repo).with_suffix("").parts)
            if name == "inference.errors":
                continue
            module = importlib.import_module(name)
            out[name] = [c for c in vars(module).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
                         and c.__module__.split(".")[0] in PROJECT_PACKAGES and c.__name__.endswith(("Arguments",
                                                                                                   "Config"))]
    return out


def test_one_name_per_concept_across_every_cli():
    """No two CLIs spell one concept differently: the retriever / generator / reranker a CLI uses, the query
    instruction, the generation length, the dataset folder, the hybrid's fusion and BM25 share, the retriever's
    encoding batch. The old spellings are aliases (SHARED_ALIASES or a field's own), not
    fields, and a field whose default is a bundled model is named for that model's role."""
    import dataclasses

    from inference.config import SHARED_ALIASES
    from inference.resolver import is_bundled

    clis = cli_argument_classes()
    assert len(clis) >= 15 and all(clis.values()), {k: v for k, v in clis.items() if not v}
    shared_aliases = {alias for names in SHARED_ALIASES.values() for alias in names}
    problems = []
    for cli, classes in clis.items():
        for cls in classes:
            for f in dataclasses.fields(cls):
                if f.name in OLD_NAMES | shared_aliases or f.name.endswith(("_for_retrieval", "dataset_path")):
                    problems.append(f"{cli}: {cls.__name__}.{f.name} is an old name")
                if isinstance(f.default, str) and f.default and is_bundled(f.default) and f.name not in MODEL_FIELDS:
                    problems.append(f"{cli}: {cls.__name__}.{f.name} names a model outside {sorted(MODEL_FIELDS)}")
    assert not problems, "\n".join(problems)


def test_the_old_names_are_aliases_that_say_so(tmp_path, capsys):
    """Each old spelling still works, as a flag and as a YAML key; --help says whose alias it is, and a use prints
    one note on stderr. The trainers keep the HF name model_name_or_path as an alias of their model's role."""
    from evaluation.evaluate import EvaluateArguments
    from finetune.generator.train import GeneratorTrainArguments
    from finetune.rerank.train import parse as parse_rerank
    from finetune.retriever.train import parse as parse_retriever
    from inference.serve import ServeArguments

    data, rows = tmp_path / "data", tmp_path / "a.jsonl"
    data.mkdir()
    rows.write_text("")
    args = parse_args(EvaluateArguments, ["--dataset", str(data), "--max_tokens", "7",
                                          "--query_instruction_for_retrieval", "q: ", "--rerank", "r"])
    assert (args.max_new_tokens, args.query_instruction, args.reranker) == (7, "q: ", "r")
    err = capsys.readouterr().err
    assert "note: --max_tokens is an alias of --max_new_tokens" in err and err.count("note:") == 3
    model, _, _, _ = parse_retriever(["--model_name_or_path", "m", "--query_instruction_for_retrieval", "q: ",
                                      "--passage_instruction_for_retrieval", "p: ", "--train_data", str(rows)])
    assert (model.retriever, model.query_instruction, model.passage_instruction) == ("m", "q: ", "p: ")
    assert parse_rerank(["--model_name_or_path", "m", "--train_data", str(rows)])[0].reranker == "m"
    serve = parse_args(ServeArguments, ["--model", "m", "--backend", "vllm"])
    assert (serve.generator, serve.generator_backend) == ("m", "vllm")
    config = tmp_path / "train_generator.yaml"
    config.write_text(f"model_name_or_path: m\noutput_dir: {tmp_path / 'o'}\ngenerator_data_dir: {data}\n")
    capsys.readouterr()
    assert parse_args(GeneratorTrainArguments, ["--config", str(config)]).generator == "m"
    assert f"note: --model_name_or_path is an alias of --generator (in {config})" in capsys.readouterr().err
    assert parse_args(EvaluateArguments, ["--dataset", str(data), "--max_new_tokens", "7"]).max_new_tokens == 7
    assert "note:" not in capsys.readouterr().err  # the one name: no note
    with pytest.raises(UserError, match="given twice"):
        parse_args(EvaluateArguments, ["--dataset", str(data), "--max_new_tokens", "7", "--max_tokens", "8"])
    with pytest.raises(SystemExit):
        parse_args(EvaluateArguments, ["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--max_tokens MAX_NEW_TOKENS alias of --max_new_tokens" in help_text
    assert "alias of --reranker" in help_text and "alias of --query_instruction" in help_text


def test_a_profile_block_may_use_an_old_name_and_the_step_gets_the_one_name(tmp_path, capsys):
    import yaml

    from scripts.self_boost import SelfBoostConfig, step_plan

    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({"dataset": str(tmp_path), "runs_dir": str(tmp_path / "runs"),
                                       "train_retriever": {"query_instruction_for_retrieval": "q: "},
                                       "generator_data": {"max_tokens": 9}}))
    cfg = parse_args(SelfBoostConfig, ["--config", str(profile)])
    assert "note: --max_tokens is an alias of --max_new_tokens (generator_data)" in capsys.readouterr().err
    written = {name: yaml.safe_load(open(cmd[cmd.index("--config") + 1])) for name, _, cmd in step_plan(cfg, 1)}
    assert written["train_retriever"]["query_instruction"] == "q: " and written["generator_data"]["max_new_tokens"] == 9
    assert "model_name_or_path" not in written["train_retriever"] and written["train_generator"]["generator"]


def test_the_dataset_fusion_and_batch_options_keep_their_old_names_as_aliases(tmp_path, capsys):
    """dataset_path (stages, driver, round evaluation) and demo's data → dataset; hybrid_fusion → fusion;
    hybrid_weight → fusion_weight; evaluate's batch_size → retriever_batch_size; the generator trainer's
    LLaMA-Factory dataset name is llamafactory_dataset (its old --dataset still works)."""
    from data_generation.generate_retriever_distill_data import DistillDataArguments
    from evaluation.evaluate import EvaluateArguments
    from finetune.generator.train import GeneratorTrainArguments
    from scripts.demo import DemoArguments
    from scripts.evaluate_round import RoundEvaluationArguments

    required = [f"--{n}=x" for n in ("output_dir", "round_retriever", "round_generator")]
    round_args = parse_args(RoundEvaluationArguments, [*required, "--dataset_path", "d", "--hybrid_fusion", "rrf"])
    assert (round_args.dataset, round_args.fusion) == ("d", "rrf")
    distill = parse_args(DistillDataArguments, ["--retriever_data_path", "r", "--output_dir", "o",
                                                "--hybrid_weight", "0.3"])
    assert distill.fusion_weight == 0.3
    assert parse_args(EvaluateArguments, ["--dataset", "d", "--batch_size", "8"]).retriever_batch_size == 8
    assert parse_args(DemoArguments, ["--data", "d"]).dataset == "d"
    generator = parse_args(GeneratorTrainArguments, ["--output_dir", "o", "--dataset_dir", "lf", "--dataset", "n"])
    assert (generator.llamafactory_dataset_dir, generator.llamafactory_dataset) == ("lf", "n")
    err = capsys.readouterr().err
    for alias, name in [("dataset_path", "dataset"), ("hybrid_fusion", "fusion"), ("hybrid_weight", "fusion_weight"),
                        ("batch_size", "retriever_batch_size"), ("data", "dataset"),
                        ("dataset", "llamafactory_dataset")]:
        assert f"note: --{alias} is an alias of --{name}" in err


def test_a_step_finished_under_an_old_option_name_is_still_complete(tmp_path):
    """A manifest written before dataset_path became dataset compares by value: the same folder is the same run
    (for the driver's step check and a stage's own), another folder is a change."""
    import yaml

    from data_generation.generate_retriever_data import RetrieverDataArguments
    from data_generation.stage import StageRun
    from inference.manifest import manifest_changes, write_manifest
    from scripts.self_boost import step_state

    out = tmp_path / "stage_d"
    args = parse_args(RetrieverDataArguments, ["--queries_path", "q", "--dataset", "d", "--output_dir", str(out)])
    now = StageRun("generate_retriever_data", args, "train.jsonl", {}).parameters
    old = {("dataset_path" if k == "dataset" else k): v for k, v in now.items()}
    write_manifest(out, "generate_retriever_data", "complete", parameters=old, inputs={})
    assert StageRun("generate_retriever_data", args, "train.jsonl", {}).previous_status == "complete"
    config = tmp_path / "retriever_data.yaml"
    config.write_text(yaml.safe_dump(now))
    assert step_state(out, config) == ("complete", [])
    config.write_text(yaml.safe_dump({**now, "dataset": "other"}))
    assert step_state(out, config) == ("changed", ["dataset"])
    assert manifest_changes({"parameters": old}, {**now, "dataset": "other"}) == ["parameters (dataset)"]
