"""Checks on a finished step's ``manifest.json``: have the inputs it recorded changed since?

Bottom-layer plumbing, used by the self-boost driver and the round evaluation.
"""
from __future__ import annotations

from pathlib import Path

from .embedder import weights_fingerprint
from .io import file_sha256


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
