"""Second-stage rerankers: score (query, passage) pairs and reorder a first-stage run.

Four kinds, one interface (``score_pairs``): ``CrossEncoderReranker`` (joint encoding, one logit),
``ColBERTReranker`` (late interaction: MaxSim over L2-normalised token embeddings, zero-shot from any encoder or
trained with ``finetune.rerank --model_type colbert``), ``LLMReranker`` (a causal LM's logit("Yes") −
logit("No") after a relevance question; LoRA-trained with ``--model_type llm``) and
``QueryLikelihoodReranker`` (a generator's log-probability of the query given the passage, UPR; no training).
``load_reranker`` picks the kind from the folder.

``CrossEncoderReranker`` reads any sequence-classification checkpoint with one output (our
``finetune.rerank`` output, or a published cross-encoder such as ``BAAI/bge-reranker-base``). A plain encoder
(e.g. the bundled MiniLM) loads too, with a fresh, untrained head: train it with ``finetune.rerank`` first.

    reranker = CrossEncoderReranker("runs/reranker")
    scores = reranker.score("query", ["passage 1", "passage 2"])
    run = rerank_run(run, queries, corpus, reranker, top_k=100)
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from .embedder import document_text
from .hybrid import fuse_scores
from .prompts import TaskPrompt, query_likelihood_prompt, truncate_to_tokens
from .errors import UserError
from .resolver import resolve_model_path

logger = logging.getLogger(__name__)


class Reranker:
    """Shared loading, device placement and length-sorted batching; subclasses score one batch of pairs."""

    kind = "reranker"
    auto_class = "AutoModel"
    model_kwargs: dict = {}

    def __init__(self, model_name_or_path: str, max_length: int = 256, batch_size: int = 32, device: str | None = None,
                 show_progress: bool = True):
        import torch
        import transformers

        self.name = str(model_name_or_path)
        path = resolve_model_path(model_name_or_path)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            self.model = getattr(transformers, self.auto_class).from_pretrained(path, **self.model_kwargs)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load reranker: {str(exc).splitlines()[0]}", field=f"rerank {self.name}") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.show_progress = show_progress

    def describe(self) -> dict:
        return {"kind": self.kind, "model": self.name, "max_length": self.max_length}

    def _score_batch(self, pairs: list[tuple[str, str]]):
        raise NotImplementedError

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        out = np.empty(len(pairs), dtype=np.float32)
        # Longest pairs first: batches of similar length waste less padding (same trick as the embedder).
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        starts = range(0, len(order), self.batch_size)
        for s in tqdm(starts, desc=f"rerank ({self.kind})", unit="batch",
                      disable=not self.show_progress or len(starts) < 2, leave=False):
            idx = order[s:s + self.batch_size]
            with torch.inference_mode():
                out[idx] = self._score_batch([pairs[i] for i in idx]).float().cpu().numpy()
        return out

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, p) for p in passages])


class CrossEncoderReranker(Reranker):
    """Joint encoding of ``[CLS] query [SEP] passage [SEP]`` → one relevance logit."""

    kind = "cross-encoder"
    auto_class = "AutoModelForSequenceClassification"
    model_kwargs = {"num_labels": 1}

    def _score_batch(self, pairs):
        features = self.tokenizer([q for q, _ in pairs], [p for _, p in pairs], padding=True,
                                  truncation="longest_first", max_length=self.max_length, return_tensors="pt")
        return self.model(**features.to(self.device)).logits.view(-1)


def maxsim(q_tok, q_mask, d_tok, d_mask):
    """ColBERT scores. ``q_tok`` (B, Lq, D), ``d_tok`` (B, G, Ld, D) → (B, G): for every query token, its best
    cosine over the document's tokens, summed over the query's real (unpadded) tokens."""
    import torch

    sim = torch.einsum("bqd,bgkd->bgqk", q_tok, d_tok)
    sim = sim.masked_fill(~d_mask.bool()[:, :, None, :], float("-inf")).max(dim=-1).values
    return (sim * q_mask[:, None, :].to(sim.dtype)).sum(dim=-1)


class ColBERTReranker(Reranker):
    """MaxSim late interaction over the encoder's token embeddings (L2-normalised)."""

    kind = "colbert"

    def __init__(self, model_name_or_path: str, max_length: int = 256, query_max_length: int = 64, **kwargs):
        super().__init__(model_name_or_path, max_length=max_length, **kwargs)
        self.query_max_length = query_max_length

    def describe(self) -> dict:
        return {**super().describe(), "query_max_length": self.query_max_length}

    def _tokens(self, texts: list[str], max_length: int):
        import torch.nn.functional as F

        features = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt").to(self.device)
        hidden = self.model(**features).last_hidden_state
        return F.normalize(hidden, dim=-1), features["attention_mask"]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        # Grouped by query, so each query is encoded once.
        by_query: dict[str, list[int]] = {}
        for i, (q, _) in enumerate(pairs):
            by_query.setdefault(q, []).append(i)
        out = np.empty(len(pairs), dtype=np.float32)
        for query, idx in tqdm(by_query.items(), desc="rerank (colbert)", unit="query",
                               disable=not self.show_progress or len(by_query) < 2, leave=False):
            with torch.inference_mode():
                q_tok, q_mask = self._tokens([query], self.query_max_length)
                for s in range(0, len(idx), self.batch_size):
                    part = idx[s:s + self.batch_size]
                    d_tok, d_mask = self._tokens([pairs[i][1] for i in part], self.max_length)
                    out[part] = maxsim(q_tok, q_mask, d_tok[None], d_mask[None])[0].float().cpu().numpy()
        return out


def yes_no_token_ids(tokenizer) -> tuple[int, int]:
    """First token of "Yes" and of "No" (as the model would write them at the start of its reply)."""
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in ("Yes", "No")]
    if not all(ids) or ids[0][0] == ids[1][0]:
        raise UserError("the tokenizer cannot tell 'Yes' from 'No' by their first token", field="reranker")
    return ids[0][0], ids[1][0]


def yes_no_inputs(tokenizer, pairs: Sequence[tuple[str, str]], task_instruction: str, max_length: int,
                  passage_max_tokens: int | None = None):
    """Chat-formatted yes/no prompts, left-padded so the last position is where the answer token goes."""
    from .prompts import rerank_yes_no_prompt

    budget = passage_max_tokens or max(16, max_length - 96)
    texts = []
    for query, passage in pairs:
        ids = tokenizer(passage, add_special_tokens=False, truncation=True, max_length=budget)["input_ids"]
        prompt = rerank_yes_no_prompt(query, tokenizer.decode(ids), task_instruction)
        if tokenizer.chat_template:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                   add_generation_prompt=True)
        texts.append(prompt)
    tokenizer.padding_side = "left"
    return tokenizer(texts, padding=True, truncation=True, max_length=max_length, add_special_tokens=False,
                     return_tensors="pt")


class LLMReranker(Reranker):
    """A causal LM asked "is the passage relevant? Yes/No": score = logit(Yes) − logit(No) at the answer."""

    kind = "llm"
    auto_class = "AutoModelForCausalLM"

    def __init__(self, model_name_or_path: str, max_length: int = 384, batch_size: int = 8,
                 task_instruction: str = "", **kwargs):
        super().__init__(model_name_or_path, max_length=max_length, batch_size=batch_size, **kwargs)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.yes_id, self.no_id = yes_no_token_ids(self.tokenizer)
        self.task_instruction = task_instruction

    def _score_batch(self, pairs):
        features = yes_no_inputs(self.tokenizer, pairs, self.task_instruction, self.max_length).to(self.device)
        logits = self.model(**features).logits[:, -1, :]
        return logits[:, self.yes_id] - logits[:, self.no_id]


SCORING_DTYPES = ("auto", "fp32", "bf16", "fp16")


class QueryLikelihoodReranker:
    """UPR (Sachan et al. 2022): a passage scores the generator's mean log-probability of the query written as
    its reply to the task's query-generation instruction after the passage. Nothing to train and nothing to
    parse, so a 135M generator can give it; the score is the one RLGF's ``query_likelihood`` teacher uses
    (``Generator.continuation_logprobs``, any backend). Passages are cut to ``max_length`` generator tokens.
    ``dtype="auto"`` scores in bf16 where the hardware computes it natively (``native_bf16``), else in the
    backend's own default: scores move by a few hundredths of a nat, rankings hardly at all."""

    kind = "query_likelihood"

    def __init__(self, model_name_or_path: str, max_length: int = 192, batch_size: int = 16,
                 task: TaskPrompt | None = None, backend: str | None = None, dtype: str = "auto",
                 show_progress: bool = True):
        from .generators import load_generator
        from .generators.base import native_bf16

        if dtype not in SCORING_DTYPES:
            raise UserError(f"must be one of {', '.join(SCORING_DTYPES)}, got {dtype!r}", field="rerank_dtype")
        self.name, self.max_length, self.task = str(model_name_or_path), max_length, task
        self.dtype = "bf16" if dtype == "auto" and native_bf16() else dtype
        self.generator = load_generator(model_name_or_path, backend=backend, batch_size=batch_size, dtype=self.dtype,
                                        show_progress=show_progress)

    def describe(self) -> dict:
        return {"kind": self.kind, "model": self.name, "max_length": self.max_length, "dtype": self.dtype,
                "task": None if self.task is None else self.task.name, "generator": self.generator.describe()}

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        tokenizer = getattr(self.generator, "tokenizer", None)
        prompts = [query_likelihood_prompt(truncate_to_tokens(p, self.max_length, tokenizer), self.task)
                   for _, p in pairs]
        return np.asarray(self.generator.continuation_logprobs(prompts, [q for q, _ in pairs]), dtype=np.float64)

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, p) for p in passages])


RERANKER_KINDS = ("auto", "cross-encoder", "colbert", "llm", "query_likelihood")


def load_reranker(model_name_or_path: str, kind: str = "auto", task: TaskPrompt | None = None, **kwargs):
    """``kind="auto"``: a folder written by ``finetune.rerank`` says its kind (and the lengths it was trained
    with, used unless given) in ``reranker_config.json``; anything else is a cross-encoder. ``task`` gives the
    LLM reranker its instruction and the query-likelihood reranker its prompt."""
    import json
    from pathlib import Path

    if kind not in RERANKER_KINDS:
        raise UserError(f"must be one of {', '.join(RERANKER_KINDS)}", field="rerank_type")
    if kind == "query_likelihood":  # a generator, not a reranker folder
        return QueryLikelihoodReranker(model_name_or_path, task=task,
                                       **{k: v for k, v in kwargs.items() if v is not None})
    if kwargs.pop("dtype", None) not in (None, "auto"):
        raise UserError("only the query_likelihood reranker takes a dtype", field="rerank_dtype")
    config_file = Path(resolve_model_path(model_name_or_path)) / "reranker_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if kind == "auto":
        kind = config.get("kind", "cross-encoder")
    cls = {"colbert": ColBERTReranker, "llm": LLMReranker}.get(kind, CrossEncoderReranker)
    accepted = {"max_length"} | ({"query_max_length"} if cls is ColBERTReranker else set())
    for name in ("max_length", "query_max_length"):
        # not given: the length the reranker was trained with, else the class default
        value = kwargs.pop(name, None)
        value = config.get(name) if value is None else value
        if name in accepted and value is not None:
            kwargs[name] = int(value)
    if cls is LLMReranker:
        kwargs["task_instruction"] = "" if task is None else task.task_instruction
    return cls(model_name_or_path, **kwargs)


def rescore_top(run: dict[str, dict[str, float]], queries: dict[str, str], corpus: dict[str, dict],
                reranker, top_k: int = 100) -> dict[str, dict[str, float]]:
    """The reranker's score of each query's ``top_k`` first-stage documents (one ``score_pairs`` call)."""
    pairs, owners = [], []
    for qid, docs in run.items():
        top = sorted(docs.items(), key=lambda kv: -kv[1])[:top_k]
        for did, _ in top:
            pairs.append((queries[qid], document_text(corpus[did])))
            owners.append((qid, did))
    scores = reranker.score_pairs(pairs) if pairs else np.empty(0)
    rescored: dict[str, dict[str, float]] = {qid: {} for qid in run}
    for (qid, did), s in zip(owners, scores):
        rescored[qid][did] = float(s)
    return rescored


def order_reranked(run: dict[str, dict[str, float]], rescored: dict[str, dict[str, float]],
                   weight: float | None = None) -> dict[str, dict[str, float]]:
    """The reranked run: rescored documents first, by the reranker's score or (``weight`` given) by
    ``weight · minmax(reranker) + (1 − weight) · minmax(first stage)`` over them (the hybrid's fusion, so a weak
    reranker adjusts the first stage instead of replacing it); the rest below, in first-stage order."""
    reranked: dict[str, dict[str, float]] = {}
    for qid, docs in run.items():
        top = dict(rescored.get(qid, {}))
        if not top:
            reranked[qid] = dict(docs)
            continue
        if weight is not None:
            ids = list(top)
            fused = fuse_scores(np.array([docs[d] for d in ids]), np.array([top[d] for d in ids]), weight)
            top = dict(zip(ids, map(float, fused)))
        floor = min(top.values())
        rest = sorted((kv for kv in docs.items() if kv[0] not in top), key=lambda kv: -kv[1])
        for n, (did, _) in enumerate(rest, start=1):
            top[did] = floor - n
        reranked[qid] = top
    return reranked


def rerank_run(run: dict[str, dict[str, float]], queries: dict[str, str], corpus: dict[str, dict],
               reranker, top_k: int = 100, weight: float | None = None) -> dict[str, dict[str, float]]:
    """Rescore each query's ``top_k`` first-stage documents; the rest keep their order below them (see
    ``order_reranked`` for ``weight``)."""
    return order_reranked(run, rescore_top(run, queries, corpus, reranker, top_k), weight)
