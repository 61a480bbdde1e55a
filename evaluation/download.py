"""Find a BEIR dataset locally, or download it once into the user cache.

Order: an explicit folder; the shared development copy beside the checkout (``../shared/data/<name>``);
the cache (``$RIR_CACHE_DIR/data/<name>``); else download the public BEIR zip into the cache (atomic:
unpacked into a temp folder, then renamed).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from inference.errors import UserError
from inference.resolver import cache_root

logger = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_copy(name: str) -> Path:
    return REPO_ROOT.parent / "shared" / "data" / name


def ensure_beir_dataset(name: str, explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise UserError("dataset folder not found", file=path)
        return path
    for candidate in (shared_copy(name), cache_root() / "data" / name):
        if (candidate / "corpus.jsonl").is_file():
            return candidate
    target = cache_root() / "data" / name
    url = BEIR_URL.format(name=name)
    logger.info("downloading %s once into %s", url, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        archive = tmp / f"{name}.zip"
        try:
            urllib.request.urlretrieve(url, archive)
        except OSError as exc:
            raise UserError(f"could not download {url} ({exc}); pass DATA=/path/to/{name}") from None
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        unpacked = tmp / name
        if not (unpacked / "corpus.jsonl").is_file():
            raise UserError(f"downloaded archive has no {name}/corpus.jsonl", file=archive)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
