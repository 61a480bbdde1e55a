"""Generator backends behind one interface: ``hf`` (transformers), ``openai`` (any OpenAI-compatible
server) and ``vllm`` (GPU). ``load_generator`` also accepts the reference's ``model_type`` names."""
from __future__ import annotations

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


def load_generator(model: str, backend: str | None = None, model_type: str | None = None,
                   prompt_format: str | None = None, **kwargs) -> Generator:
    """Build a generator. ``backend`` wins over ``model_type``; unknown kwargs go to the backend."""
    fmt = prompt_format
    if model_type is not None:
        if model_type not in MODEL_TYPES:
            raise UserError(f"must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}", field="model_type")
        mt_backend, mt_format = MODEL_TYPES[model_type]
        backend = backend or mt_backend
        fmt = fmt or mt_format
    backend = backend or default_local_backend()
    fmt = fmt or "chat"
    if backend == "hf":
        from .hf import HFGenerator

        return HFGenerator(model, prompt_format=fmt, **kwargs)
    if backend == "openai":
        from .openai_backend import OpenAIGenerator

        return OpenAIGenerator(model, prompt_format=fmt, **kwargs)
    if backend == "vllm":
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator(model, prompt_format=fmt, **kwargs)
    raise UserError(f"must be one of {', '.join(BACKENDS)}, got {backend!r}", field="backend")


__all__ = ["BACKENDS", "GenerationStats", "Generator", "MODEL_TYPES", "load_generator"]
