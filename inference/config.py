"""Typed dataclass arguments from a YAML config plus command-line flags (flags win).

Every CLI declares one ``@dataclass`` of arguments (Tevatron style) and calls
:func:`parse_args`. Unlike argparse's ``type=bool`` (docs/design.md §10.13), booleans accept only
true/false/yes/no/1/0 (a bare ``--flag`` means true), and a YAML key or flag that is not a field is an error naming the file and
key: a typo is never ignored silently. Each option has one name, the same in every CLI; other spellings users
know (the reference's, the HF trainers', an earlier release's) are accepted as flags and YAML keys, each use noted
on stderr: :data:`SHARED_ALIASES` for a concept's old names wherever its field is declared, a field's ``aliases``
metadata for one CLI's. An option that several
CLIs share is declared once, as a small dataclass they inherit (:class:`EmbeddingCacheArguments`).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from .errors import UserError
from .option_checks import check_options

T = TypeVar("T")

# A concept's one name → its other spellings, accepted by every CLI that declares a field of that name.
SHARED_ALIASES: dict[str, tuple[str, ...]] = {
    "max_new_tokens": ("max_tokens",),                                  # the reference's Python API, OpenAI's
    "query_instruction": ("query_instruction_for_retrieval",),          # the reference's / FlagEmbedding's
    "passage_instruction": ("passage_instruction_for_retrieval",),
    "dataset": ("dataset_path",),                                       # the stages' and the driver's, before
    "fusion": ("hybrid_fusion",),                                       # round evaluation's, before
    "fusion_weight": ("hybrid_weight",),                                # stage E's and the dev ablations', before
}

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def coerce(value: Any, tp: Any, *, where: str, field: str, file: str | None = None) -> Any:
    """Convert a YAML or command-line value to the field's declared type."""
    base, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null"}):
        if optional or base is Any:
            return None
        raise UserError(f"may not be empty ({where})", file=file, field=field)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected true/false, got {value!r}")
        if base in (int, float):
            if isinstance(value, bool):
                raise ValueError(f"expected {base.__name__}, got a boolean")
            if base is int:
                number = float(value)  # accepts "3", 3, 3.0; rejects "1.5"
                if not number.is_integer():
                    raise ValueError(f"expected an integer, got {value!r}")
                return int(number)
            return float(value)
        if base is str:
            if isinstance(value, (dict, list)):
                raise ValueError(f"expected a string, got {type(value).__name__}")
            return str(value)
        origin = typing.get_origin(base)
        if origin in (list, tuple) or base in (list, tuple):
            (item_tp,) = typing.get_args(base)[:1] or (Any,)
            if isinstance(value, str):
                value = [v for v in (s.strip() for s in value.split(",")) if v]
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"expected a list, got {type(value).__name__}")
            items = [coerce(v, item_tp, where=where, field=field, file=file) for v in value]
            return items if origin is not tuple else tuple(items)
        if origin is dict or base is dict:
            if not isinstance(value, dict):
                raise ValueError(f"expected a mapping, got {type(value).__name__}")
            return value
        if origin is typing.Literal:
            choices = typing.get_args(base)
            if value not in choices:
                raise ValueError(f"expected one of {', '.join(map(str, choices))}, got {value!r}")
            return value
    except ValueError as exc:
        message = str(exc)
        if message.startswith(("could not convert", "invalid literal")):
            message = f"expected a {getattr(base, '__name__', base)}, got {value!r}"
        raise UserError(f"{message} ({where})", file=file, field=field) from None
    return value


def load_yaml_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", file=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"malformed YAML ({getattr(exc, 'problem', exc)})", file=path,
                        line=None if mark is None else mark.line + 1) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("a config must be a mapping of option: value", file=path)
    return data


def _option_fields(classes: tuple[type, ...]) -> tuple[dict, dict, dict]:
    """Every init field of ``classes`` by name (one namespace: a name in two classes is a programming error),
    its type hint and its owning class."""
    fields, hints, owner = {}, {}, {}
    for cls in classes:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls} is not a dataclass")
        cls_hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name in owner:
                raise TypeError(f"option {f.name!r} is declared by both {owner[f.name].__name__} and {cls.__name__}")
            fields[f.name], hints[f.name], owner[f.name] = f, cls_hints[f.name], cls
    return fields, hints, owner


def field_aliases(name: str, f: dataclasses.Field) -> tuple[str, ...]:
    """The other spellings option ``name`` accepts: its concept's shared ones, then the field's own."""
    return (*SHARED_ALIASES.get(name, ()), *f.metadata.get("aliases", ()))


def option_aliases(classes: tuple[type, ...]) -> dict[str, str]:
    """alias → option name, over every init field of ``classes``."""
    fields, _, _ = _option_fields(classes)
    return {alias: name for name, f in fields.items() for alias in field_aliases(name, f)}


def note_alias(alias: str, name: str, where: str | None = None) -> None:
    """The one line that says an alias was used (it still works; the option's name is ``name``)."""
    print(f"note: --{alias} is an alias of --{name}" + (f" ({where})" if where else ""), file=sys.stderr)


def canonical_options(values: dict, aliases: dict[str, str], where: str) -> dict:
    """``values`` with alias keys renamed to their option's name (each noted); a key given under both is an error."""
    out: dict = {}
    for key, value in values.items():
        name = aliases.get(key, key)
        if name in out:
            raise UserError("given twice (under its name and an alias)", field=f"{where}.{name}")
        if name != key:
            note_alias(key, name, where)
        out[name] = value
    return out


def _read_config(config_path: str, fields: dict, hints: dict, aliases: dict) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in load_yaml_config(config_path).items():
        if key in aliases:
            note_alias(key, aliases[key], f"in {config_path}")
        key = aliases.get(key, key)
        if key in values:
            raise UserError("given twice (under its name and an alias)", file=config_path, field=str(key))
        if key not in fields:
            close = difflib.get_close_matches(str(key).lower(), list(fields), n=1, cutoff=0.8)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UserError(f"unknown option{hint}", file=config_path, field=str(key))
        values[key] = coerce(value, hints[key], where="in config", field=key, file=config_path)
    return values


def parse_args(cls: type[T] | tuple[type, ...], argv: Sequence[str], *, prog: str | None = None,
               description: str | None = None) -> Any:
    """Build ``cls`` from ``--config FILE`` (optional) and ``--field value`` flags. Given a tuple of dataclasses
    (a trainer's model / data / training arguments), one namespace of options fills each and a tuple returns."""
    classes = cls if isinstance(cls, tuple) else (cls,)
    fields, hints, owner = _option_fields(classes)
    # one name per option; its aliases (shared by concept, or the field's own) keep other known names working
    aliases = option_aliases(classes)

    parser = argparse.ArgumentParser(prog=prog, description=description or (classes[0].__doc__ or "").strip())
    parser.add_argument("--config", help="YAML file of option: value (flags given here override it)")
    for name, f in fields.items():
        help_text = f.metadata.get("help", "")
        default = None if f.default is dataclasses.MISSING else f.default
        base, _ = _unwrap_optional(hints[name])
        # a bare boolean flag (``--emit_commands``) means true; an explicit value is still checked strictly
        extra = {"nargs": "?", "const": "true"} if base is bool else {}
        parser.add_argument(f"--{name}", dest=name, default=argparse.SUPPRESS,
                            help=f"{help_text} (default: {default!r})".replace("%", "%%"), **extra)
        for alias in field_aliases(name, f):  # its own dest: a use is noted, and one given with its name refused
            parser.add_argument(f"--{alias}", dest=f"alias:{alias}", default=argparse.SUPPRESS, metavar=name.upper(),
                                help=f"alias of --{name}", **extra)
    namespace, unknown = parser.parse_known_args(list(argv))
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        raise UserError(f"unknown option {flag!r} (see --help)")
    for alias, name in aliases.items():
        if hasattr(namespace, f"alias:{alias}"):
            if hasattr(namespace, name):
                raise UserError(f"given twice (as --{name} and its alias --{alias})", field=name)
            note_alias(alias, name)
            setattr(namespace, name, getattr(namespace, f"alias:{alias}"))

    config_path = getattr(namespace, "config", None)
    values = _read_config(config_path, fields, hints, aliases) if config_path else {}
    for name in fields:
        if hasattr(namespace, name):
            values[name] = coerce(getattr(namespace, name), hints[name], where="on the command line", field=name)
    # every given path and number checked against its option's meaning before any work (inference.option_checks)
    check_options(classes, values, config_file=config_path, from_flags=[n for n in values if hasattr(namespace, n)])
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"required option(s) missing: {', '.join('--' + m for m in missing)}")
    objs = tuple(c(**{n: v for n, v in values.items() if owner[n] is c}) for c in classes)
    for obj in objs:
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    return objs if isinstance(cls, tuple) else objs[0]


def asdict_public(obj: Any) -> dict:
    """Dataclass → dict for manifests, dropping fields marked ``secret`` in their metadata."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("secret"):
            continue
        out[f.name] = getattr(obj, f.name)
    return out


@dataclasses.dataclass
class EmbeddingCacheArguments:
    """The one ``--embedding_cache`` option of every CLI that encodes a corpus: one declaration, one default.
    Inherit it; ``kw_only`` lets classes whose own fields have no default inherit it too."""
    embedding_cache: str | None = dataclasses.field(default="auto", kw_only=True, metadata={
        "help": "corpus vectors and BM25 indexes, keyed by content (model weights, corpus texts): a folder, 'auto' "
                "(RIR_CACHE_DIR or ~/.cache/reinforced-ir, /embeddings) or none"})

    @property
    def embedding_cache_dir(self) -> Path | None:
        """The option resolved: 'auto' → the user cache, 'none' or empty → no cache, else the folder."""
        from .resolver import cache_root

        value = self.embedding_cache
        if not value or value.lower() == "none":
            return None
        return cache_root() / "embeddings" if value == "auto" else Path(value)
