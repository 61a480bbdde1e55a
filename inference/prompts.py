"""Prompts as data: task vocabulary and templates from ``configs/prompts/*.yaml``.

The generator prompt P, the augmentation PREFIX and the HyDE / Query2doc templates are loaded from
``templates.yaml`` once, so every stage uses byte-identical text. Task entries (``beir.yaml``,
``air_bench.yaml``, or any YAML a user drops into ``RIR_PROMPTS_DIR``) give ``task_instruction``,
``answer_type``, ``query_type`` and ``passage_type`` per dataset.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import UserError

REQUIRED_TASK_FIELDS = ("task_instruction", "answer_type", "query_type", "passage_type")


def prompts_dir() -> Path:
    """``RIR_PROMPTS_DIR``, else the checkout's ``configs/prompts``, else the copy installed with the package."""
    env = os.environ.get("RIR_PROMPTS_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[1] / "configs" / "prompts"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "prompt_data"


OPTIONAL_TASK_FIELDS = ("mission", "stances", "qc_positive", "qc_negative", "simple_mission")
DEFAULT_SIMPLE_MISSION = "Write a {query_type} that this {passage_type} answers."
DEFAULT_MISSION = "Write a {query_type} that the {passage_type} can answer."
DEFAULT_QC_POSITIVE = "the {passage_type} can answer the {query_type}."
DEFAULT_QC_NEGATIVE = "the {passage_type} cannot answer the {query_type}."

# Query-length and style draws for pseudo-queries (docs/design.md §3), as (choice, weight).
CLAIM_LENGTHS = (("10 to 15 words long", 5), ("at least 15 words long", 2))
QUERY_LENGTHS = (("less than 5 words long", 2), ("5 to 10 words long", 5), ("10 to 15 words long", 4),
                 ("at least 15 words long", 1))
QUERY_STYLES = (("plain and simple", 4), ("common and formal", 4), ("casual and informal", 2),
                ("professional and complex", 1))


@dataclass(frozen=True)
class TaskPrompt:
    name: str
    task_instruction: str
    answer_type: str
    query_type: str
    passage_type: str
    mission: str = DEFAULT_MISSION
    stances: tuple[str, ...] = ()
    qc_positive: str = DEFAULT_QC_POSITIVE
    qc_negative: str = DEFAULT_QC_NEGATIVE
    simple_mission: str = DEFAULT_SIMPLE_MISSION

    def fill(self, text: str, **extra) -> str:
        return text.format(query_type=self.query_type, passage_type=self.passage_type, **extra)


@functools.lru_cache(maxsize=None)
def templates() -> dict[str, str]:
    path = prompts_dir() / "templates.yaml"
    if not path.is_file():
        raise UserError("prompt templates not found", file=path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("augmentation_prefix", "generator", "hyde", "query2doc", "query_generation",
                "query_generation_example", "query_generation_simple", "query_generation_paraphrase",
                "quality_control", "listwise_rank",
                "query_likelihood", "query_likelihood_task"):
        if not isinstance(data.get(key), str):
            raise UserError("missing or not a string", file=path, field=key)
    return data


@functools.lru_cache(maxsize=None)
def all_tasks() -> dict[str, TaskPrompt]:
    tasks: dict[str, TaskPrompt] = {}
    for path in sorted(prompts_dir().glob("*.yaml")):
        if path.name in ("templates.yaml", "examples.yaml"):
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, entry in data.items():
            if str(name).startswith("_"):
                continue  # YAML anchors
            if not isinstance(entry, dict):
                raise UserError("a task entry must be a mapping", file=path, field=str(name))
            for key in REQUIRED_TASK_FIELDS:
                if not isinstance(entry.get(key), str) or not entry[key].strip():
                    raise UserError(f"task '{name}' lacks a non-empty string", file=path, field=key)
            optional = {k: entry[k] for k in OPTIONAL_TASK_FIELDS if k in entry}
            if "stances" in optional:
                optional["stances"] = tuple(optional["stances"])
            unknown = set(entry) - set(REQUIRED_TASK_FIELDS) - set(OPTIONAL_TASK_FIELDS)
            if unknown:
                raise UserError(f"task '{name}' has unknown key(s)", file=path, field=sorted(unknown)[0])
            tasks[str(name).lower()] = TaskPrompt(name=str(name), **{k: entry[k] for k in REQUIRED_TASK_FIELDS},
                                                  **optional)
    return tasks


def get_task(name: str) -> TaskPrompt:
    key = name.strip().lower()
    tasks = all_tasks()
    if key not in tasks:
        raise UserError(f"unknown task {name!r}; known: {', '.join(sorted(tasks))}", field="task")
    return tasks[key]


def augmentation_prefix() -> str:
    return templates()["augmentation_prefix"]


def generator_prompt(query: str, task_instruction: str, answer_type: str) -> str:
    """The query-augmentation prompt P (docs/design.md §9), used identically by every stage."""
    return templates()["generator"].format(answer_type=answer_type, task=task_instruction, query=query)


def _typed_prompt(kind: str, query: str, task: TaskPrompt) -> str:
    return templates()[kind].format(
        query=query, query_type=task.query_type, passage_type=task.passage_type,
        query_type_title=task.query_type[:1].upper() + task.query_type[1:],
        passage_type_title=task.passage_type[:1].upper() + task.passage_type[1:])


def hyde_prompt(query: str, task: TaskPrompt) -> str:
    return _typed_prompt("hyde", query, task)


def query2doc_prompt(query: str, task: TaskPrompt) -> str:
    return _typed_prompt("query2doc", query, task)


def _title(text: str) -> str:
    return text[:1].upper() + text[1:]


@functools.lru_cache(maxsize=None)
def few_shot_examples() -> dict[str, list[dict]]:
    path = prompts_dir() / "examples.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {str(k).lower(): v for k, v in (data or {}).items()}


def examples_for(task: TaskPrompt) -> list[dict]:
    examples = few_shot_examples()
    return examples.get(task.name.lower()) or examples.get("default") or []


def weighted_choice(rng, options: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options], k=1)[0]


QUERY_PROMPT_STYLES = ("full", "simple", "paraphrase")


def query_generation_prompt(passage: str, task: TaskPrompt, rng, use_examples: bool = True,
                            style: str = "full") -> str:
    """Stage A prompt. ``full``: the reference's structure with seeded draws of length, style and (claim tasks)
    stance, plus few-shot examples. ``simple``: a short instruction that small models follow. ``paraphrase``: the
    simple instruction, asking for the passage's rare terms in other words (queries a retriever cannot answer by
    word overlap alone; docs/design.md §3)."""
    if style in QUERY_PROMPT_STYLES[1:]:
        return templates()[f"query_generation_{style}"].format(
            passage_type=task.passage_type, query_type=task.query_type, passage=passage,
            simple_mission=task.fill(task.simple_mission))
    is_claim = "claim" in task.query_type
    length = weighted_choice(rng, CLAIM_LENGTHS if is_claim else QUERY_LENGTHS)
    style = weighted_choice(rng, QUERY_STYLES)
    stance = rng.choice(task.stances) if task.stances else ""
    block = ""
    if use_examples:
        block = "".join(templates()["query_generation_example"].format(
            number=i + 1, passage=ex["passage"], query=ex["query"], query_type=task.query_type,
            passage_type_title=_title(task.passage_type)) for i, ex in enumerate(examples_for(task)[:3]))
        block = block.rstrip() + "\n" if block else ""
    return templates()["query_generation"].format(
        passage_type=task.passage_type, query_type=task.query_type, passage_type_title=_title(task.passage_type),
        task=task.task_instruction, passage=passage, mission=task.fill(task.mission, stance=stance),
        query_length=length, query_style=style, examples=block)


def quality_control_prompt(query: str, passage: str, task: TaskPrompt) -> str:
    return templates()["quality_control"].format(
        task=task.task_instruction, query=query, passage=passage, query_type=task.query_type,
        passage_type=task.passage_type, query_type_title=_title(task.query_type),
        passage_type_title=_title(task.passage_type), qc_positive=task.fill(task.qc_positive),
        qc_negative=task.fill(task.qc_negative))


def listwise_rank_prompt(query: str, passages: list[str]) -> str:
    listed = "\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
    return templates()["listwise_rank"].format(num=len(passages), query=query, passages=listed)


def query_likelihood_prompt(passage: str, task: TaskPrompt | None = None) -> str:
    """The prompt whose reply the query is scored as. Without a task, RLGF's generic question prompt; with one,
    the task's own query-generation instruction (a claim task asks for a claim)."""
    if task is None:
        return templates()["query_likelihood"].format(passage=passage)
    return templates()["query_likelihood_task"].format(passage=passage, simple_mission=task.fill(task.simple_mission))


def truncate_to_tokens(text: str, max_tokens: int, tokenizer=None) -> str:
    """Cut ``text`` to ``max_tokens`` tokens of ``tokenizer`` (or ~0.75 words per token without one)."""
    if max_tokens <= 0:
        return text
    if tokenizer is not None:
        ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
        return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])
    words = text.split()
    limit = int(max_tokens * 0.75)
    return text if len(words) <= limit else " ".join(words[:limit])


def rerank_yes_no_prompt(query: str, passage: str, task_instruction: str = "") -> str:
    return templates()["rerank_yes_no"].format(task=task_instruction, query=query, passage=passage).lstrip()
