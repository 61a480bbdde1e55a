"""Choose a profile's retriever settings on the *train* qrels, never on test: retrain the round's retriever under
each variant and score it on a dev set of train queries.

    python -m experiments.dev_ablation --config experiments/configs/dev_ablation.yaml

Needs a finished first round of the profile (``make demo`` writes one): its mined rows
(``synthetic/retriever_data/train.jsonl``, each with the rank at which the base retriever found its source) and
its generator. A variant may
- rerun round 1's query and retriever-data steps with another number of pseudo-queries (``queries: n``), or its
  retriever-data step on another writer's pseudo-queries (``pseudo_queries: PATH``, a stage-A ``queries.jsonl``,
  e.g. from ``experiments.query_writers``),
- filter the rows by round trip (``round_trip: k`` keeps a pseudo-query whose source ranked in the top k, exactly
  what ``generate_retriever_data --filter_data true --filter_num k`` keeps),
- score them with a teacher (``teacher: listwise | query_likelihood``: the distill stage run with the round's
  generator, once per teacher; ``hybrid``: BM25 + the base retriever, no generator),
- override the profile's ``train_retriever`` settings,
- or not train at all (``train: false``: the base retriever),
- or reuse an earlier variant's trained retriever (``retriever_of: name``) and score it another way
  (``method``: ``raw``, the default; ``reinforced_ir``, the query fused with the round generator's answer;
  ``hybrid``, BM25 at ``fusion_weight``; ``label_free``, BM25 at the weight ``evaluation.label_free`` chooses on
  the round's pseudo-queries),
- and rerank that row's top documents by query likelihood (``rerank: {top_k: K, weight: W}``: the profile's base
  generator, ``evaluation.evaluate --rerank_type query_likelihood``, fused with the first stage at W).
Each trained variant runs the real trainer (torchrun) from the base retriever, then ``evaluation.evaluate`` on the
dev set: ``max_queries`` seeded train queries against their judged documents plus ``corpus_sample`` seeded others.
Absolute dev scores are higher than full-corpus ones; only the differences count, and each row carries a paired
p-value against the base retriever. Output: ``results.json`` and ``results.md`` in ``output_dir``; finished
variants are reused when their settings and rows are unchanged.

``purpose: report`` makes a table to read, not to choose by (``make demo-full``'s ablation on the full test split,
``max_queries`` and ``corpus_sample`` null): each row is paired against the row above and against the base. Only
then may ``split`` be ``test``; the settings it reports were chosen before, on train qrels or pseudo-queries.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from data_generation.generate_retriever_data import passes_round_trip
from data_generation.stage import require_complete_stage
from evaluation.stats import compare
from inference.config import parse_args
from inference.errors import UserError, run_cli
from inference.io import atomic_write_json, atomic_write_text, file_sha256, iter_jsonl

from scripts.self_boost import SelfBoostConfig, round_dir
from scripts.steps import torchrun_command

logger = logging.getLogger(__name__)
VARIANT_KEYS = {"train", "queries", "pseudo_queries", "round_trip", "teacher", "train_retriever", "method",
                "retriever_of", "rerank"}
TRAINING_KEYS = VARIANT_KEYS - {"method", "retriever_of", "rerank"}
TEACHERS = ("listwise", "query_likelihood", "hybrid")
METHODS = ("raw", "reinforced_ir", "hybrid", "label_free")
PURPOSES = ("choose", "report")


@dataclass
class DevAblationArguments:
    """Retrain the round's retriever per variant and score each on train-qrels dev queries."""
    run_config: str = field(default="", metadata={"help": "the self-boost profile whose round 1 is ablated"})
    output_dir: str = field(default="", metadata={"help": "everything this ablation writes"})
    split: str = field(default="train", metadata={"help": "qrels split of the dev queries (never test to choose)"})
    purpose: str = field(default="choose", metadata={"help": "choose: rows against the base and the first trained "
                                                                "row; report: each row against the row above"})
    max_queries: int | None = field(default=400, metadata={"help": "seeded judged queries (null: all)"})
    corpus_sample: int | None = field(default=1200, metadata={"help": "seeded unjudged documents (null: the corpus)"})
    seed: int = 0
    fusion_weight: float = field(default=0.5, metadata={"help": "BM25's share in the hybrid row (minmax)"})
    variants: dict = field(default_factory=dict, metadata={"help": "name → {train, queries, round_trip, teacher, "
                                                                     "train_retriever}"})

    def validate(self) -> None:
        for name in ("run_config", "output_dir"):
            if not getattr(self, name):
                raise UserError("required", field=name)
        if self.purpose not in PURPOSES:
            raise UserError(f"must be one of {', '.join(PURPOSES)}", field="purpose")
        if self.split == "test" and self.purpose != "report":
            raise UserError("settings are chosen on train (or dev) qrels, never on test (purpose: report only "
                            "reads a table)", field="split")
        if not self.variants:
            raise UserError("name at least one variant", field="variants")
        for position, (name, spec) in enumerate(self.variants.items()):
            spec = spec or {}
            if unknown := sorted(set(spec) - VARIANT_KEYS):
                raise UserError(f"unknown key(s) {', '.join(unknown)}", field=f"variants.{name}")
            if spec.get("teacher") not in (None, *TEACHERS):
                raise UserError(f"must be one of {', '.join(TEACHERS)}", field=f"variants.{name}.teacher")
            if spec.get("method", "raw") not in METHODS:
                raise UserError(f"must be one of {', '.join(METHODS)}", field=f"variants.{name}.method")
            if "rerank" in spec:
                check_rerank(name, spec)
            if "retriever_of" in spec:
                self.check_reuse(name, spec, list(self.variants)[:position])
            if spec.get("queries") is not None and (not isinstance(spec["queries"], int) or spec["queries"] < 1):
                raise UserError("must be a number of pseudo-queries ≥ 1", field=f"variants.{name}.queries")
            if spec.get("queries") and spec.get("pseudo_queries"):
                raise UserError("give queries (a number to write) or pseudo_queries (a file), not both",
                                field=f"variants.{name}")
            if (spec.get("queries") or spec.get("pseudo_queries")) and spec.get("teacher"):
                raise UserError("teacher scores are for the round's own rows; drop queries or teacher",
                                field=f"variants.{name}")

    def check_reuse(self, name: str, spec: dict, earlier: list[str]) -> None:
        source = spec["retriever_of"]
        if source not in earlier or (self.variants[source] or {}).get("retriever_of"):
            raise UserError("must name an earlier variant that trains or loads its own retriever",
                            field=f"variants.{name}.retriever_of")
        if extra := sorted(set(spec) & TRAINING_KEYS):
            raise UserError(f"a reused retriever is not trained again: drop {', '.join(extra)}",
                            field=f"variants.{name}")


def check_rerank(name: str, spec: dict) -> None:
    field_name, rerank = f"variants.{name}.rerank", spec["rerank"]
    if first_stage(spec.get("method", "raw")) != "hybrid":  # the table's hybrid column is that first stage
        raise UserError("reranks a hybrid first stage: add method: hybrid or label_free", field=field_name)
    if not isinstance(rerank, dict) or set(rerank) != {"top_k", "weight"}:
        raise UserError("must be {top_k: K, weight: W}", field=field_name)
    if not isinstance(rerank["top_k"], int) or rerank["top_k"] < 1:
        raise UserError("must be a number of documents ≥ 1", field=f"{field_name}.top_k")
    if not isinstance(rerank["weight"], (int, float)) or not 0 <= rerank["weight"] <= 1:
        raise UserError("must be in [0, 1]", field=f"{field_name}.weight")


def run_module(module: str, argv: list[str], torchrun: int = 0) -> None:
    """Run one of the project's CLIs as a user does; its own one-line error stops the ablation."""
    if torchrun > 1:
        cmd = torchrun_command(torchrun, module, argv)
    else:
        cmd = [sys.executable, "-m", module, *argv]
    print("+ " + " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise UserError(f"{module} failed (its message is above)")


def teacher_rows(args: DevAblationArguments, cfg: SelfBoostConfig, teacher: str) -> Path:
    """The round's mined rows scored by the round's generator (the distill stage, resumable)."""
    r = round_dir(cfg, 1)
    out = Path(args.output_dir) / f"distill-{teacher}"
    options = {**cfg.distill, "teacher_scoring": teacher, "task": cfg.task, "seed": cfg.seed,
               "generator_backend": cfg.generator_backend, "generator": str(r / "generator" / "merged_model"),
               "retriever_data_path": str(r / "synthetic" / "retriever_data" / "train.jsonl"),
               "retriever": cfg.base_retriever, "dataset": cfg.dataset,  # the hybrid teacher's
               "embedding_cache": cfg.embedding_cache or "none",
               "output_dir": str(out), "max_fallback_share": 1.0}  # listwise fallbacks are reported, not refused
    config = out.with_suffix(".yaml")
    atomic_write_text(config, yaml.safe_dump(options, sort_keys=False))
    run_module("data_generation.generate_retriever_distill_data", ["--config", str(config)])
    return out / "train_distill.jsonl"


def pseudo_query_rows(args: DevAblationArguments, cfg: SelfBoostConfig, n: int | None = None,
                      queries_file: str | None = None) -> Path:
    """Round 1's query and retriever-data steps rerun with ``n`` pseudo-queries, or its retriever-data step alone
    on ``queries_file`` (another writer's stage-A output): the round's own step configs with only ``train_num`` and
    the paths changed (same prompts, generators, mining and round trip); both resumable."""
    configs = round_dir(cfg, 1) / "configs"
    if queries_file and not Path(queries_file).is_file():  # checked when the variant runs: it may be written later
        raise UserError("no such stage-A queries.jsonl (experiments.query_writers writes one)", file=queries_file,
                        field="pseudo_queries")
    if queries_file:
        out = Path(args.output_dir) / f"queries-{re.sub(r'[^A-Za-z0-9.-]+', '_', str(queries_file)).strip('_')}"
        steps = (("retriever_data", "data_generation.generate_retriever_data", {"queries_path": str(queries_file)}),)
    else:
        out = Path(args.output_dir) / f"queries-{n}"
        steps = (("queries", "data_generation.generate_queries", {"train_num": n}),
                 ("retriever_data", "data_generation.generate_retriever_data",
                  {"queries_path": str(out / "queries" / "queries.jsonl")}))
    for step, module, overrides in steps:
        options = {**yaml.safe_load((configs / f"{step}.yaml").read_text()), **overrides,
                   "output_dir": str(out / step)}
        atomic_write_text(out / f"{step}.yaml", yaml.safe_dump(options, sort_keys=False))
        run_module(module, ["--config", str(out / f"{step}.yaml")])
    return out / "retriever_data" / "train.jsonl"


def variant_rows(args: DevAblationArguments, cfg: SelfBoostConfig, spec: dict, folder: Path) -> Path:
    mined = pseudo_query_rows(args, cfg, spec.get("queries"), spec.get("pseudo_queries")) \
        if spec.get("queries") or spec.get("pseudo_queries") else \
        round_dir(cfg, 1) / "synthetic" / "retriever_data" / "train.jsonl"
    source = teacher_rows(args, cfg, spec["teacher"]) if spec.get("teacher") else mined
    k = spec.get("round_trip")
    if k is None:
        return source
    rank = {row["id"]: row["pos_rank"] for _, row in iter_jsonl(mined)}
    kept = [row for _, row in iter_jsonl(source) if passes_round_trip(rank[row["id"]], k)]
    path = folder / "train.jsonl"
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return path


def label_free_weight(cfg: SelfBoostConfig) -> float:
    """BM25's share as the round's label-free rule chose it on pseudo-queries (a property of the corpus)."""
    report = cfg.run_dir / "report.json"
    choice = json.loads(report.read_text()).get("label_free_choice") if report.is_file() else None
    if not choice:
        raise UserError("method label_free needs the round's finished report with a label_free_choice", file=report)
    return float(choice["weight"])


def evaluate(args: DevAblationArguments, cfg: SelfBoostConfig, retriever: str, output: Path, spec: dict) -> dict:
    """``evaluation.evaluate`` of one retriever: raw and hybrid always, plus the row's generative method; a reranked
    row scores its first stage only (each method's top documents would be scored again)."""
    method, rerank = spec.get("method", "raw"), spec.get("rerank")
    if not output.is_file():
        weight = label_free_weight(cfg) if method == "label_free" else args.fusion_weight
        sampled = args.corpus_sample is not None
        methods = "raw,hybrid" + (",reinforced_ir" if method == "reinforced_ir" else "")
        argv = ["--dataset", cfg.dataset, "--split", args.split, "--retriever", retriever,
                "--methods", first_stage(method) if rerank else methods,
                "--fusion_weight", str(weight), "--seed", str(args.seed), "--output", str(output),
                # a sampled corpus is this dev set's alone; full-corpus vectors are worth keeping
                "--embedding_cache", "none" if sampled else (cfg.embedding_cache or "none")]
        if args.max_queries is not None:
            argv += ["--max_queries", str(args.max_queries)]
        if sampled:
            argv += ["--corpus_sample", str(args.corpus_sample)]
        if method == "reinforced_ir":
            argv += ["--generator", str(round_dir(cfg, 1) / "generator" / "merged_model"), "--task", cfg.task,
                     "--generator_backend", cfg.generator_backend,
                     "--max_new_tokens", str(cfg.evaluate.get("max_new_tokens", 128))]
        if rerank:
            argv += ["--reranker", cfg.base_generator, "--rerank_type", "query_likelihood", "--task", cfg.task,
                     "--rerank_top_k", str(rerank["top_k"]), "--rerank_weight", str(rerank["weight"]),
                     "--rerank_batch_size", "16"]
        run_module("evaluation.evaluate", argv)
    return json.loads(output.read_text())


def variant_folder(args: DevAblationArguments, name: str) -> Path:
    return Path(args.output_dir) / "variants" / re.sub(r"[^A-Za-z0-9=.-]+", "_", name).strip("_")


def record_identity(args: DevAblationArguments, folder: Path, spec: dict, identity: dict) -> dict:
    """Write the variant's identity (settings, rows, evaluation); a changed one discards its retriever and scores."""
    scoring = {"method": spec.get("method", "raw"), **({"rerank": spec["rerank"]} if "rerank" in spec else {})}
    identity = {**identity, **scoring, "evaluation": [args.split, args.max_queries, args.corpus_sample,
                                                               args.seed, args.fusion_weight]}
    record = folder / "variant.json"
    if record.is_file() and json.loads(record.read_text()) != identity:  # settings or rows changed: redo it
        shutil.rmtree(folder / "retriever", ignore_errors=True)
        (folder / "scores.json").unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, identity)
    return identity


def run_variant(args: DevAblationArguments, cfg: SelfBoostConfig, name: str, spec: dict, done: dict) -> dict:
    folder, method, scored = variant_folder(args, name), row_label(spec), scored_method(spec)
    if "retriever_of" in spec:
        source = done[spec["retriever_of"]]
        record_identity(args, folder, spec, {"retriever_of": source["identity"]})
        return {**source, "name": name, "method": method, "scored": scored,
                "scores": evaluate(args, cfg, source["retriever"], folder / "scores.json", spec)}
    if not spec.get("train", True):
        identity = record_identity(args, folder, spec, {"base": cfg.base_retriever})
        return {"name": name, "trained": False, "rows": 0, "method": method, "scored": scored,
                "retriever": cfg.base_retriever, "identity": identity,
                "scores": evaluate(args, cfg, cfg.base_retriever, folder / "scores.json", spec)}
    folder.mkdir(parents=True, exist_ok=True)
    rows = variant_rows(args, cfg, spec, folder)
    identity = record_identity(args, folder, spec, {
        "spec": spec, "train_retriever": cfg.train_retriever, "base_retriever": cfg.base_retriever,
        "rows_sha256": file_sha256(rows), "seed": cfg.seed})
    train_variant(cfg, name, spec, rows, folder)
    return {"name": name, "trained": True, "rows": sum(1 for _ in iter_jsonl(rows)), "method": method,
            "scored": scored, "retriever": str(folder / "retriever"), "identity": identity,
            "scores": evaluate(args, cfg, str(folder / "retriever"), folder / "scores.json", spec)}


def train_variant(cfg: SelfBoostConfig, name: str, spec: dict, rows: Path, folder: Path) -> None:
    options = {"retriever": cfg.base_retriever, "seed": cfg.seed, "use_cpu": True, "train_data": [str(rows)],
               "output_dir": str(folder / "retriever"), **cfg.train_retriever, **(spec.get("train_retriever") or {})}
    if options.get("knowledge_distillation") and not spec.get("teacher"):
        raise UserError("knowledge_distillation needs teacher scores: add teacher: "
                        f"{' | '.join(TEACHERS)}", field=f"variants.{name}")
    atomic_write_text(folder / "train_retriever.yaml", yaml.safe_dump(options, sort_keys=False))
    run_module("finetune.retriever.train", ["--config", str(folder / "train_retriever.yaml")], cfg.nproc_per_node)


def first_stage(method: str) -> str:
    """The evaluate CLI's method behind a row's (label_free is the hybrid at the chosen weight)."""
    return "hybrid" if method == "label_free" else method


def row_label(spec: dict) -> str:
    """The row's method as the table shows it: the variant's own method, reranked at its weight if it is."""
    method, rerank = spec.get("method", "raw"), spec.get("rerank")
    return f"{method}+rerank@{rerank['weight']:g}" if rerank else method


def scored_method(spec: dict) -> str:
    """The evaluate CLI's run a row reads: its first stage, or that run reranked at the row's weight."""
    return row_label({**spec, "method": first_stage(spec.get("method", "raw"))})


def per_query(result: dict) -> dict[str, float]:
    return result["scores"]["per_query_ndcg@10"][result["scored"]]


def summarise(args: DevAblationArguments, results: list[dict]) -> list[dict]:
    """Each row against the base retriever and against a reference: the first trained row (choose) or the row
    above (report)."""
    base = next((r for r in results if not r["trained"]), results[0])
    first_trained = next((r for r in results if r["trained"]), None)
    table = []
    for i, r in enumerate(results):
        row = {"name": r["name"], "rows": r["rows"], "method": r["method"],
               "ndcg@10": r["scores"]["methods"][r["scored"]]["ndcg@10"],
               "hybrid_ndcg@10": r["scores"]["methods"]["hybrid"]["ndcg@10"]}
        reference = results[i - 1] if args.purpose == "report" and i else \
            (first_trained if args.purpose == "choose" else None)
        for label, other in (("base", base), ("reference", reference)):
            if other is not None and other is not r:
                vs = compare(r["name"], per_query(r), other["name"], per_query(other))
                row[f"vs_{label}"] = {"name": other["name"], "delta": vs.delta, "p_value": vs.p_value,
                                      "delta_ci95": list(vs.delta_ci95)}
        table.append(row)
    return table


def _stats(row: dict, label: str, interval: bool) -> str:
    vs = row.get(f"vs_{label}")
    if vs is None:
        return "— | — | —" if interval else "— | —"
    lo, hi = vs["delta_ci95"]
    ci = f" | [{100 * lo:+.2f}, {100 * hi:+.2f}]" if interval else ""
    return f"{100 * vs['delta']:+.2f}{ci} | {vs['p_value']:.3g}"


def describe_queries(args: DevAblationArguments) -> str:
    queries = "all judged" if args.max_queries is None else f"{args.max_queries} seeded"
    docs = "the full corpus" if args.corpus_sample is None else \
        f"their judged documents plus {args.corpus_sample} seeded others"
    return f"{queries} {args.split} queries (seed {args.seed}) against {docs}"


def markdown(args: DevAblationArguments, table: list[dict]) -> str:
    if args.purpose == "report":
        head = [f"Report only (no setting was chosen by this table): {describe_queries(args)}. Each row is paired "
                "against the row above and against the base retriever (nDCG@10 points, 95% bootstrap interval, "
                "paired randomisation p).", "",
                "| row | rows | scored as | nDCG@10 | Δ vs row above | 95% CI | p | Δ vs base | p |",
                "|---|---:|---|---:|---:|---|---:|---:|---:|"]
        body = [f"| {r['name']} | {r['rows']} | {r['method']} | {r['ndcg@10']:.4f} | {_stats(r, 'reference', True)} | "
                f"{_stats(r, 'base', False)} |" for r in table]
        return "\n".join(head + body) + "\n"
    reference = next((r["vs_reference"]["name"] for r in table if "vs_reference" in r), "—")
    lines = [f"Dev set: {describe_queries(args)}. Hybrid: minmax, BM25 weight {args.fusion_weight:g}. "
             f"Reference row: {reference}.", "",
             "| variant | rows | dev nDCG@10 | Δ vs base (points) | 95% CI | p | Δ vs reference | p | hybrid nDCG@10 |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in table:
        lines.append(f"| {r['name']} | {r['rows']} | {r['ndcg@10']:.4f} | {_stats(r, 'base', True)} | "
                     f"{_stats(r, 'reference', False)} | {r['hybrid_ndcg@10']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    args = parse_args(DevAblationArguments, argv, prog="python -m experiments.dev_ablation")
    cfg = parse_args(SelfBoostConfig, ["--config", args.run_config], prog="run_config")
    require_complete_stage(round_dir(cfg, 1) / "synthetic" / "retriever_data" / "train.jsonl",
                           "generate_retriever_data")
    done: dict[str, dict] = {}
    for name, spec in args.variants.items():
        done[name] = run_variant(args, cfg, name, spec or {}, done)
    table = summarise(args, list(done.values()))
    atomic_write_json(Path(args.output_dir) / "results.json", {"arguments": vars(args), "variants": table})
    md = markdown(args, table)
    atomic_write_text(Path(args.output_dir) / "results.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    run_cli(main)
