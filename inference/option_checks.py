"""Every option's value checked before any work starts: paths (exists, file or folder, writable) and numbers (range).

:func:`inference.config.parse_args` calls :func:`check_options` on the values the user gave (flags and the YAML
config; defaults are the code's own and are not re-checked), before the dataclass is built (so a trainer's HF
``__post_init__`` never sees them) and before its ``validate()``. A bad value is one :class:`UserError` line naming
the option and what it allows::

    error: --top_k must be an integer ≥ 1, got 0
    error: --dataset must be an existing folder (a BEIR / AIR-Bench dataset), got a file: data/corpus.jsonl
    error: configs/x.yaml: --fusion_weight must be a number in [0, 1], got 1.5

Which check an option gets comes from, in this order:

1. the field's ``metadata`` (overrides everything): ``"path"`` ∈ {``file``, ``dir``, ``file_or_dir``, ``out_dir``,
   ``out_file``} or ``None`` (not a path), ``"min"``, ``"max"``, ``"min_exclusive"``, ``"max_exclusive"`` (bounds),
   ``"special"`` (values always accepted, e.g. ``-1`` or ``"auto"``), ``"choices"``, ``"what"`` (words after the
   kind, e.g. "a BEIR dataset"), or ``"check": False`` to opt out;
2. conventions by field name (:data:`NAMED`, then :data:`PATTERNS`), so most fields need no edit;
3. for fields that ``transformers.TrainingArguments`` declares, only :data:`HF_FIELDS` (the cheap, certain ones).

Input paths must exist only when a CLI runs for real (under ``run_cli``, :data:`inference.errors.FOR_A_RUN`): a
driver or a test that parses a step's config before an earlier step has made its inputs is not refused. A path that
exists must be of the right kind (file or folder) everywhere, and where output goes must be writable everywhere.

Model name-or-path options (``retriever``, ``generator``, ``model_name_or_path``, ...) are not checked here: a hub
id looks like a relative path; the resolver reports those.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable

from .errors import FOR_A_RUN, UserError

PATH_KINDS = ("file", "dir", "file_or_dir", "out_dir", "out_file")
_BOUNDS = ("min", "max", "min_exclusive", "max_exclusive")
_CHECK_KEYS = ("path", "min", "max", "min_exclusive", "max_exclusive", "special", "choices", "what")

# Exact names first (they win over the patterns below). Bounds follow each option's meaning in the code:
# 0 is allowed only where the code reads it as "none" / "off".
NAMED: dict[str, dict] = {
    # paths
    "output_dir": {"path": "out_dir"},
    "runs_dir": {"path": "out_dir"},
    "output": {"path": "out_file"},
    "embedding_cache": {"path": "out_dir", "special": ("auto", "none", "")},
    "generation_cache": {"path": "out_dir"},
    "dataset": {"path": "dir", "what": "a BEIR / AIR-Bench dataset"},
    "datasets": {"path": "dir", "what": "BEIR / AIR-Bench datasets"},
    "data": {"path": "dir", "what": "a BEIR dataset"},
    "train_data": {"path": "file_or_dir", "what": "JSONL files or folders of them"},
    "pseudo_queries": {"path": "file"},
    "deepspeed": {"path": "file"},
    "run_config": {"path": "file"},
    # numbers whose 0 means "none" / "off", or whose range is not the pattern's
    "seed": {"min": 0},
    "port": {"min": 0, "max": 65535},
    "temperature": {"min": 0},  # sampling: 0 = greedy
    "top_p": {"min_exclusive": 0, "max": 1},
    "corpus_sample": {"min": 0},  # 0: only the judged documents
    "round_trip_depth": {"min": 0},  # 0: no round trip
    "min_query_words": {"min": 0},
    "max_steps": {"min": 1, "special": (-1,)},  # -1: train by epochs
    "warmup_steps": {"min": 0},
    "learning_rate": {"min_exclusive": 0},
    "num_train_epochs": {"min_exclusive": 0},
    "pref_beta": {"min_exclusive": 0},
    "repetition_penalty": {"min_exclusive": 0},
    "gpu_memory_utilization": {"min_exclusive": 0, "max": 1},
    "lora_dropout": {"min": 0, "max_exclusive": 1},
    "holdout_fraction": {"min": 0, "max_exclusive": 1},  # 1 would hold out every query
    "val_size": {"min": 0, "max_exclusive": 1},
    "train_ratio": {"min_exclusive": 0, "max": 1},
    "bm25_k1": {"min": 0},
    "bm25_b": {"min": 0, "max": 1},
    "score_cutoff": {"min": 0, "max": 1},  # a share of the positive's score
    "min_improvement": {"min": 0},
    "max_loss": {"min": 0},  # nDCG@10 points
    "fallback_range": {"min": 0},  # ranks, 0-based
    "negative_ranks": {"min": 0},
    "prf_betas": {"min": 0},
}

# (regex on the name, base type, check): first match wins. Counts and sizes are ≥ 1; shares are in [0, 1].
PATTERNS: list[tuple[str, type, dict]] = [
    (r"_name_or_path$", str, {"path": None}),  # a model: hub id or folder (the resolver's job)
    (r"(^|_)dataset(_path)?$", str, {"path": "dir", "what": "a BEIR / AIR-Bench dataset"}),  # eval_dataset, ...
    (r"(^|_)datasets$", str, {"path": "dir", "what": "BEIR / AIR-Bench datasets"}),
    (r"_dir$", str, {"path": "dir"}),  # inputs; the written ones (output_dir, runs_dir, ...) are named above
    (r"_(path|file)$", str, {"path": "file"}),
    (r"_temperature$", float, {"min_exclusive": 0}),  # a divisor (τ of a softmax)
    (r"_timeout$", float, {"min_exclusive": 0}),
    (r"(_fraction|_share|_ratio|_weights?|^threshold)$", float, {"min": 0, "max": 1}),
    (r"(batch_size|_size|_num|_steps|_depths?|_window|_len|_length|_tokens|_words|top_k|_rank|_alpha)$", int,
     {"min": 1}),
    (r"^(num_|max_|nproc)|_max_|^(k|rounds?|dpo_num)$", int, {"min": 1}),
    (r"^(documents|queries|passages|rows|items|samples|examples|generations|candidates)$", int, {"min": 1}),  # counts
]

# Fields ``transformers.TrainingArguments`` declares: only these few, certain ones (HF parses the rest itself).
HF_FIELDS: dict[str, dict] = {
    "learning_rate": {"min_exclusive": 0},
    "num_train_epochs": {"min_exclusive": 0},
    "per_device_train_batch_size": {"min": 1},
    "per_device_eval_batch_size": {"min": 1},
    "gradient_accumulation_steps": {"min": 1},
    "max_steps": {"min": 1, "special": (-1,)},
    "warmup_ratio": {"min": 0, "max": 1},
    "warmup_steps": {"min": 0},
    "weight_decay": {"min": 0},
    "max_grad_norm": {"min": 0},
    "adam_beta1": {"min": 0, "max_exclusive": 1},
    "adam_beta2": {"min": 0, "max_exclusive": 1},
    "adam_epsilon": {"min_exclusive": 0},
    "logging_steps": {"min_exclusive": 0},  # HF: a float < 1 is a share of the steps
    "save_steps": {"min_exclusive": 0},
    "eval_steps": {"min_exclusive": 0},
    "save_total_limit": {"min": 1},
    "dataloader_num_workers": {"min": 0},
    "seed": {"min": 0},
    "data_seed": {"min": 0},
    "resume_from_checkpoint": {"path": "dir", "what": "a checkpoint-N folder"},
    "logging_dir": {"path": "out_dir"},
}


@dataclasses.dataclass(frozen=True)
class OptionCheck:
    """What one option allows. ``number`` is ``int`` or ``float`` for a numeric option (each item of a list)."""
    name: str
    path: str | None = None
    number: type | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: float | None = None
    max_exclusive: float | None = None
    special: tuple = ()
    choices: tuple = ()
    what: str = ""
    many: bool = False  # a list: each item is checked

    @property
    def allowed(self) -> str:
        """The allowed values in words: "an integer ≥ 1", "a number in [0, 1]", "an existing folder", ..."""
        if self.path:
            text = {"file": "an existing file", "dir": "an existing folder", "file_or_dir": "an existing file or folder",
                    "out_dir": "a folder it can create or write in",
                    "out_file": "a file path whose folder it can create or write in"}[self.path]
            if self.many:
                text = {"file": "existing files", "dir": "existing folders", "file_or_dir": "existing files or folders",
                        "out_dir": "folders it can create or write in",
                        "out_file": "file paths whose folders it can create or write in"}[self.path]
            text += f" ({self.what})" if self.what else ""
        elif self.choices:
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            noun = ("integers" if self.many else "an integer") if self.number is int else \
                ("numbers" if self.many else "a number")
            lo = _fmt(self.min) if self.min is not None else _fmt(self.min_exclusive)
            hi = _fmt(self.max) if self.max is not None else _fmt(self.max_exclusive)
            if lo is not None and hi is not None:
                text = (f"{noun} in {'[' if self.min is not None else '('}{lo}, {hi}"
                        f"{']' if self.max is not None else ')'}")
            elif lo is not None:
                text = f"{noun} {'≥' if self.min is not None else '>'} {lo}"
            elif hi is not None:
                text = f"{noun} {'≤' if self.max is not None else '<'} {hi}"
            else:
                text = noun
            if self.many:
                text = "a list of " + text
        shown = [s for s in self.special if s not in ("",)]
        if shown:
            text += " or " + " or ".join(repr(s) if isinstance(s, str) else _fmt(s) for s in shown)
        return text

    def in_range(self, value: float) -> bool:
        """True where a number satisfies the bounds (NaN never does)."""
        if isinstance(value, float) and math.isnan(value):
            return False
        return not ((self.min is not None and not value >= self.min)
                    or (self.max is not None and not value <= self.max)
                    or (self.min_exclusive is not None and not value > self.min_exclusive)
                    or (self.max_exclusive is not None and not value < self.max_exclusive))


def _fmt(x: float | None) -> str | None:
    if x is None:
        return None
    return str(int(x)) if float(x).is_integer() else repr(x)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(item type, is a list) of a field's hint, without ``| None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            return tp, False
        tp = args[0]
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return (args[0] if args else Any), True
    return tp, False


def declared_by_transformers(cls: type, name: str) -> bool:
    """Whether field ``name`` of ``cls`` is ``transformers``' (a TrainingArguments field no project class redeclares)."""
    for klass in cls.__mro__:
        if name in klass.__dict__.get("__annotations__", {}):
            return klass.__module__.split(".")[0] == "transformers"
    return False


def convention(name: str, base: Any) -> dict | None:
    """The check the naming conventions give option ``name`` of type ``base`` (None: no convention)."""
    if name in NAMED:
        return dict(NAMED[name])
    for pattern, kind, spec in PATTERNS:
        if kind is base and re.search(pattern, name):
            return dict(spec)
    return None


def option_check(cls: type, f: dataclasses.Field, hint: Any) -> OptionCheck | None:
    """The check of one field of ``cls`` (None: nothing to check)."""
    base, many = _unwrap(hint)
    if f.metadata.get("check") is False or base is bool:
        return None
    if declared_by_transformers(cls, f.name):
        spec = dict(HF_FIELDS.get(f.name, {}))
    else:
        spec = convention(f.name, base) or {}
        given = {k: f.metadata[k] for k in _CHECK_KEYS if k in f.metadata}
        if any(k in given for k in _BOUNDS):  # metadata bounds replace the convention's bounds as a whole
            spec = {k: v for k, v in spec.items() if k not in _BOUNDS}
        spec.update(given)  # metadata overrides the convention
    if not spec or not any(spec.get(k) is not None for k in ("path", "min", "max", "min_exclusive", "max_exclusive",
                                                             "choices")):
        return None
    if spec.get("path") is not None and spec["path"] not in PATH_KINDS:
        raise TypeError(f"{cls.__name__}.{f.name}: metadata path must be one of {PATH_KINDS}")
    number = base if base in (int, float) else None
    if spec.get("path") is None and not spec.get("choices") and number is None:
        return None  # bounds on a non-number (a convention that matched a str): nothing to check
    return OptionCheck(name=f.name, path=spec.get("path"), number=number, min=spec.get("min"), max=spec.get("max"),
                       min_exclusive=spec.get("min_exclusive"), max_exclusive=spec.get("max_exclusive"),
                       special=tuple(spec.get("special", ())), choices=tuple(spec.get("choices", ())),
                       what=spec.get("what", ""), many=many)


def option_checks(classes: type | tuple[type, ...]) -> dict[str, OptionCheck]:
    """Option name → its check, for every checked init field of ``classes`` (one CLI's argument classes)."""
    return dict(_option_checks(classes if isinstance(classes, tuple) else (classes,)))


@functools.lru_cache(maxsize=None)
def _option_checks(classes: tuple[type, ...]) -> dict[str, OptionCheck]:
    out = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                check = option_check(cls, f, hints[f.name])
                if check is not None:
                    out[f.name] = check
    return out


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _path_problem(kind: str, path: Path, must_exist: bool = True) -> str | None:
    """Why ``path`` is not a ``kind`` (None: it is). Without ``must_exist`` a missing input passes (what exists must
    still be of the right kind)."""
    if kind in ("file", "dir", "file_or_dir"):
        if not path.exists():
            return f"not found: {path}" if must_exist else None
        if kind == "file" and path.is_dir():
            return f"got a folder: {path}"
        if kind == "dir" and not path.is_dir():
            return f"got a file: {path}"
        return None
    if kind == "out_dir" and path.exists() and not path.is_dir():
        return f"got a file: {path}"
    if kind == "out_file" and path.is_dir():
        return f"got a folder: {path}"
    folder = path if kind == "out_dir" else path.parent
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return f"{existing} is a file, not a folder: {path}"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {existing}: {path}"
    return None


def _problem(check: OptionCheck, value: Any, must_exist: bool) -> tuple[str, Any] | None:
    """(what is wrong, the value to show) for one value (an item of a list), or None."""
    if value is None or value in check.special:
        return None
    if check.path:
        if not isinstance(value, (str, os.PathLike)) or value == "":
            return None
        problem = _path_problem(check.path, Path(value), must_exist=must_exist)
        return None if problem is None else (problem, None)
    if check.choices:
        return None if value in check.choices else (f"got {value!r}", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not check.in_range(value):
        shown = _fmt(value) if isinstance(value, int) or float(value).is_integer() else repr(value)
        return f"got {shown}", None
    return None


def check_options(classes: tuple[type, ...], values: dict[str, Any], *, config_file: str | None = None,
                  from_flags: Iterable[str] = (), must_exist: bool | None = None) -> None:
    """Raise a one-line :class:`UserError` for the first given value its option does not allow. Input paths must
    exist where ``must_exist`` (default: when run by ``run_cli``)."""
    checks = option_checks(classes)
    must_exist = FOR_A_RUN.get() if must_exist is None else must_exist
    from_flags = set(from_flags)
    for name, value in values.items():
        check = checks.get(name)
        if check is None:
            continue
        for item in (value if check.many and isinstance(value, (list, tuple)) else [value]):
            problem = _problem(check, item, must_exist)
            if problem is not None:
                raise UserError(f"--{name} must be {check.allowed}, {problem[0]}",
                                file=None if name in from_flags else config_file)


def check_step_options(classes: type | tuple[type, ...], values: dict[str, Any], step: str) -> None:
    """A driver's options for a later step (YAML values, by option name), each converted to its type and checked
    now, so that a bad one fails before the steps ahead of it run. Its input paths need not exist yet (earlier steps
    make them); unknown names are the driver's to report."""
    from .config import coerce  # config imports this module

    classes = classes if isinstance(classes, tuple) else (classes,)
    hints = {}
    for cls in classes:
        hints.update(typing.get_type_hints(cls))
    where = f"step '{step}'"
    given = {name: coerce(value, hints[name], where=f"in {where}", field=name)
             for name, value in values.items() if name in hints}
    check_options(classes, given, config_file=where, must_exist=False)
