"""Generator backends behind one interface: ``hf`` (transformers), ``openai`` (any OpenAI-compatible
server) and ``vllm`` (CUDA, or vLLM's CPU build). ``load_generator`` also accepts the reference's ``model_type`` names."""
from __future__ import annotations

import functools
import inspect

from ..errors import UserError
from .base import GenerationStats, Generator

BACKENDS = ("hf", "openai", "vllm")
# Reference model_type → (backend, prompt format). "llm"/"llm_instruct" use vLLM on a GPU, hf otherwise.
MODEL_TYPES = {"gpt": ("openai", "chat"), "llm": (None, "instruction"), "llm_instruct": (None, "chat")}


def default_local_backend() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            import importlib.util

            if importlib.util.find_spec("vllm") is not None:
                return "vllm"
    except ImportError:
        pass
    return "hf"


def backend_class(backend: str) -> type[Generator]:
    if backend == "hf":
        from .hf import HFGenerator

        return HFGenerator
    if backend == "openai":
        from .openai_backend import OpenAIGenerator

        return OpenAIGenerator
    if backend == "vllm":
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator
    raise UserError(f"must be one of {', '.join(BACKENDS)}, got {backend!r}", field="backend")


@functools.lru_cache(maxsize=None)
def _accepted_options(backend: str) -> frozenset[str]:
    return frozenset(inspect.signature(backend_class(backend).__init__).parameters)


def backend_options(backend: str, options: dict) -> dict:
    """The options that ``backend`` takes. Callers pass every backend's options at once (one routing, here): an
    option another backend takes, or None (the backend's default), is left out; a name no backend knows is kept,
    so a typo still fails loudly."""
    own, known = _accepted_options(backend), frozenset().union(*map(_accepted_options, BACKENDS))
    return {k: v for k, v in options.items() if v is not None and (k in own or k not in known)}


def load_generator(model: str, backend: str | None = None, model_type: str | None = None,
                   prompt_format: str | None = None, **options) -> Generator:
    """Build a generator. ``backend`` wins over ``model_type``; each backend gets its own ``options``."""
    fmt = prompt_format
    if model_type is not None:
        if model_type not in MODEL_TYPES:
            raise UserError(f"must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}", field="model_type")
        mt_backend, mt_format = MODEL_TYPES[model_type]
        backend = backend or mt_backend
        fmt = fmt or mt_format
    backend = backend or default_local_backend()
    cls = backend_class(backend)
    return cls(model, prompt_format=fmt or "chat", **backend_options(backend, options))


__all__ = ["BACKENDS", "backend_options", "GenerationStats", "Generator", "MODEL_TYPES", "load_generator"]
