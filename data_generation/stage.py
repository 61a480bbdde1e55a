"""What every data-generation stage shares: arguments, resumable chunked output, manifests, summaries.

A stage turns a list of work items (each with a stable ``id``) into output rows. Items are cut into fixed
chunks; each finished chunk is written atomically as ``<output_dir>/chunks/chunk-NNNNNN.json`` (rows + drop
counts). A rerun of the same command skips finished chunks, so after a crash, SIGKILL or Ctrl-C it continues
with no duplicates and no lost rows; since chunk boundaries and per-chunk seeds are fixed, the result equals
an uninterrupted run. When all chunks exist the final file is written atomically and ``manifest.json`` gets
``"status": "complete"`` (inputs with hashes, models, parameters, seed, counts, versions, wall time).
Nothing is ever rewritten in place, and a half-written file is never read as complete.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from inference.config import asdict_public
from inference.errors import UserError
from inference.generators import Generator, load_generator
from inference.generators.base import DEFAULT_REPETITION_PENALTY
from inference.io import atomic_write_json, atomic_write_text, file_sha256, iter_jsonl
from inference.manifest import MANIFEST, manifest_changes, read_manifest, run_parameters, write_manifest

logger = logging.getLogger(__name__)

DROPPED_FILE = "dropped.jsonl"  # beside each stage's output: the items that produced no row, with the reason


@dataclass
class GeneratorArguments:
    """Generator options shared by the stages (the reference's names where it had them)."""
    generator: str = field(default="HuggingFaceTB/SmolLM2-135M-Instruct",
                           metadata={"help": "generator name or path (reference: generate_model_path)"})
    generator_backend: str | None = field(default=None, metadata={"help": "hf | openai | vllm"})
    model_type: str | None = field(default=None, metadata={"help": "reference names: gpt | llm | llm_instruct"})
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    repetition_penalty: float = field(default=DEFAULT_REPETITION_PENALTY, metadata={
        "help": "the reference's fixed vLLM value; evaluation and Reinforced_IR_Model decode with it too"})
    generation_batch_size: int = 32
    generation_cache: str | None = field(default=None, metadata={"help": "openai backend response cache folder"})
    api_key_file: str | None = field(default=None, metadata={"help": "file holding the API key (else OPENAI_API_KEY)",
                                                           "secret": True})
    request_timeout: float = field(default=60.0, metadata={"help": "openai backend: seconds per request"})
    max_attempts: int = field(default=5, metadata={"help": "openai backend: tries per request (429/5xx/timeouts)"})
    tensor_parallel_size: int | None = field(default=None, metadata={"help": "vllm backend: GPUs (default: all)"})
    gpu_memory_utilization: float = field(default=0.8, metadata={"help": "vllm backend on CUDA: memory share"})
    max_model_len: int | None = field(default=None, metadata={"help": "vllm backend: context length (default: "
                                                                      "the model's)"})
    generator_dtype: str = field(default="auto", metadata={"help": "hf / vllm: auto (fp32 on CPU) | fp32 | bf16 | fp16"})
    enforce_eager: bool | None = field(default=None, metadata={
        "help": "vllm backend: skip graph compilation (default: on CPU, off on CUDA)"})


@dataclass
class StageArguments(GeneratorArguments):
    output_dir: str = field(default="", metadata={"help": "everything this stage writes goes here"})
    task: str = field(default="scifact", metadata={"help": "prompt task (configs/prompts)"})
    seed: int = 42
    chunk_size: int = field(default=16, metadata={"help": "items per resumable chunk"})
    overwrite: bool = field(default=False, metadata={"help": "discard earlier output in output_dir and start again"})

    def validate(self) -> None:
        if not self.output_dir:
            raise UserError("required", field="output_dir")
        if self.chunk_size < 1:
            raise UserError("must be ≥ 1", field="chunk_size")


def build_generator(args: GeneratorArguments, show_progress: bool = False) -> Generator:
    """Every backend's options at once; load_generator hands each backend its own."""
    return load_generator(args.generator, backend=args.generator_backend, model_type=args.model_type,
                          show_progress=show_progress, repetition_penalty=args.repetition_penalty,
                          batch_size=args.generation_batch_size, cache_dir=args.generation_cache,
                          api_key_file=args.api_key_file, timeout=args.request_timeout,
                          max_attempts=args.max_attempts, tensor_parallel_size=args.tensor_parallel_size,
                          gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len,
                          dtype=args.generator_dtype, enforce_eager=args.enforce_eager)


@dataclass
class ChunkResult:
    rows: list[dict] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)   # items that produced no row, by reason
    dropped_rows: list[dict] = field(default_factory=list)  # which ones: {id, reason, query} (→ dropped.jsonl)
    notes: Counter = field(default_factory=Counter)     # other counts worth reporting (e.g. parse fallbacks)
    failed: int = 0

    def drop(self, reason: str, item: dict, query: str | None = None) -> None:
        """Count an item that produced no row, and keep its text so a person can see what was dropped."""
        self.dropped[reason] += 1
        self.dropped_rows.append({"id": item["id"], "reason": reason, "query": query or item.get("query", "")})

    def add(self, other: "ChunkResult") -> None:
        self.rows.extend(other.rows)
        self.dropped.update(other.dropped)
        self.dropped_rows.extend(other.dropped_rows)
        self.notes.update(other.notes)
        self.failed += other.failed

    @classmethod
    def from_json(cls, data: dict) -> "ChunkResult":
        return cls(rows=data["rows"], dropped=Counter(data["dropped"]), dropped_rows=data.get("dropped_rows", []),
                   notes=Counter(data.get("notes", {})), failed=data["failed"])

    def to_json(self, items: int) -> dict:
        return {"rows": self.rows, "dropped": dict(self.dropped), "dropped_rows": self.dropped_rows,
                "notes": dict(self.notes), "failed": self.failed, "items": items}


def require_complete_stage(input_file: str | Path, expected_stage: str | Sequence[str]) -> dict:
    """The previous stage's manifest must say complete and match the file we are about to read."""
    input_file = Path(input_file)
    if not input_file.is_file():
        raise UserError("input file not found", file=input_file)
    manifest = read_manifest(input_file.parent)
    expected = [expected_stage] if isinstance(expected_stage, str) else list(expected_stage)
    if manifest is None:
        raise UserError(f"no {MANIFEST} beside the input: was it written by {' or '.join(expected)}?",
                        file=input_file)
    if manifest.get("stage") not in expected:
        raise UserError(f"written by stage {manifest.get('stage')!r}, expected {' or '.join(expected)}",
                        file=input_file.parent / MANIFEST, field="stage")
    if manifest.get("status") != "complete":
        raise UserError("the previous stage has not finished (status "
                        f"{manifest.get('status')!r}); rerun it first", file=input_file.parent / MANIFEST)
    recorded = manifest.get("output", {}).get("sha256")
    if recorded and recorded != file_sha256(input_file):
        raise UserError("file changed since its stage finished (hash differs from its manifest)", file=input_file)
    return manifest


class StageRun:
    """Chunked, resumable execution of one stage into ``output_dir``."""

    def __init__(self, stage: str, args: StageArguments, output_name: str, inputs: dict[str, dict]):
        self.stage = stage
        self.args = args
        self.dir = Path(args.output_dir)
        self.output = self.dir / output_name
        self.chunks_dir = self.dir / "chunks"
        self.inputs = inputs
        self.parameters = run_parameters(asdict_public(args))
        self.started = time.perf_counter()
        self.models: dict = {}
        self.extra: dict = {}
        self._prepare()

    # ------------------------------------------------------------------ set-up and resumption
    def _prepare(self) -> None:
        manifest = read_manifest(self.dir)
        if self.args.overwrite:
            for path in (self.chunks_dir, self.output, self.dir / DROPPED_FILE, self.dir / MANIFEST):
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            manifest = None
        elif manifest is not None:
            if manifest.get("stage") != self.stage:
                raise UserError(f"output_dir holds stage {manifest.get('stage')!r}; use another folder",
                                file=self.dir / MANIFEST)
            if changes := manifest_changes(manifest, self.parameters, self.inputs):
                raise UserError(f"output_dir holds a run with different {'; '.join(changes)}; pass --overwrite to "
                                "start again, or use another output_dir", file=self.dir)
        self.previous_status = None if manifest is None else manifest.get("status")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.chunks_dir.mkdir(exist_ok=True)

    @property
    def already_complete(self) -> bool:
        return self.previous_status == "complete" and self.output.is_file()

    def skipped_summary(self) -> dict | None:
        """A finished stage with the same parameters and inputs is a no-op: the summary says so."""
        if not self.already_complete:
            return None
        logger.info("%s already complete in %s (use --overwrite to redo)", self.stage, self.dir)
        return {"stage": self.stage, "output": str(self.output), "skipped": True}

    def chunk_path(self, index: int) -> Path:
        return self.chunks_dir / f"chunk-{index:06d}.json"

    def _write_manifest(self, status: str, counts: dict | None = None, generation: dict | None = None) -> None:
        output = {"output": {"path": self.output.name, "sha256": file_sha256(self.output)}} \
            if status == "complete" else {}
        write_manifest(self.dir, self.stage, status, inputs=self.inputs, models=self.models,
                       parameters=self.parameters, seed=self.args.seed, counts=counts or {},
                       generation=generation or {}, wall_seconds=round(time.perf_counter() - self.started, 2),
                       **self.extra, **output)

    # ------------------------------------------------------------------ the loop
    def run(self, items: list[dict], process_chunk: Callable[[list[dict], int], ChunkResult],
            finalize: Callable[[list[dict], ChunkResult], list[dict]] | None = None,
            generator: Generator | None = None, desc: str | None = None) -> dict:
        """Process every unfinished chunk, then write the output and the manifest. Returns the summary.

        ``finalize(rows, totals)`` sees every chunk's rows and may drop more (``totals.drop``) or refuse."""
        ids = [str(item["id"]) for item in items]
        if len(set(ids)) != len(ids):
            raise UserError("work items have duplicate ids")
        self._write_manifest("running")
        n_chunks = math.ceil(len(items) / self.args.chunk_size)
        self._process_chunks(items, n_chunks, process_chunk, desc)
        totals = ChunkResult()
        for c in range(n_chunks):
            totals.add(ChunkResult.from_json(json.loads(self.chunk_path(c).read_text())))
        rows = finalize(totals.rows, totals) if finalize is not None else totals.rows
        atomic_write_text(self.output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        atomic_write_text(self.dir / DROPPED_FILE,
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in totals.dropped_rows))
        counts = {"items": len(items), "kept": len(rows), "dropped": dict(sorted(totals.dropped.items())),
                  "notes": dict(sorted(totals.notes.items())), "failed": totals.failed}
        generation = generator.stats.as_dict() if generator is not None else {}
        self._write_manifest("complete", counts, generation)
        return {"stage": self.stage, "output": str(self.output), **counts, "generation": generation,
                "wall_seconds": round(time.perf_counter() - self.started, 1)}

    def _process_chunks(self, items: list[dict], n_chunks: int,
                        process_chunk: Callable[[list[dict], int], ChunkResult], desc: str | None) -> None:
        todo = [c for c in range(n_chunks) if not self.chunk_path(c).is_file()]
        if len(todo) < n_chunks:
            logger.info("%s: resuming, %d of %d chunks already done", self.stage, n_chunks - len(todo), n_chunks)
        remaining = sum(len(items[c * self.args.chunk_size:(c + 1) * self.args.chunk_size]) for c in todo)
        bar = tqdm(total=len(items), initial=len(items) - remaining, desc=desc or self.stage, unit="item")
        try:
            for c in todo:
                chunk = items[c * self.args.chunk_size:(c + 1) * self.args.chunk_size]
                atomic_write_json(self.chunk_path(c), process_chunk(chunk, c).to_json(len(chunk)), indent=None)
                bar.update(len(chunk))
        finally:
            bar.close()


def summary_paragraph(summary: dict) -> str:
    dropped = summary.get("dropped") or {}
    reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in dropped.items()) or "none"
    gen = summary.get("generation") or {}
    speed = (f" Generation: {gen.get('completions', 0)} completions, {gen.get('new_tokens', 0)} new tokens at "
             f"{gen.get('tokens_per_second', 0):.1f} tokens/s"
             f"{', ' + str(gen['cache_hits']) + ' from cache' if gen.get('cache_hits') else ''}." if gen else "")
    notes = "".join(f"; {r.replace('_', ' ')}: {n}" for r, n in (summary.get("notes") or {}).items())
    return (f"{summary['stage']}: {summary['kept']} rows kept from {summary['items']} items in "
            f"{summary['wall_seconds']:.0f}s; dropped: {reasons}{notes}; failed: {summary.get('failed', 0)}.{speed} "
            f"Output: {summary['output']}")


def load_rows(path: str | Path, required: Sequence[str]) -> list[dict]:
    """Read a JSONL of rows, each with the ``required`` fields (a missing one names file/line/field)."""
    rows = []
    for lineno, row in iter_jsonl(path):
        for name in required:
            if name not in row:
                raise UserError("missing", file=path, line=lineno, field=name)
        rows.append(row)
    if not rows:
        raise UserError("no rows", file=path)
    return rows


def stage_main(argv: Sequence[str], arguments: type, run: Callable[[object], dict], stage: str) -> int:
    """The whole CLI of a stage: parse, run, print the closing summary."""
    from inference.config import parse_args

    summary = run(parse_args(arguments, argv, prog=f"python -m data_generation.{stage}"))
    if not summary.get("skipped"):
        print(summary_paragraph(summary))
    return 0
