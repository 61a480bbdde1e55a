"""The benchmarks' shared preamble: options (``--dataset PATH`` and the sizes), the SciFact texts they time, a
stopwatch and the rates/ratio lines they print.

Run each benchmark as a module from the checkout, e.g. ``python -m benchmarks.encode --dataset
../shared/data/scifact`` (``make bench DATA=...``): ``-m`` puts the checkout on ``sys.path`` for ``benchmarks``
itself, while ``inference``/``evaluation``/``finetune`` come from the installed package. This module stays beside
the benchmarks rather than inside the package: it is development tooling (the baselines it times against,
sentence-transformers, scipy, datasets, are no dependency of the package) and has no place in the wheel.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

from evaluation.data import load_corpus_jsonl, load_queries_jsonl
from inference.embedder import document_text

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
DATA_HINT = "a BEIR folder such as ../shared/data/scifact"

T = TypeVar("T")


def parse_args(module: str, doc: str, argv: Sequence[str] | None = None, *, flags: Mapping[str, str] = {},
               **sizes: int) -> argparse.Namespace:
    """``--dataset PATH`` (required; ``--data`` is its old name) plus one integer option per ``sizes`` item
    (name=default) and one on/off option per ``flags`` item (name=help). A missing or wrong dataset folder is one
    line on stderr and exit status 2."""
    prog = f"python -m benchmarks.{module}"
    parser = argparse.ArgumentParser(prog=prog, description=doc.strip().splitlines()[0])
    parser.add_argument("--dataset", "--data", dest="dataset", default=None, help=f"{DATA_HINT} (required)")
    for name, default in sizes.items():
        parser.add_argument(f"--{name}", type=int, default=default, help=f"default {default}")
    for name, help_text in flags.items():
        parser.add_argument(f"--{name}", action="store_true", help=help_text)
    args = parser.parse_args(argv)
    if args.dataset is None:
        _fail(f"{prog}: --dataset PATH is required ({DATA_HINT}; make bench passes DATA)")
    args.dataset = Path(args.dataset)
    if not (args.dataset / "corpus.jsonl").is_file():
        _fail(f"{prog}: --dataset {args.dataset}: no corpus.jsonl there ({DATA_HINT})")
    return args


def _fail(line: str) -> None:
    print(line, file=sys.stderr)
    sys.exit(2)


def first_documents(dataset: Path, n: int) -> list[str]:
    """The first ``n`` corpus documents in file order, as the retriever reads them ("title text")."""
    return [document_text(doc) for doc in list(load_corpus_jsonl(dataset / "corpus.jsonl").values())[:n]]


def first_queries(dataset: Path, n: int) -> list[str]:
    """The first ``n`` query texts of ``queries.jsonl`` in file order (SciFact claims), judged or not."""
    return list(load_queries_jsonl(dataset / "queries.jsonl").values())[:n]


def timed(fn: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    """``fn(*args, **kwargs)`` and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def print_rates(header: str, rates: Mapping[str, float], unit: str, ratio: tuple[str, str], *,
                goal: float | None = None, goal_note: str = "", details: Mapping[str, str] = {},
                notes: Sequence[str] = (), digits: int = 1) -> float:
    """The header line, one ``name rate unit (detail)`` line per rate, any notes, then ``ratio a / b`` with its
    goal. Returns the ratio."""
    width = max(len(name) for name in rates)
    print(header)
    for name, rate in rates.items():
        detail = f" ({details[name]})" if name in details else ""
        print(f"  {name:{width}s} {rate:{digits + 6}.{digits}f} {unit}{detail}")
    for note in notes:
        print(f"  {note}")
    value = rates[ratio[0]] / rates[ratio[1]]
    goal_text = f"  (goal >= {goal:.1f}{goal_note})" if goal is not None else ""
    print(f"  ratio {ratio[0]} / {ratio[1]}: {value:.2f}{goal_text}")
    return value
