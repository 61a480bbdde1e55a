"""The one generator interface every stage and backend shares."""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Sequence

PROMPT_FORMATS = ("chat", "instruction", "raw")
# Base models (reference model_type "llm") are prompted with this wrapper and stopped at "###".
INSTRUCTION_WRAPPER = "###Instruction:\n{prompt}\n###Response:\n"
INSTRUCTION_STOP = "###"
# One decoding default for every local backend and every caller (stages, evaluation, Reinforced_IR_Model): the
# reference's fixed vLLM value. The loops train on generations made with it, so they are measured with it too.
DEFAULT_REPETITION_PENALTY = 1.1


def native_bf16() -> bool:
    """Whether this machine computes bf16 natively: a CUDA device, or a CPU with AVX512-BF16 / AMX (Linux flags).
    There bf16 scoring is several times faster than fp32 (2.7x for SmolLM2 on 2 Zen cores,
    benchmarks/query_likelihood.py); elsewhere it is emulated and slower."""
    import torch

    if torch.cuda.is_available():
        return True
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class GenerationStats:
    """Counts for a stage's closing summary (tokens/s)."""
    prompts: int = 0
    completions: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    cache_hits: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"prompts": self.prompts, "completions": self.completions, "new_tokens": self.new_tokens,
                "seconds": round(self.seconds, 3), "tokens_per_second": round(self.tokens_per_second, 2),
                "cache_hits": self.cache_hits}


# Tokens that end an assistant turn in the chat families we meet (ChatML: SmolLM2, Qwen; Llama-3; Phi-3).
CHAT_TURN_ENDS = ("<|im_end|>", "<|eot_id|>", "<|end|>")


def stop_token_ids(tokenizer, generation_eos=None) -> list[int]:
    """Every id a reply may end with, one rule for every local backend and the query-likelihood scorer: the
    generation config's eos (an id or a list), the tokenizer's eos, and the chat turn terminators its vocabulary
    holds. A Qwen GGUF tokenizer says eos <|endoftext|> while a chat turn ends with <|im_end|>: both stop."""
    ids = set(generation_eos if isinstance(generation_eos, (list, tuple)) else [generation_eos])
    ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in CHAT_TURN_ENDS if token in vocab)
    return sorted(i for i in ids if isinstance(i, int) and i >= 0)


def wrap_instruction(prompt: str) -> str:
    return INSTRUCTION_WRAPPER.format(prompt=prompt)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    for stop in stops:
        pos = text.find(stop)
        if pos >= 0:
            text = text[:pos]
    return text.strip()


def prompt_token_ids(tokenizer, prompt: str, prompt_format: str) -> list[int]:
    """A prompt's input ids, tokenised once: the one BOS rule of every local backend (hf generation and scoring,
    vLLM). Chat: the template alone decides the special tokens (its BOS is
    the only one; the reference stripped a leading token by position instead, docs/design.md §10.14).
    Instruction / plain: the tokenizer's usual special tokens."""
    if prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                            add_generation_prompt=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    text = wrap_instruction(prompt) if prompt_format == "instruction" else prompt
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


class Generator(abc.ABC):
    """``generate(prompts, n, temperature, top_p, max_new_tokens, seed) -> list[list[str]]``.

    One inner list per prompt with ``n`` completions each, stripped. Prompts are plain user-turn texts;
    each backend applies the chat template (``prompt_format="chat"``, instruct models), the
    ``###Instruction`` wrapper (``"instruction"``, base models) or nothing (``"raw"``).
    """

    backend: str = "?"

    def __init__(self, model: str, prompt_format: str = "chat"):
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
        self.model_name = model
        self.prompt_format = prompt_format
        self.stats = GenerationStats()

    @property
    def stop_strings(self) -> list[str]:
        return [INSTRUCTION_STOP] if self.prompt_format == "instruction" else []

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 300, seed: int | None = None) -> list[list[str]]:
        prompts = list(prompts)
        if not prompts:
            return []
        if n < 1:
            raise ValueError("n must be ≥ 1")
        start = time.perf_counter()
        out = self._generate(prompts, n=n, temperature=float(temperature), top_p=float(top_p),
                             max_new_tokens=int(max_new_tokens), seed=seed)
        self.stats.seconds += time.perf_counter() - start
        self.stats.prompts += len(prompts)
        self.stats.completions += sum(len(o) for o in out)
        return out

    @abc.abstractmethod
    def _generate(self, prompts: list[str], *, n: int, temperature: float, top_p: float,
                  max_new_tokens: int, seed: int | None) -> list[list[str]]:
        ...

    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Mean log-probability per token of each continuation right after its formatted prompt (the assistant's
        reply in chat format): one forward pass per pair, nothing generated, nothing to parse. Local backends only
        (an API returns no log-probabilities of given text)."""
        from ..errors import UserError

        raise UserError(f"the {self.backend} backend cannot score given text; use hf or vllm", field="backend")

    def describe(self) -> dict:
        """For manifests: what produced the text (never credentials)."""
        return {"backend": self.backend, "model": self.model_name, "prompt_format": self.prompt_format}
