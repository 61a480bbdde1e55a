"""Every option of every CLI, walked with bad values: each is refused before any work, in one line that names the
option and what it allows, with exit code 2 and no traceback (inference.option_checks).

The CLIs are discovered, not listed: every module under the CLI packages whose ``main`` is run by ``run_cli``; its
argument classes are read by calling ``main([])`` with ``parse_args`` intercepted. A new CLI, or a new option, is
swept without editing this file, and a numeric or path-like option that no check covers fails
:func:`test_every_number_and_path_option_is_checked` (give it a convention or ``metadata``, or ``"check": False``).
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import sys
import typing
from pathlib import Path

import pytest

import inference.config as config
from inference.errors import UserError, run_cli
from inference.option_checks import OptionCheck, check_options, declared_by_transformers, option_checks

from conftest import REPO, run_module, write_beir

CLI_PACKAGES = ("data_generation", "evaluation", "finetune", "scripts", "experiments", "inference")


class _Found(BaseException):
    """Raised by the intercepted ``parse_args``: carries the classes a CLI parses (a BaseException, so no CLI's
    ``except Exception`` swallows it)."""


class _Accepted(BaseException):
    """Raised after the real ``parse_args`` accepted the argv: the CLI would start work now."""


def cli_modules() -> list[str]:
    """Every module that is a CLI: defines ``main`` and hands it to ``run_cli``."""
    found = []
    for package in CLI_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if re.search(r"^def main\(", text, re.M) and "run_cli(main)" in text:
                found.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found


def _patched_parse_args(replacement):
    """Context: ``parse_args`` replaced in inference.config and in every loaded module that imported it by name."""
    original = config.parse_args

    class _Patch:
        def __enter__(self):
            self.where = [m for name, m in list(sys.modules.items())
                          if name.split(".")[0] in CLI_PACKAGES and m is not None
                          and vars(m).get("parse_args") is original]
            for m in self.where:
                m.parse_args = replacement
            return self

        def __exit__(self, *exc):
            for m in self.where:
                m.parse_args = original
            return False

    return _Patch()


def classes_of(module: str) -> tuple[type, ...]:
    """The argument classes ``module.main`` parses, read by running it up to its ``parse_args``."""
    mod = importlib.import_module(module)

    def spy(cls, argv, **kwargs):
        raise _Found(cls if isinstance(cls, tuple) else (cls,))

    with _patched_parse_args(spy):
        try:
            mod.main([])
        except _Found as found:
            return found.args[0]
    raise AssertionError(f"{module}.main([]) never called inference.config.parse_args: every CLI parses its options "
                         "there, so that they are checked before work starts")


_CLIS: dict[str, tuple[type, ...]] | None = None


def discover_clis() -> dict[str, tuple[type, ...]]:
    """module → argument classes, one entry per distinct set of classes (``finetune.rerank`` = its ``train``)."""
    global _CLIS
    if _CLIS is None:
        out, seen = {}, set()
        for module in cli_modules():
            classes = classes_of(module)
            if classes not in seen:
                seen.add(classes)
                out[module] = classes
        _CLIS = out
    return _CLIS


def test_discovery_finds_the_known_clis():
    clis = discover_clis()
    for module in ("evaluation.evaluate", "evaluation.label_free", "data_generation.generate_queries",
                   "data_generation.generate_retriever_data", "data_generation.generate_retriever_distill_data",
                   "data_generation.generate_generator_data", "data_generation.rows_from_qrels",
                   "finetune.retriever.train", "finetune.rerank.train", "finetune.generator.train",
                   "scripts.self_boost", "scripts.report", "inference.serve"):
        assert module in clis, f"{module} not discovered as a CLI"
    # every module with a main(argv) that calls parse_args is a CLI found here (none is silently skipped)
    for package in CLI_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"^def main\(", text, re.M) and re.search(r"\bparse_args\((?!\))", text) \
                    and "argparse" not in text:
                module = ".".join(path.relative_to(REPO).with_suffix("").parts)
                assert module in cli_modules(), f"{module} has main + parse_args but no run_cli(main)"


# --- what a bad value is, for each kind of check ---------------------------------------------------------------

def _num(check: OptionCheck, x: float) -> str:
    return str(int(x)) if check.number is int and float(x).is_integer() else repr(float(x))


def bad_numbers(check: OptionCheck) -> list[str]:
    step = 1 if check.number is int else 0.5
    bad = []
    if check.min is not None:
        bad.append(check.min - step)
    if check.min_exclusive is not None:
        bad.append(check.min_exclusive)
    if check.max is not None:
        bad.append(check.max + step)
    if check.max_exclusive is not None:
        bad.append(check.max_exclusive)
    bad = [b for b in bad if b not in check.special]
    if check.min is not None and check.min - step in check.special:  # e.g. max_steps: -1 allowed, 0 not
        bad.append(check.min - 2 * step if check.min - 2 * step not in check.special else check.min - 0.5)
    out = [_num(check, b) for b in bad if check.number is float or float(b).is_integer()]
    if check.number is float:
        out.append("nan")
    return out


def bad_paths(check: OptionCheck, tmp: Path) -> list[str]:
    a_file, a_dir = tmp / "a_file.jsonl", tmp / "a_dir"
    a_file.write_text("{}\n")
    a_dir.mkdir(exist_ok=True)
    missing, under_a_file = tmp / "missing" / "x", a_file / "sub"
    return {"file": [a_dir, missing], "dir": [a_file, missing], "file_or_dir": [missing],
            "out_dir": [a_file, under_a_file], "out_file": [a_dir, under_a_file / "out.json"]}[check.path]


def good_values(check: OptionCheck, tmp: Path) -> list:
    if check.path:
        a_file, a_dir = tmp / "ok_file.jsonl", tmp / "ok_dir"
        a_file.write_text("{}\n")
        a_dir.mkdir(exist_ok=True)
        return [{"file": a_file, "dir": a_dir, "file_or_dir": a_file, "out_dir": tmp / "new" / "out",
                 "out_file": tmp / "new" / "out.json"}[check.path]]
    if check.choices:
        return list(check.choices)
    lo = check.min if check.min is not None else \
        (check.min_exclusive + (1 if check.number is int else 0.01) if check.min_exclusive is not None else None)
    hi = check.max if check.max is not None else \
        (check.max_exclusive - (1 if check.number is int else 0.01) if check.max_exclusive is not None else None)
    return [v for v in (lo, hi) if v is not None] + list(check.special)


def _sweep_cases():
    cases = []
    for module, classes in discover_clis().items():
        for name, check in option_checks(classes).items():
            kinds = ["path"] if check.path else ["choice"] if check.choices else ["number"]
            cases.append(pytest.param(module, name, kinds[0], id=f"{module}--{name}"))
    return cases


def _run_main(module: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """``run_cli(module.main, argv)`` in process, with ``parse_args`` that stops the CLI once it accepted the argv."""
    mod = importlib.import_module(module)
    real = config.parse_args

    def parse_then_stop(cls, argv, **kwargs):
        real(cls, argv, **kwargs)
        raise _Accepted()

    capsys.readouterr()
    with _patched_parse_args(parse_then_stop):
        try:
            run_cli(mod.main, argv)
        except SystemExit as exc:
            code = exc.code
        except _Accepted:
            code = "accepted"
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("module, name, kind", _sweep_cases())
def test_a_bad_value_is_one_line_naming_the_option(module, name, kind, tmp_path, capsys):
    check = option_checks(discover_clis()[module])[name]
    if kind == "path":
        values = [str(v) for v in bad_paths(check, tmp_path)]
    elif kind == "choice":
        values = ["no-such-choice"]
    else:
        values = bad_numbers(check)
    assert values, f"no bad value derived for --{name} ({check})"
    for value in values:
        argv = [f"--{name}", f"{good_values(check, tmp_path)[0]},{value}" if check.many and not check.path
                else value]
        code, out, err = _run_main(module, argv, capsys)
        assert code == 2, f"{module} {' '.join(argv)}: exit {code}, stderr {err!r}"
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note: ")]
        assert len(lines) == 1, f"{module} {' '.join(argv)}: {err!r}"
        assert "Traceback" not in err
        assert lines[0].startswith(f"error: --{name} must be {check.allowed}, "), lines[0]
        if kind == "number":  # the value itself is shown (1.0 as 1, nan as nan)
            got = float(lines[0].rsplit("got ", 1)[1])
            assert got == float(value) or (got != got and value == "nan"), lines[0]


@pytest.mark.parametrize("module, name, kind", _sweep_cases())
def test_good_values_pass_the_check(module, name, kind, tmp_path):
    classes = discover_clis()[module]
    check = option_checks(classes)[name]
    for value in good_values(check, tmp_path):
        value = str(value) if isinstance(value, Path) else value
        check_options(classes, {name: [value] if check.many else value}, from_flags=[name])


_PATH_LIKE = re.compile(r"(_path|_file|_dir|_cache|_config|_dataset|_datasets)$|^(output|dataset|datasets|data|train_data)$")


def test_every_number_and_path_option_is_checked():
    """A numeric option, or one whose name says it is a path, without a check is a gap: name it here."""
    gaps = []
    for module, classes in discover_clis().items():
        checks = option_checks(classes)
        for cls in classes:
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                if not f.init or f.name in checks or declared_by_transformers(cls, f.name) \
                        or f.metadata.get("check") is False or "path" in f.metadata:
                    continue
                tp = hints[f.name]
                args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
                base = args[0] if len(args) == 1 else tp
                item = (typing.get_args(base) or [base])[0] if typing.get_origin(base) in (list, tuple) else base
                if item in (int, float) or (item is str and _PATH_LIKE.search(f.name)
                                            and not f.name.endswith("_name_or_path")):
                    gaps.append(f"{module}: {cls.__name__}.{f.name}")
    assert not gaps, "options with no check (add a convention in inference/option_checks.py or metadata):\n" + \
        "\n".join(gaps)


def test_transformers_fields_are_checked_cheaply(tmp_path, capsys):
    """The trainers mix in TrainingArguments: its learning rate, epochs and batch size are checked too, before HF."""
    for module in ("finetune.retriever.train", "finetune.rerank.train"):
        for argv, needle in ((["--learning_rate", "-1"], "--learning_rate must be a number > 0, got -1"),
                             (["--num_train_epochs", "0"], "--num_train_epochs must be a number > 0, got 0"),
                             (["--per_device_train_batch_size", "0"],
                              "--per_device_train_batch_size must be an integer ≥ 1, got 0"),
                             (["--max_steps", "0"], "--max_steps must be an integer ≥ 1 or -1, got 0")):
            code, _, err = _run_main(module, argv, capsys)
            assert code == 2 and err.strip() == f"error: {needle}", (module, argv, err)


def test_a_bad_value_in_a_config_file_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"dataset: {tmp_path}\ntop_k: 0\n")
    code, _, err = _run_main("evaluation.evaluate", ["--config", str(cfg)], capsys)
    assert code == 2 and err.strip() == f"error: {cfg}: --top_k must be an integer ≥ 1, got 0"
    # the flag wins over the file, and it is the flag that is named
    code, _, err = _run_main("evaluation.evaluate", ["--config", str(cfg), "--top_k", "-5"], capsys)
    assert err.strip() == "error: --top_k must be an integer ≥ 1, got -5"


def test_inputs_must_exist_only_for_a_run(tmp_path):
    """A driver (or test) parsing a step's config before the step that makes its inputs has run is not refused;
    a path of the wrong kind is refused everywhere."""
    from data_generation.generate_retriever_data import RetrieverDataArguments

    later = tmp_path / "queries" / "queries.jsonl"  # written by an earlier step, later
    args = config.parse_args(RetrieverDataArguments, ["--queries_path", str(later), "--dataset_path", str(tmp_path),
                                                      "--output_dir", str(tmp_path / "out")])
    assert args.queries_path == str(later)
    with pytest.raises(UserError, match=r"^--queries_path must be an existing file, got a folder: "):
        config.parse_args(RetrieverDataArguments, ["--queries_path", str(tmp_path)])


def test_metadata_overrides_the_convention():
    @dataclasses.dataclass
    class Args:
        dataset: str | None = dataclasses.field(default=None, metadata={"path": None})  # a name, not a folder
        top_k: int = dataclasses.field(default=5, metadata={"min": 0})
        temperature: float = dataclasses.field(default=1.0, metadata={"min_exclusive": 0})
        mode: str = dataclasses.field(default="a", metadata={"choices": ("a", "b")})
        port: int = dataclasses.field(default=1, metadata={"check": False})

    checks = option_checks(Args)
    assert "dataset" not in checks and "port" not in checks
    assert checks["top_k"].allowed == "an integer ≥ 0"
    assert checks["temperature"].allowed == "a number > 0"
    assert config.parse_args(Args, ["--dataset", "my_data", "--top_k", "0"]).top_k == 0
    with pytest.raises(UserError, match=r"--temperature must be a number > 0, got 0"):
        config.parse_args(Args, ["--temperature", "0"])
    with pytest.raises(UserError, match=r"--mode must be one of a, b, got 'c'"):
        config.parse_args(Args, ["--mode", "c"])


# --- end to end: the real CLIs in their own processes ------------------------------------------------------------

def _one_error_line(proc) -> str:
    """The one ``error:`` line of a refused run (a ``note:`` line that an alias was used may come with it)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("note: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def canonical(module: str, option: str) -> str:
    """Today's name of ``option`` in CLI ``module`` (a spelling options were renamed from is an alias of it), so
    that these commands, written once, follow renames."""
    aliases = getattr(config, "option_aliases", None)
    return aliases(discover_clis()[module]).get(option, option) if aliases else option


def test_evaluate_cli_refuses_bad_options_before_work(tmp_path):
    """The sweep's findings: a file for a folder (traceback after all the work), a folder for --output (traceback
    after all the work: the results were lost), and numbers outside their meaning (results printed, all zeros for
    --top_k 0)."""
    data = write_beir(tmp_path / "tiny")
    a_file = data / "corpus.jsonl"
    base = ["--method", "bm25", "--dataset", str(data), "--embedding_cache", "none"]
    cases = [
        (["--dataset", str(a_file)], "must be an existing folder (a BEIR / AIR-Bench dataset), "
                                     f"got a file: {a_file}"),
        (["--embedding_cache", str(a_file)], "must be a folder it can create or write in or 'auto' or 'none', "
                                             f"got a file: {a_file}"),
        (["--output", str(data)], f"must be a file path whose folder it can create or write in, got a folder: {data}"),
        (["--query_ids_file", str(data)], f"must be an existing file, got a folder: {data}"),
        (["--top_k", "0"], "must be an integer ≥ 1, got 0"),
        (["--batch_size", "-3"], "must be an integer ≥ 1, got -3"),
        (["--fusion_weight", "1.5"], "must be a number in [0, 1], got 1.5"),
        (["--max_queries", "-1"], "must be an integer ≥ 1, got -1"),
    ]
    for extra, expected in cases:
        name = canonical("evaluation.evaluate", extra[0][2:])
        assert _one_error_line(run_module("evaluation.evaluate", *base, *extra)) == f"error: --{name} {expected}", extra
    assert not list(tmp_path.glob("**/*.json")), "nothing may be written before the options are checked"


def test_other_clis_refuse_bad_options_end_to_end(tmp_path):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x\n")
    stage = "data_generation.generate_queries"
    assert _one_error_line(run_module(stage, f"--{canonical(stage, 'dataset_path')}", str(tmp_path),
                                      "--output_dir", str(a_file))) == \
        f"error: --output_dir must be a folder it can create or write in, got a file: {a_file}"
    assert _one_error_line(run_module("scripts.report", "--run_dir", str(a_file))) == \
        f"error: --run_dir must be an existing folder, got a file: {a_file}"
    assert _one_error_line(run_module("finetune.retriever.train", "--learning_rate", "0")) == \
        "error: --learning_rate must be a number > 0, got 0"


def test_self_boost_checks_each_steps_values_before_the_first_step(tmp_path):
    """A bad value for a late step (training) fails when the driver starts, not after hours of generation."""
    from scripts.self_boost import SelfBoostConfig

    cfg = tmp_path / "profile.yaml"
    cfg.write_text(f"dataset_path: {tmp_path}\nruns_dir: {tmp_path / 'runs'}\n"
                   "train_retriever: {learning_rate: -1}\n")
    with pytest.raises(UserError) as err:
        config.parse_args(SelfBoostConfig, ["--config", str(cfg)])
    assert str(err.value) == "step 'train_retriever': --learning_rate must be a number > 0, got -1"
    cfg.write_text(f"dataset_path: {tmp_path}\nruns_dir: {tmp_path / 'runs'}\n"
                   "retriever_data: {num_negatives: 0}\n")
    with pytest.raises(UserError, match=r"^step 'retriever_data': --num_negatives must be an integer ≥ 1, got 0$"):
        config.parse_args(SelfBoostConfig, ["--config", str(cfg)])
