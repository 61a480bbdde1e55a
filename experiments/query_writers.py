"""Which model writes the pseudo-queries: each writer (generator + prompt style) runs stage A on the same seeded
documents, and the base retriever says how easy its queries are, beside the corpus's real queries.

    python -m experiments.query_writers --config experiments/configs/query_writers.yaml

A query whose source the base retriever already ranks first teaches it little; one whose source it cannot find in
its top ``round_trip_depth`` is dropped by round-trip filtering. Per writer: documents, queries kept (and dropped
by reason), the share whose source ranks 1st, in the top 5 and in the round trip, the mean reciprocal rank, and
the generation cost (new tokens/s on this machine). The same shares for the split's real queries (each with its
judged documents; train qrels, never test) are the reference. No setting is chosen on test qrels here.
Output: ``results.json`` and ``results.md`` in ``output_dir``; each writer's stage-A folder is resumable.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from data_generation.generate_queries import GenerateQueriesArguments
from evaluation.data import load_dataset
from evaluation.search import encode_corpus_cached
from inference.config import EmbeddingCacheArguments, parse_args
from inference.errors import UserError, run_cli
from inference.io import atomic_write_json, atomic_write_text, iter_jsonl
from inference.manifest import read_manifest

from .dev_ablation import run_module

logger = logging.getLogger(__name__)


@dataclass
class QueryWritersArguments(EmbeddingCacheArguments):
    """Stage A under several writers on the same documents, scored by how easily the base retriever finds the
    source."""
    dataset: str = field(default="", metadata={"help": "BEIR folder"})
    task: str = "scifact"
    retriever: str = "sentence-transformers/all-MiniLM-L6-v2"
    output_dir: str = "runs/query-writers"
    reference_split: str = field(default="train", metadata={"help": "qrels whose real queries are the reference"})
    documents: int = field(default=200, metadata={"help": "seeded documents each writer writes one query for"})
    round_trip_depth: int = 20
    seed: int = 42
    queries: dict = field(default_factory=dict, metadata={"help": "stage-A options every writer shares"})
    writers: dict = field(default_factory=dict, metadata={"help": "name → stage-A options of that writer"})

    def validate(self) -> None:
        known = {f for f in GenerateQueriesArguments.__dataclass_fields__}
        for name, spec in {"queries": self.queries, **{f"writers.{k}": v for k, v in self.writers.items()}}.items():
            if not isinstance(spec, dict):
                raise UserError("must be a mapping of stage-A options", field=name)
            if unknown := sorted(set(spec) - known):
                raise UserError(f"not stage-A option(s): {', '.join(unknown)}", field=name)
        if not self.writers:
            raise UserError("name at least one writer", field="writers")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_queries(args: QueryWritersArguments, name: str, spec: dict) -> Path:
    """Stage A for one writer (the real CLI; resumable), every writer on the same seeded documents."""
    out = Path(args.output_dir) / slug(name)
    options = {"dataset": args.dataset, "task": args.task, "seed": args.seed, "train_num": args.documents,
               "holdout_fraction": 0.0, **args.queries, **spec, "output_dir": str(out / "queries")}
    atomic_write_text(out / "queries.yaml", yaml.safe_dump(options, sort_keys=False))
    run_module("data_generation.generate_queries", ["--config", str(out / "queries.yaml")])
    return out / "queries"


def source_ranks(embedder, doc_emb: np.ndarray, doc_ids: list[str], texts: list[str],
                 sources: list[set[str]]) -> np.ndarray:
    """Rank (1-based) of each query's best source document under the retriever; 0 when below 1,000."""
    from inference.search import exact_search

    _, ids = exact_search(embedder.encode_queries(texts), doc_emb, min(1000, len(doc_ids)))
    ranks = []
    for row, wanted in zip(ids, sources):
        hits = [r + 1 for r, i in enumerate(row.tolist()) if i >= 0 and doc_ids[i] in wanted]
        ranks.append(hits[0] if hits else 0)
    return np.array(ranks)


def ease(ranks: np.ndarray, depth: int) -> dict:
    found = ranks > 0
    return {"queries": int(len(ranks)), "rank_1": float(np.mean(ranks == 1)),
            "top_5": float(np.mean(found & (ranks <= 5))), "round_trip": float(np.mean(found & (ranks <= depth))),
            "mrr": float(np.mean(np.where(found, 1.0 / np.maximum(ranks, 1), 0.0)))}


def run(args: QueryWritersArguments) -> dict:
    from inference import Embedder

    data = load_dataset(args.dataset, args.reference_split)
    doc_ids = list(data.corpus)
    embedder = Embedder(args.retriever, show_progress=False)
    doc_emb = encode_corpus_cached(embedder, data.corpus, args.embedding_cache_dir)
    reference = [(data.queries[q], set(rels)) for q, rels in data.qrels.items() if q in data.queries]
    rows = {f"real {args.reference_split} queries": {**ease(source_ranks(
        embedder, doc_emb, doc_ids, [t for t, _ in reference], [s for _, s in reference]), args.round_trip_depth)}}
    for name, spec in args.writers.items():
        folder = write_queries(args, name, spec or {})
        manifest = read_manifest(folder) or {}
        kept = [row for _, row in iter_jsonl(folder / "queries.jsonl")]
        ranks = source_ranks(embedder, doc_emb, doc_ids, [r["query"] for r in kept], [{r["doc_id"]} for r in kept])
        generation = manifest.get("generation", {})
        rows[name] = {**ease(ranks, args.round_trip_depth), "documents": manifest.get("counts", {}).get("items"),
                      "dropped": manifest.get("counts", {}).get("dropped", {}),
                      "tokens_per_second": generation.get("tokens_per_second"), "seconds": generation.get("seconds"),
                      "sample": [r["query"] for r in kept[:3]]}
    results = {"dataset": args.dataset, "retriever": args.retriever, "documents": args.documents,
               "round_trip_depth": args.round_trip_depth, "writers": args.writers, "rows": rows}
    atomic_write_json(Path(args.output_dir) / "results.json", results)
    atomic_write_text(Path(args.output_dir) / "results.md", table(results))
    return results


def table(results: dict) -> str:
    depth = results["round_trip_depth"]
    lines = [f"Base retriever {results['retriever']}; {results['documents']} seeded documents per writer.", "",
             f"| writer | queries kept | dropped | source 1st | top 5 | top {depth} (round trip) | MRR | new tokens/s |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, r in results["rows"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(r.get("dropped", {}).items())) or "—"
        speed = f"{r['tokens_per_second']:.1f}" if r.get("tokens_per_second") else "—"
        lines.append(f"| {name} | {r['queries']} | {dropped if 'documents' in r else '—'} | {r['rank_1']:.1%} | "
                     f"{r['top_5']:.1%} | {r['round_trip']:.1%} | {r['mrr']:.3f} | {speed} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    args = parse_args(QueryWritersArguments, argv, prog="python -m experiments.query_writers")
    print(table(run(args)))
    return 0


if __name__ == "__main__":
    run_cli(main)
