"""vLLM backend (GPU only). vllm is imported lazily and each model is loaded once per process."""
from __future__ import annotations

import logging

from ..errors import UserError
from ..resolver import resolve_model_path
from .base import DEFAULT_REPETITION_PENALTY, Generator, cut_at_stop, wrap_instruction

logger = logging.getLogger(__name__)

_ENGINES: dict[tuple, object] = {}


def _engine(path: str, tensor_parallel_size: int | None, gpu_memory_utilization: float, max_model_len: int | None,
            enable_lora: bool, seed: int):
    key = (path, tensor_parallel_size, gpu_memory_utilization, max_model_len, enable_lora)
    if key not in _ENGINES:
        try:
            import torch
            from vllm import LLM
        except ImportError:
            raise UserError("the vllm backend needs `pip install -r requirements-gpu.txt` on a CUDA machine",
                            field="backend") from None
        tp = tensor_parallel_size or max(1, torch.cuda.device_count())
        _ENGINES[key] = LLM(model=path, tensor_parallel_size=tp, gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=max_model_len, enable_lora=enable_lora, seed=seed)
    return _ENGINES[key]


def prompt_token_ids(tokenizer, prompt: str, prompt_format: str) -> list[int]:
    """The engine's input ids, tokenised once. Chat: the template alone decides the special tokens (its BOS is
    the only one; the reference stripped a leading token by position instead, bug 14). Instruction / plain:
    the tokenizer's usual special tokens."""
    if prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                            add_generation_prompt=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    text = wrap_instruction(prompt) if prompt_format == "instruction" else prompt
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


class VLLMGenerator(Generator):
    backend = "vllm"

    def __init__(self, model: str, prompt_format: str = "chat", tensor_parallel_size: int | None = None,
                 gpu_memory_utilization: float = 0.8, max_model_len: int | None = None,
                 repetition_penalty: float = DEFAULT_REPETITION_PENALTY, enable_lora: bool = False, seed: int = 0):
        super().__init__(model, prompt_format)
        self.path = resolve_model_path(model)
        self.repetition_penalty = repetition_penalty
        self.llm = _engine(self.path, tensor_parallel_size, gpu_memory_utilization, max_model_len, enable_lora,
                           seed)
        self.tokenizer = self.llm.get_tokenizer()

    def format_prompt(self, prompt: str) -> list[int]:
        return prompt_token_ids(self.tokenizer, prompt, self.prompt_format)

    def _generate(self, prompts: list[str], *, n: int, temperature: float, top_p: float,
                  max_new_tokens: int, seed: int | None) -> list[list[str]]:
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                max_tokens=max_new_tokens, seed=seed, repetition_penalty=self.repetition_penalty,
                                stop=list(self.stop_strings))  # a fresh list per call (bug 14)
        # Token ids, not text: vLLM would tokenise rendered text again with special tokens, and a chat template
        # that writes its own BOS (Llama-3) would then start with two.
        token_prompts = [{"prompt_token_ids": self.format_prompt(p)} for p in prompts]
        outputs = self.llm.generate(token_prompts, params, use_tqdm=True)
        results = []
        for out in outputs:
            self.stats.new_tokens += sum(len(c.token_ids) for c in out.outputs)
            results.append([cut_at_stop(c.text, self.stop_strings) for c in out.outputs])  # all n samples
        return results
