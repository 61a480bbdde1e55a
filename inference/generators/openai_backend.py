"""OpenAI-compatible backend: any server speaking ``/v1/chat/completions`` (OpenAI, vLLM serve, our
``inference.serve``, ...).

Fixes the reference's GPTAgent (docs/design.md §10.15): a shared client, a bounded thread pool,
exponential backoff with jitter on 429 / 5xx / timeouts / dropped connections (honouring
``Retry-After``), a hard cap on attempts, no retry on other 4xx (a bad model name will not fix itself),
and an on-disk response cache keyed by model + prompt + sampling parameters + sample index, so a rerun
after a failure does not pay again for finished prompts. The key comes from ``OPENAI_API_KEY`` (or a
file the user names) and is never logged, cached, or put in an exception.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import GeneratorError, UserError
from ..io import atomic_write_json
from .base import Generator, cut_at_stop, wrap_instruction

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def read_api_key(api_key: str | None = None, api_key_file: str | None = None) -> str | None:
    if api_key:
        return api_key
    if api_key_file:
        path = Path(api_key_file)
        if not path.is_file():
            raise UserError("API key file not found", file=path)
        return path.read_text().strip() or None
    return os.environ.get("OPENAI_API_KEY") or None


class ResponseCache:
    """One small JSON file per (model, prompt, params, sample): concurrency-safe, atomic, resumable."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(payload: dict) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["text"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return None

    def put(self, key: str, text: str) -> None:
        atomic_write_json(self._path(key), {"text": text}, indent=None)


class OpenAIGenerator(Generator):
    backend = "openai"

    def __init__(self, model: str, prompt_format: str = "chat", base_url: str | None = None,
                 api_key: str | None = None, api_key_file: str | None = None, concurrency: int = 8,
                 timeout: float = 60.0, max_attempts: int = 5, backoff_base: float = 1.0, backoff_max: float = 30.0,
                 cache_dir: str | os.PathLike | None = None, show_progress: bool = True):
        super().__init__(model, prompt_format)
        import openai

        self._openai = openai
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = read_api_key(api_key, api_key_file)
        if key is None:
            if self.base_url is None:
                raise UserError("no API key: set OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI server)")
            key = "EMPTY"  # local OpenAI-compatible servers usually need none, but the client wants one
        if max_attempts < 1:
            raise UserError("must be ≥ 1", field="max_attempts")
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.max_attempts = int(max_attempts)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.show_progress = show_progress
        # The SDK's own retries are off: ours are bounded, logged and honour Retry-After.
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self._lock = threading.Lock()

    # -------------------------------------------------------------- one request with bounded retries
    def _messages(self, prompt: str) -> list[dict]:
        text = wrap_instruction(prompt) if self.prompt_format == "instruction" else prompt
        return [{"role": "user", "content": text}]

    def _retry_delay(self, attempt: int, exc: Exception) -> float:
        response = getattr(exc, "response", None)
        if response is not None:
            retry_after = response.headers.get("retry-after")
            if retry_after:
                try:
                    return min(float(retry_after), self.backoff_max)
                except ValueError:
                    pass
        delay = min(self.backoff_base * (2 ** (attempt - 1)), self.backoff_max)
        return delay * (0.5 + random.random() / 2)  # jitter: retries from many threads do not line up

    def _is_retryable(self, exc: Exception) -> bool:
        o = self._openai
        if isinstance(exc, (o.APITimeoutError, o.APIConnectionError)):
            return True
        if isinstance(exc, o.APIStatusError):
            return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
        # A 200 whose body is not a completion (malformed JSON, missing choices) is treated as transient.
        return isinstance(exc, (json.JSONDecodeError, ValueError, KeyError, IndexError, TypeError, AttributeError))

    @staticmethod
    def _describe_error(exc: Exception) -> str:
        status = getattr(exc, "status_code", None)
        name = type(exc).__name__
        return f"{name} (HTTP {status})" if status else name

    def _request(self, prompt: str, temperature: float, top_p: float, max_new_tokens: int,
                 seed: int | None) -> tuple[str, int]:
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                kwargs = dict(model=self.model_name, messages=self._messages(prompt), temperature=temperature,
                              top_p=top_p, max_tokens=max_new_tokens, n=1)
                if seed is not None:
                    kwargs["seed"] = seed
                response = self._client.chat.completions.create(**kwargs)
                text = response.choices[0].message.content
                if text is None:
                    text = ""
                usage = getattr(response, "usage", None)
                tokens = int(getattr(usage, "completion_tokens", 0) or 0)
                return cut_at_stop(text, self.stop_strings), tokens
            except Exception as exc:  # noqa: BLE001 - classified just below
                if not self._is_retryable(exc):
                    raise GeneratorError(f"{self.model_name}: request rejected: {self._describe_error(exc)}: "
                                         f"{self._safe_message(exc)}") from None
                last = exc
                if attempt == self.max_attempts:
                    break
                delay = self._retry_delay(attempt, exc)
                logger.warning("%s: %s, attempt %d/%d, retrying in %.1fs", self.model_name,
                               self._describe_error(exc), attempt, self.max_attempts, delay)
                time.sleep(delay)
        raise GeneratorError(f"{self.model_name}: gave up after {self.max_attempts} attempts; last error: "
                             f"{self._describe_error(last)}")

    @staticmethod
    def _safe_message(exc: Exception) -> str:
        # Server messages can be long; keep the first line. They never contain our key (it is only
        # sent as a header), but scrub a Bearer token defensively.
        text = str(getattr(exc, "message", exc)).splitlines()[0][:300] if str(exc) else ""
        return text.replace("Bearer ", "Bearer <redacted> ")

    # -------------------------------------------------------------- batch API
    def _generate(self, prompts: list[str], *, n: int, temperature: float, top_p: float,
                  max_new_tokens: int, seed: int | None) -> list[list[str]]:
        results: list[list[str | None]] = [[None] * n for _ in prompts]
        todo: list[tuple[int, int, str | None]] = []
        for i, prompt in enumerate(prompts):
            for k in range(n):
                sample_seed = None if seed is None else seed + k
                key = None
                if self.cache is not None:
                    key = ResponseCache.key({"model": self.model_name, "format": self.prompt_format,
                                             "prompt": prompt, "temperature": temperature, "top_p": top_p,
                                             "max_tokens": max_new_tokens, "seed": sample_seed, "sample": k})
                    cached = self.cache.get(key)
                    if cached is not None:
                        results[i][k] = cached
                        self.stats.cache_hits += 1
                        continue
                todo.append((i, k, key))
        errors: list[str] = []
        bar = tqdm(total=len(todo), desc=f"generate ({self.model_name} via API)", unit="req",
                   disable=not self.show_progress or not todo, leave=False)
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._request, prompts[i], temperature, top_p, max_new_tokens,
                                   None if seed is None else seed + k): (i, k, key) for i, k, key in todo}
            for future in as_completed(futures):
                i, k, key = futures[future]
                try:
                    text, tokens = future.result()
                except GeneratorError as exc:
                    errors.append(str(exc))
                    continue
                finally:
                    bar.update(1)
                results[i][k] = text
                with self._lock:
                    self.stats.new_tokens += tokens
                if self.cache is not None and key is not None:
                    self.cache.put(key, text)
        bar.close()
        if errors:
            done = len(todo) - len(errors)
            kept = " (finished ones are cached; rerun to resume)" if self.cache is not None else ""
            raise GeneratorError(f"{len(errors)} of {len(todo)} requests failed, {done} succeeded{kept}; "
                                 f"first: {errors[0]}")
        return [[t or "" for t in row] for row in results]

    def describe(self) -> dict:
        # base_url is recorded without any user:password part; the key never is.
        url = self.base_url or "https://api.openai.com/v1"
        if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
            scheme, rest = url.split("//", 1)
            url = f"{scheme}//<redacted>@{rest.split('@', 1)[1]}"
        return {**super().describe(), "base_url": url, "max_attempts": self.max_attempts}
