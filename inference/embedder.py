"""Dense text embedder over any Hugging Face encoder or decoder model.

Pooling ``cls | mean | last``, optional query/passage instructions, L2 normalisation, fp16/bf16 on GPU,
length-sorted batches (less padding), ``max_length`` truncation, and data-parallel encoding over several
GPUs (one replica per device, each fed its share of batches from a thread; CUDA kernels release the GIL).

For a sentence-transformers folder, pooling, normalisation and ``max_seq_length`` default to what the
folder declares (``modules.json``, ``1_Pooling``, ``sentence_bert_config.json``), so published figures
reproduce without hand-set options.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import UserError
from .resolver import resolve_model_path

logger = logging.getLogger(__name__)

POOLING_METHODS = ("cls", "mean", "last")


@dataclass
class EmbedderConfig:
    model_name_or_path: str
    pooling_method: str | None = None          # None: from sentence-transformers config, else "cls"
    normalize: bool | None = None              # None: from sentence-transformers config, else True
    query_instruction: str | None = None       # prepended to queries through instruction_format
    passage_instruction: str | None = None
    instruction_format: str = "{}{}"
    max_length: int | None = None              # None: sentence-transformers max_seq_length, else ≤ 512
    query_max_length: int | None = None        # None: same as max_length
    batch_size: int = 64
    devices: list[str] | None = None           # e.g. ["cuda:0", "cuda:1"]; None: first GPU or CPU
    dtype: str = "auto"                        # auto (fp16 on GPU, fp32 on CPU) | fp32 | fp16 | bf16
    trust_remote_code: bool = False
    show_progress: bool = True

    def validate(self) -> None:
        if self.pooling_method is not None and self.pooling_method not in POOLING_METHODS:
            raise UserError(f"must be one of {', '.join(POOLING_METHODS)}, got {self.pooling_method!r}",
                            field="pooling_method")
        if self.dtype not in ("auto", "fp32", "fp16", "bf16"):
            raise UserError(f"must be auto, fp32, fp16 or bf16, got {self.dtype!r}", field="dtype")


def sentence_transformers_defaults(path: Path, read_pooling: bool = True) -> dict:
    """Read pooling / normalize / max_seq_length from a sentence-transformers folder, if it is one (pooling only when
    ``read_pooling``: a caller that names its pooling is not stopped by a mode we do not implement)."""
    out: dict = {}
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return out
    modules = json.loads(modules_file.read_text())
    out["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    for module in modules:
        if read_pooling and module.get("type", "").endswith("Pooling"):
            cfg_file = path / module.get("path", "") / "config.json"
            if cfg_file.is_file():
                out["pooling_method"] = pooling_from_config(json.loads(cfg_file.read_text()), cfg_file)
    st_cfg = path / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = json.loads(st_cfg.read_text()).get("max_seq_length")
        if max_len:
            out["max_length"] = int(max_len)
    return out


# Our pooling methods and how a sentence-transformers Pooling config names each: from v6 one string key
# (pooling_mode: "mean"), up to v5 one bool key per mode (pooling_mode_mean_tokens: true). Read here, written by
# the retriever trainer (finetune/retriever/modeling.py) in the v5 form, which both versions load.
ST_POOLING = {"mean": ("mean", "pooling_mode_mean_tokens"), "cls": ("cls", "pooling_mode_cls_token"),
              "last": ("lasttoken", "pooling_mode_lasttoken")}


def pooling_from_config(cfg: dict, cfg_file: Path) -> str:
    """Our pooling method for a sentence-transformers Pooling config, either format; a mode we do not implement
    stops with a clear error rather than falling back to another pooling (which would give other vectors)."""
    named = cfg.get("pooling_mode")
    if named is None:  # every mode switched on counts: two of them would be concatenated vectors
        st_name = {legacy_key: st for st, legacy_key in ST_POOLING.values()}
        named = [st_name.get(key, key) for key, on in cfg.items() if key.startswith("pooling_mode_") and on is True]
    modes = [named] if isinstance(named, str) else list(named)
    ours = [method for method, (st, _) in ST_POOLING.items() if modes == [st]]
    if not ours:
        supported = ", ".join(st for st, _ in ST_POOLING.values())
        raise UserError(f"pooling {modes or 'none'} is not supported (supported: one of {supported}); pass "
                        "--pooling_method to override", file=cfg_file, field="pooling_mode")
    return ours[0]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, method: str) -> torch.Tensor:
    """Pool token states [B, T, H] into [B, H]."""
    if method == "cls":
        return hidden[:, 0]
    if method == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if method == "last":
        # Left padding: the last column is real for every row. Right padding: index each row's last token.
        if bool(attention_mask[:, -1].all()):
            return hidden[:, -1]
        last = attention_mask.sum(1) - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    raise ValueError(f"unknown pooling method {method!r}")


def document_text(doc: str | dict) -> str:
    """BEIR convention: ``title + " " + text`` when there is a title."""
    if isinstance(doc, str):
        return doc
    title = (doc.get("title") or "").strip()
    text = doc.get("text") or ""
    return f"{title} {text}" if title else text


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def weights_fingerprint(path: str | os.PathLike) -> str | None:
    """Cheap content key of a model folder's weight files: name, size, mtime and the safetensors header.

    A retriever retrained into the same folder gets a new key, so caches keyed by it are never stale
    (the folder's path alone does not change). ``None`` for a hub name that is not a local folder."""
    local = Path(path)
    if not local.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in local.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(local)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        if file.suffix == ".safetensors":
            with open(file, "rb") as fh:
                header_len = int.from_bytes(fh.read(8), "little")
                digest.update(fh.read(min(header_len, 1 << 24)))
    return digest.hexdigest()[:16]


class Embedder:
    """Encode queries and documents into float32 numpy arrays."""

    def __init__(self, model_name_or_path: str | EmbedderConfig | None = None, **kwargs):
        if isinstance(model_name_or_path, EmbedderConfig):
            config = model_name_or_path
        else:
            config = EmbedderConfig(model_name_or_path=str(model_name_or_path), **kwargs)
        config.validate()
        self.config = config
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_model_path(config.model_name_or_path)
        self.weights = weights_fingerprint(self.path)
        local = Path(self.path)
        st_defaults = sentence_transformers_defaults(local, config.pooling_method is None) if local.is_dir() else {}
        self.pooling_method = config.pooling_method or st_defaults.get("pooling_method", "cls")
        self.normalize = config.normalize if config.normalize is not None else st_defaults.get("normalize", True)

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=config.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load tokenizer: {str(exc).splitlines()[0]}",
                            field=f"model {config.model_name_or_path}") from None
        if self.pooling_method == "last":
            # Decoder embedders pool the final token; left padding keeps it in the last column.
            self.tokenizer.padding_side = "left"
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        model_max = getattr(self.tokenizer, "model_max_length", 512) or 512
        self.max_length = config.max_length or st_defaults.get("max_length") or min(int(model_max), 512)
        self.query_max_length = config.query_max_length or self.max_length

        self.devices = self._pick_devices(config.devices)
        dtype = self._pick_dtype(config.dtype, self.devices[0])
        try:
            base = AutoModel.from_pretrained(self.path, dtype=dtype, trust_remote_code=config.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load model: {str(exc).splitlines()[0]}",
                            field=f"model {config.model_name_or_path}") from None
        base.eval()
        self.models = [base.to(self.devices[0])]
        for device in self.devices[1:]:
            import copy

            self.models.append(copy.deepcopy(base).to(device))
        logger.info("embedder %s: pooling=%s normalize=%s max_length=%d devices=%s dtype=%s",
                    config.model_name_or_path, self.pooling_method, self.normalize, self.max_length,
                    ",".join(self.devices), str(dtype).replace("torch.", ""))

    # ------------------------------------------------------------------ set-up helpers
    @staticmethod
    def _pick_devices(devices: Sequence[str] | str | None) -> list[str]:
        if isinstance(devices, str):
            devices = [d.strip() for d in devices.split(",") if d.strip()]
        if devices:
            return list(devices)
        return ["cuda:0"] if torch.cuda.is_available() else ["cpu"]

    @staticmethod
    def _pick_dtype(name: str, device: str) -> torch.dtype:
        if name == "fp16":
            return torch.float16
        if name == "bf16":
            return torch.bfloat16
        if name == "auto" and device.startswith("cuda"):
            return torch.float16
        return torch.float32

    @property
    def dim(self) -> int:
        return int(self.models[0].config.hidden_size)

    @property
    def identity(self) -> dict:
        """What determines the vectors: used to key embedding caches."""
        return {"model": self.config.model_name_or_path, "weights": self.weights, "pooling": self.pooling_method,
                "normalize": bool(self.normalize), "max_length": self.max_length,
                "query_instruction": self.config.query_instruction,
                "passage_instruction": self.config.passage_instruction,
                "instruction_format": self.config.instruction_format}

    # ------------------------------------------------------------------ public API
    def encode_queries(self, queries: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return self.encode(queries, instruction=self.config.query_instruction,
                           max_length=self.query_max_length, batch_size=batch_size, desc="encode queries")

    def encode_corpus(self, corpus: Sequence[str | dict], batch_size: int | None = None) -> np.ndarray:
        texts = [document_text(d) for d in corpus]
        return self.encode(texts, instruction=self.config.passage_instruction,
                           max_length=self.max_length, batch_size=batch_size, desc="encode corpus")

    def encode(self, texts: Sequence[str], instruction: str | None = None, max_length: int | None = None,
               batch_size: int | None = None, desc: str = "encode") -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if instruction:
            texts = [self.config.instruction_format.format(instruction, t) for t in texts]
        max_length = max_length or self.max_length
        batch_size = batch_size or self.config.batch_size
        # Sort by token count (not characters, as sentence-transformers does): equal-length batches pad least.
        lengths = self._token_lengths(texts, max_length)
        order = np.argsort(-lengths, kind="stable")
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        progress = tqdm(total=len(texts), desc=desc, unit="text", disable=not self.config.show_progress,
                        leave=False)

        def run(replica: int) -> None:
            model, device = self.models[replica], self.devices[replica]
            for b in range(replica, len(batches), len(self.models)):
                idx = batches[b]
                out[idx] = self._encode_batch(model, device, [texts[i] for i in idx], max_length)
                progress.update(len(idx))

        try:
            if len(self.models) == 1:
                run(0)
            else:
                with ThreadPoolExecutor(len(self.models)) as pool_:
                    list(pool_.map(run, range(len(self.models))))
        finally:
            progress.close()
        return out

    # ------------------------------------------------------------------ internals
    def _token_lengths(self, texts: list[str], max_length: int) -> np.ndarray:
        # Character length is a cheap, monotone-enough proxy for long inputs; count tokens exactly
        # (fast tokenizer, no padding) for the usual corpus sizes.
        if len(texts) > 200_000:
            return np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        enc = self.tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True,
                             return_attention_mask=False, return_token_type_ids=False)
        return np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))

    @torch.inference_mode()
    def _encode_batch(self, model, device: str, texts: list[str], max_length: int) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = model(**batch).last_hidden_state
        emb = pool(hidden, batch["attention_mask"], self.pooling_method).float()
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
        return emb.cpu().numpy()
