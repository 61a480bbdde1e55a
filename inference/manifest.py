"""One manifest module: every stage, both trainers, round evaluation and the driver write, read and check their
``manifest.json`` here.

A manifest records what a step was run with (``parameters``), what it read (``inputs``: files by content hash,
model folders by weights fingerprint), its status (``running`` | ``complete``), counts and package versions. A step
is complete for a caller only when its status says so, its parameters and inputs are the caller's, and no recorded
input file or model changed since. Bottom-layer plumbing: it imports nothing above ``inference``.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from .embedder import weights_fingerprint
from .errors import UserError
from .io import atomic_write_json, file_sha256

MANIFEST = "manifest.json"
VERSIONED_PACKAGES = ("torch", "transformers", "faiss-cpu", "numpy", "pytrec-eval-terrier", "bm25s", "PyStemmer",
                      "openai", "vllm", "llamafactory", "peft")


# Options that may change between a run and its resumption without changing what it computes (caches are keyed by
# content; the others say how to fetch or whether to redo): not recorded, never compared.
RESUMABLE_PARAMETERS = frozenset({"overwrite", "generation_cache", "embedding_cache", "api_key_file",
                                  "request_timeout", "max_attempts", "max_fallback_share"})


def run_parameters(options: dict) -> dict:
    """A step's parameters for its manifest: its options but the resumable ones."""
    return {k: v for k, v in options.items() if k not in RESUMABLE_PARAMETERS}


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def input_record(path: str | os.PathLike) -> dict:
    path = Path(path)
    return {"path": str(path), "sha256": file_sha256(path)}


def read_manifest(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError("manifest is not valid JSON", file=path) from None


def write_manifest(directory: str | os.PathLike, stage: str, status: str, **fields) -> dict:
    """``{stage, status, **fields, versions}`` written atomically (a reader never sees half a manifest)."""
    manifest = {"stage": stage, "status": status, **fields, "versions": package_versions()}
    atomic_write_json(Path(directory) / MANIFEST, manifest)
    return manifest


def changed_inputs(manifest: dict) -> list[str]:
    """Recorded inputs that changed: files by content hash (``{path: sha}`` or ``{name: {path, sha256}}``), model
    folders by weights fingerprint (``{name: {path, weights}}``)."""
    changed = []
    for key, record in (manifest.get("inputs") or {}).items():
        if isinstance(record, str):
            record = {"path": key, "sha256": record}
        if not isinstance(record, dict) or "path" not in record:
            continue
        path = Path(record["path"])
        if "sha256" in record and (not path.is_file() or file_sha256(path) != record["sha256"]):
            changed.append(str(path))
        elif "weights" in record and weights_fingerprint(path) != record["weights"]:
            changed.append(str(path))
    return changed


def canonical_parameters(recorded: dict) -> dict:
    """Recorded parameters under their option's one name: a run recorded before a rename (``dataset_path``, now
    ``dataset``) is compared by value, not counted as changed (:data:`inference.config.SHARED_ALIASES`)."""
    from .config import SHARED_ALIASES

    renamed = {alias: name for name, aliases in SHARED_ALIASES.items() for alias in aliases}
    return {(renamed[k] if k in renamed and renamed[k] not in recorded else k): v for k, v in recorded.items()}


def _differing(now: dict, recorded: dict) -> list[str]:
    recorded = canonical_parameters(recorded)
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))


def manifest_changes(manifest: dict, parameters: dict | None = None, inputs: dict | None = None) -> list[str]:
    """What differs between a recorded run and the caller's: ``parameters (names)``, ``inputs (names)`` and
    ``input <path>`` for each recorded file or model that changed on disk. Empty: the same run."""
    changes = []
    if parameters is not None and (names := _differing(parameters, manifest.get("parameters") or {})):
        changes.append(f"parameters ({', '.join(names)})")
    if inputs is not None:
        recorded = manifest.get("inputs") or {}
        if names := sorted(k for k in inputs if inputs[k] != recorded.get(k)):
            changes.append(f"inputs ({', '.join(names)})")
    return changes + [f"input {p}" for p in changed_inputs(manifest)]


def is_complete(directory: str | os.PathLike, parameters: dict | None = None, inputs: dict | None = None) -> bool:
    """The step in ``directory`` finished, with these parameters and inputs (when given), and nothing it read has
    changed since."""
    manifest = read_manifest(directory)
    return manifest is not None and manifest.get("status") == "complete" and \
        not manifest_changes(manifest, parameters, inputs)
