"""transformers backend: batched generation with left padding and chat templates (CPU or one GPU)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..resolver import resolve_model_path
from .base import (DEFAULT_REPETITION_PENALTY, Generator, cut_at_stop, prompt_token_ids, stop_token_ids,
                   wrap_instruction)

logger = logging.getLogger(__name__)


class HFGenerator(Generator):
    backend = "hf"

    def __init__(self, model: str, prompt_format: str = "chat", batch_size: int = 32, device: str | None = None,
                 dtype: str = "auto", repetition_penalty: float = DEFAULT_REPETITION_PENALTY,
                 max_prompt_tokens: int | None = None,
                 show_progress: bool = True, trust_remote_code: bool = False):
        super().__init__(model, prompt_format)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = resolve_model_path(model)
        self.batch_size = batch_size
        self.repetition_penalty = repetition_penalty
        self.show_progress = show_progress
        self.device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch_dtype,
                                                              trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load generator: {str(exc).splitlines()[0]}", field=f"model {model}") from None
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = self._eos_ids()
        limit = getattr(self.model.config, "max_position_embeddings", None) or 4096
        self.max_prompt_tokens = max_prompt_tokens or limit

    def _eos_ids(self) -> list[int]:
        return stop_token_ids(self.tokenizer, self.model.generation_config.eos_token_id)

    def format_prompt(self, prompt: str) -> str:
        if self.prompt_format == "chat" and self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        if self.prompt_format == "instruction":
            return wrap_instruction(prompt)
        return prompt

    def _generate(self, prompts: list[str], *, n: int, temperature: float, top_p: float,
                  max_new_tokens: int, seed: int | None) -> list[list[str]]:
        # The vLLM backend's ids exactly: a chat template's own BOS is the only one.
        encoded = [prompt_token_ids(self.tokenizer, p, self.prompt_format) for p in prompts]
        too_long = [i for i, ids in enumerate(encoded) if len(ids) > self.max_prompt_tokens]
        if too_long:
            logger.warning("%d prompt(s) exceed %d tokens and are cut from the left", len(too_long),
                           self.max_prompt_tokens)
            for i in too_long:
                encoded[i] = encoded[i][-self.max_prompt_tokens:]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results: list[list[str]] = [[] for _ in prompts]
        do_sample = temperature > 0
        # Prompts per batch shrink with n so that rows per forward pass stay ~batch_size.
        per_batch = max(1, self.batch_size // n) if do_sample else self.batch_size
        if seed is not None:
            torch.manual_seed(seed)
        bar = tqdm(total=len(prompts), desc=f"generate ({self.model_name})", unit="prompt",
                   disable=not self.show_progress, leave=False)
        try:
            for start in range(0, len(order), per_batch):
                idx = order[start:start + per_batch]
                batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, eos_token_id=self.eos_ids,
                              pad_token_id=self.tokenizer.pad_token_id,
                              repetition_penalty=self.repetition_penalty)
                if do_sample:
                    kwargs.update(temperature=temperature, top_p=top_p, num_return_sequences=n)
                else:
                    kwargs.update(temperature=None, top_p=None, top_k=None)
                with torch.inference_mode():
                    out = self.model.generate(**batch, **kwargs)
                new = out[:, batch["input_ids"].shape[1]:]
                self.stats.new_tokens += int(self._count_new_tokens(new))
                decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
                reps = n if do_sample else 1
                for j, i in enumerate(idx):
                    samples = [cut_at_stop(t, self.stop_strings) for t in decoded[j * reps:(j + 1) * reps]]
                    results[i] = samples if do_sample else samples * n  # greedy: n identical copies
                bar.update(len(idx))
        finally:
            bar.close()
        return results

    def continuation_logprobs(self, prompts, continuations) -> list[float]:
        pairs = []
        for prompt, continuation in zip(prompts, continuations, strict=True):
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            head = prompt_token_ids(self.tokenizer, prompt, self.prompt_format)
            pairs.append((head[-max(1, self.max_prompt_tokens - len(cont)):], cont))
        scores = [float("-inf")] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -sum(map(len, pairs[i])))
        pad = self.tokenizer.pad_token_id
        bar = tqdm(total=len(pairs), desc=f"score ({self.model_name})", unit="pair", disable=not self.show_progress,
                   leave=False)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            seqs = [pairs[i][0] + pairs[i][1] for i in idx]
            width = max(map(len, seqs))
            # Right padding: every sequence keeps positions 0.. as in training, whatever the model's position code.
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
            # The LM head only where a continuation token is predicted: the vocabulary projection at every
            # position would be a fifth of a small model's work and a batch x width x vocab tensor.
            keep = sorted({p for i in idx for p in range(len(pairs[i][0]) - 1, sum(map(len, pairs[i])) - 1)})
            column = {p: c for c, p in enumerate(keep)}
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask,
                                    logits_to_keep=torch.tensor(keep, dtype=torch.long, device=self.device)).logits
            for row, i in enumerate(idx):
                start_pos, n = len(pairs[i][0]), len(pairs[i][1])
                if n:
                    cols = [column[p] for p in range(start_pos - 1, start_pos - 1 + n)]
                    logp = torch.log_softmax(logits[row, cols].float(), dim=-1)
                    scores[i] = float(logp.gather(-1, ids[row, start_pos:start_pos + n, None]).mean())
            bar.update(len(idx))
        bar.close()
        return scores

    def _count_new_tokens(self, new: torch.Tensor) -> int:
        """Tokens up to and including the first eos in each row (the rest is padding)."""
        is_eos = torch.isin(new, torch.tensor(self.eos_ids, device=new.device))
        first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(is_eos[:, 0], new.shape[1],
                                                                                         dtype=torch.long))
        return int(first.sum())

    def describe(self) -> dict:
        return {**super().describe(), "path": str(Path(self.path)), "repetition_penalty": self.repetition_penalty}
