"""Small file helpers shared by every stage: atomic writes and line-numbered JSONL reading."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from .errors import UserError


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    _atomic_write(path, lambda fh: np.save(fh, array))


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line is a UserError naming it."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise UserError("file not found", file=path) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"not valid UTF-8 (byte {exc.start})", file=path, line=lineno) from None
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UserError(f"malformed JSON ({exc.msg}, column {exc.colno})", file=path, line=lineno) from None
            if not isinstance(obj, dict):
                raise UserError(f"expected a JSON object, got {type(obj).__name__}", file=path, line=lineno)
            yield lineno, obj


def require_str(obj: dict, field: str, path: str | os.PathLike, lineno: int, *, allow_empty: bool = True,
                aliases: tuple[str, ...] = ()) -> str:
    """Fetch a string field (or one of its aliases) from a parsed row, or raise naming file/line/field."""
    for name in (field, *aliases):
        if name in obj:
            value = obj[name]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name.endswith("id"):
                value = str(value)  # numeric ids are common in BEIR-like dumps
            if not isinstance(value, str):
                raise UserError(f"expected a string, got {type(value).__name__}", file=path, line=lineno, field=name)
            if not allow_empty and not value.strip():
                raise UserError("is empty", file=path, line=lineno, field=name)
            return value
    raise UserError("missing", file=path, line=lineno, field=field)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()
