"""Typed dataclass arguments from a YAML config plus command-line flags (flags win).

Every CLI declares one ``@dataclass`` of arguments (Tevatron style) and calls
:func:`parse_args`. Unlike argparse's ``type=bool`` (reference bug 13), booleans accept only
true/false/yes/no/1/0 (a bare ``--flag`` means true), and a YAML key or flag that is not a field is an error naming the file and
key: a typo is never ignored silently. Each option has one name; a field's ``aliases`` metadata accepts other
spellings users know (the reference's, or an earlier release's) as flags and YAML keys.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")

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


def parse_args(cls: type[T], argv: Sequence[str], *, prog: str | None = None,
               description: str | None = None) -> T:
    """Build ``cls`` from ``--config FILE`` (optional) and ``--field value`` flags."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # one name per option; ``aliases`` in a field's metadata keeps older or the reference's names working
    aliases = {alias: name for name, f in fields.items() for alias in f.metadata.get("aliases", ())}

    parser = argparse.ArgumentParser(prog=prog, description=description or (cls.__doc__ or "").strip())
    parser.add_argument("--config", help="YAML file of option: value (flags given here override it)")
    for name, f in fields.items():
        help_text = f.metadata.get("help", "")
        default = None if f.default is dataclasses.MISSING else f.default
        base, _ = _unwrap_optional(hints[name])
        # a bare boolean flag (``--emit_commands``) means true; an explicit value is still checked strictly
        extra = {"nargs": "?", "const": "true"} if base is bool else {}
        flags = [f"--{name}", *(f"--{alias}" for alias in f.metadata.get("aliases", ()))]
        parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS,
                            help=f"{help_text} (default: {default!r})", **extra)
    namespace, unknown = parser.parse_known_args(list(argv))
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        raise UserError(f"unknown option {flag!r} (see --help)")

    values: dict[str, Any] = {}
    config_path = getattr(namespace, "config", None)
    if config_path:
        for key, value in load_yaml_config(config_path).items():
            key = aliases.get(key, key)
            if key in values:
                raise UserError("given twice (under its name and an alias)", file=config_path, field=str(key))
            if key not in fields:
                close = [n for n in fields if n.replace("_", "") == str(key).replace("_", "").lower()]
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise UserError(f"unknown option{hint}", file=config_path, field=str(key))
            values[key] = coerce(value, hints[key], where="in config", field=key, file=config_path)
    for name in fields:
        if hasattr(namespace, name):
            values[name] = coerce(getattr(namespace, name), hints[name], where="on the command line", field=name)
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"required option(s) missing: {', '.join('--' + m for m in missing)}")
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def asdict_public(obj: Any) -> dict:
    """Dataclass → dict for manifests, dropping fields marked ``secret`` in their metadata."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("secret"):
            continue
        out[f.name] = getattr(obj, f.name)
    return out
