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
    env = os.environ.get("RIR_PROMPTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "configs" / "prompts"


@dataclass(frozen=True)
class TaskPrompt:
    name: str
    task_instruction: str
    answer_type: str
    query_type: str
    passage_type: str


@functools.lru_cache(maxsize=None)
def templates() -> dict[str, str]:
    path = prompts_dir() / "templates.yaml"
    if not path.is_file():
        raise UserError("prompt templates not found", file=path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("augmentation_prefix", "generator", "hyde", "query2doc"):
        if not isinstance(data.get(key), str):
            raise UserError("missing or not a string", file=path, field=key)
    return data


@functools.lru_cache(maxsize=None)
def all_tasks() -> dict[str, TaskPrompt]:
    tasks: dict[str, TaskPrompt] = {}
    for path in sorted(prompts_dir().glob("*.yaml")):
        if path.name == "templates.yaml":
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
            tasks[str(name).lower()] = TaskPrompt(name=str(name), **{k: entry[k] for k in REQUIRED_TASK_FIELDS})
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
    """The query-augmentation prompt P (pipeline.md §9), used identically by every stage."""
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
