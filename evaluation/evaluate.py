"""Evaluate a retriever (optionally with query augmentation) on a BEIR / AIR-Bench folder.

    python -m evaluation.evaluate --retriever sentence-transformers/all-MiniLM-L6-v2 \
        --dataset ../shared/data/scifact --split test --method raw --output results.json

Writes JSON (``metrics``, run info, load report, timings) and prints a markdown table.
"""
from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from inference.config import EmbeddingCacheArguments, parse_args
from inference.errors import UserError, run_cli
from inference.hybrid import DEFAULT_FUSION, DEFAULT_HYBRID_DEPTH, DEFAULT_HYBRID_WEIGHT, FUSIONS, HybridCandidates
from inference.io import atomic_write_json, atomic_write_text
from inference.manifest import package_versions
from inference.search import exact_search, results_to_run
from inference.sparse import BM25Config

from .baselines import GENERATIVE_METHODS, METHODS, GenerationSettings, encode_queries
from .data import RetrievalDataset, load_dataset
from .evaluator import RetrievalEvaluator, RetrievalResult, evaluation_query_ids
from .search import bm25_index_cached, encode_corpus_cached
from .stats import PairedComparison, compare

# Methods that use BM25: ``bm25`` alone, ``hybrid`` = BM25 fused with the raw dense query (inference.hybrid).
LEXICAL_METHODS = ("bm25", "hybrid")
ALL_METHODS = METHODS + LEXICAL_METHODS

logger = logging.getLogger(__name__)


@dataclass
class EvaluateArguments(EmbeddingCacheArguments):
    """Evaluate a retriever, optionally with generated query augmentation, with pytrec_eval."""
    dataset: str = field(metadata={"help": "dataset folder (BEIR or AIR-Bench layout)"})
    retriever: str = field(default="sentence-transformers/all-MiniLM-L6-v2",
                           metadata={"help": "retriever name or path"})
    split: str = "test"
    method: str = field(default="raw", metadata={"help": "raw | hyde | query2doc | reinforced_ir | bm25 | hybrid"})
    methods: list[str] | None = field(default=None, metadata={"help": "several methods in one run, comma-separated"})
    generator: str | None = field(default=None, metadata={"help": "generator name or path (generative methods)"})
    generator_backend: str | None = field(default=None, metadata={"help": "hf | openai | vllm"})
    task: str | None = field(default=None, metadata={"help": "prompt task name (default: the dataset folder name)"})
    output: str | None = field(default=None, metadata={"help": "results JSON path"})
    top_k: int = 1000
    retriever_batch_size: int = field(default=64, metadata={"help": "texts per retriever encoding batch",
                                                            "aliases": ("batch_size",)})
    pooling_method: str | None = None
    normalize_embeddings: bool | None = field(default=None, metadata={
        "help": "L2-normalise embeddings (default: the model folder's setting, else true)", "aliases": ("normalize",)})
    query_instruction: str | None = None
    passage_instruction: str | None = None
    max_length: int | None = None
    devices: list[str] | None = None
    augmentation_weight: float = 0.2
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    num_generations: int = 1
    generation_batch_size: int = 32
    max_queries: int | None = field(default=None, metadata={"help": "seeded subset of the judged queries"})
    query_ids_file: str | None = field(default=None, metadata={
        "help": "evaluate only these query ids (one per line), e.g. rows_from_qrels' heldout_query_ids.txt"})
    reranker: str | None = field(default=None, metadata={"help": "reranker for each method's top documents",
                                                        "aliases": ("rerank",)})
    rerank_type: str = field(default="auto", metadata={
        "help": "auto | cross-encoder | colbert | llm | query_likelihood (a generator: UPR, no training)"})
    rerank_top_k: int = 100
    rerank_max_length: int | None = field(default=None, metadata={
        "help": "tokens per (query, passage); default: the reranker's training length, else 256 "
                "(query_likelihood: passage tokens, 192)"})
    rerank_batch_size: int = 32
    rerank_dtype: str = field(default="auto", metadata={
        "help": "query_likelihood: auto (bf16 where the hardware computes it natively, else fp32 on CPU) | fp32 | "
                "bf16 | fp16"})
    rerank_weight: list[float] = field(default_factory=list, metadata={
        "help": "the reranker's share, min-max fused with the first stage's scores (default: reranker order "
                "only); several, comma-separated, are each reported as METHOD+rerank@W from one scoring pass"})
    corpus_sample: int | None = field(default=None, metadata={
        "help": "dev speed: keep the judged documents of the evaluated queries plus this many seeded random others "
                "(scores are then not comparable to full-corpus figures)"})
    fusion: str = field(default=DEFAULT_FUSION, metadata={"help": "hybrid fusion: minmax | rrf"})
    fusion_weight: float = field(default=DEFAULT_HYBRID_WEIGHT, metadata={
        "help": "hybrid: BM25's share (0 = dense ranking, 1 = BM25 ranking)"})
    hybrid_depth: int = field(default=DEFAULT_HYBRID_DEPTH, metadata={"help": "hybrid: candidates taken from each retriever"})
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    seed: int = 0
    generation_cache: str | None = field(default=None, metadata={"help": "openai backend response cache folder"})
    generator_dtype: str = field(default="auto", metadata={"help": "hf / vllm: auto (fp32 on CPU) | fp32 | bf16 | fp16"})
    max_model_len: int | None = field(default=None, metadata={"help": "vllm backend: context length"})

    def validate(self) -> None:
        for m in self.method_list:
            if m not in ALL_METHODS:
                raise UserError(f"must be one of {', '.join(ALL_METHODS)}, got {m!r}", field="method")
        if self.fusion not in FUSIONS:
            raise UserError(f"must be one of {', '.join(FUSIONS)}, got {self.fusion!r}", field="fusion")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise UserError("must be in [0, 1]", field="fusion_weight")
        if self.hybrid_depth < 1:
            raise UserError("must be ≥ 1", field="hybrid_depth")
        if any(m in GENERATIVE_METHODS for m in self.method_list) and not self.generator:
            raise UserError("generative methods need --generator", field="generator")
        if self.max_queries is not None and self.max_queries < 1:
            raise UserError("must be ≥ 1", field="max_queries")
        if self.rerank_top_k < 1:
            raise UserError("must be ≥ 1", field="rerank_top_k")
        if any(not 0.0 <= w <= 1.0 for w in self.rerank_weight):
            raise UserError("must be in [0, 1]", field="rerank_weight")
        if self.corpus_sample is not None and self.corpus_sample < 0:
            raise UserError("must be ≥ 0", field="corpus_sample")

    @property
    def method_list(self) -> list[str]:
        return self.methods or [self.method]


def sample_corpus(corpus: dict[str, dict], qrels: dict[str, dict[str, int]], query_ids: list[str],
                  others: int, seed: int) -> dict[str, dict]:
    """The judged documents of ``query_ids`` plus ``others`` seeded random documents, in corpus order."""
    judged = {d for q in query_ids for d in qrels.get(q, {}) if d in corpus}
    rest = sorted(d for d in corpus if d not in judged)
    keep = judged | set(random.Random(seed).sample(rest, min(others, len(rest))))
    return {d: doc for d, doc in corpus.items() if d in keep}


def format_table(rows: dict[str, dict[str, float]], metrics: Sequence[str] = ("ndcg@10", "recall@100", "mrr@10",
                                                                           "map@100")) -> str:
    lines = ["| method | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in metrics) + " |")
    return "\n".join(lines)


class Searchers:
    """The run's embedder, corpus vectors and BM25 index, each built on first use (``--method bm25`` never
    loads a neural model)."""

    def __init__(self, args: EvaluateArguments, ds: RetrievalDataset):
        self.args, self.ds = args, ds
        self.cache = args.embedding_cache_dir
        self.timings: dict[str, float] = {}

    @functools.cached_property
    def embedder(self):
        from inference import Embedder

        a = self.args
        return Embedder(a.retriever, pooling_method=a.pooling_method, normalize=a.normalize_embeddings,
                        query_instruction=a.query_instruction, passage_instruction=a.passage_instruction,
                        max_length=a.max_length, batch_size=a.retriever_batch_size, devices=a.devices)

    @functools.cached_property
    def doc_emb(self):
        t = time.perf_counter()
        emb = encode_corpus_cached(self.embedder, self.ds.corpus, self.cache)
        self.timings["encode_corpus"] = time.perf_counter() - t
        return emb

    @functools.cached_property
    def bm25(self):
        t = time.perf_counter()
        index = bm25_index_cached(self.ds.corpus, self.cache, BM25Config(k1=self.args.bm25_k1, b=self.args.bm25_b))
        self.timings["bm25_index"] = time.perf_counter() - t
        return index

    def search(self, method: str, queries: list[str], query_ids: list[str], generator, task, settings
               ) -> tuple[dict, list]:
        """``(run, generations)`` of one method over the queries."""
        a = self.args
        if method == "bm25":
            scores, ids = self.bm25.search(queries, a.top_k)
            return results_to_run(scores, ids, query_ids, self.ds.doc_ids), []
        encoded = encode_queries("raw" if method == "hybrid" else method, queries, self.embedder, generator, task,
                                 settings, a.augmentation_weight)
        if method == "hybrid":
            candidates = HybridCandidates.gather(encoded.embeddings, self.doc_emb, self.bm25, queries, a.hybrid_depth)
            scores, ids = candidates.fuse(a.fusion_weight, a.fusion, a.top_k)
        else:
            scores, ids = exact_search(encoded.embeddings, self.doc_emb, a.top_k)
        return results_to_run(scores, ids, query_ids, self.ds.doc_ids), encoded.generations

    def describe(self) -> dict:
        """What was used, for the run record: only the parts that were built."""
        a = self.args
        out = {"retriever": self.embedder.identity if "embedder" in self.__dict__ else None}
        if "bm25" in self.__dict__:
            out["bm25"] = self.bm25.config.identity
        if "hybrid" in a.method_list:
            out["hybrid"] = {"fusion": a.fusion, "weight": a.fusion_weight, "depth": a.hybrid_depth}
        return out


def select_evaluation_queries(args: EvaluateArguments, ds: RetrievalDataset) -> list[str]:
    return evaluation_query_ids(ds, args.split, args.query_ids_file, args.max_queries, args.seed)


def load_run_generator(args: EvaluateArguments):
    from inference import load_generator

    return load_generator(args.generator, backend=args.generator_backend, batch_size=args.generation_batch_size,
                          cache_dir=args.generation_cache, dtype=args.generator_dtype,
                          max_model_len=args.max_model_len)


def load_run_reranker(args: EvaluateArguments, task_name: str):
    from inference.prompts import get_task
    from inference.reranker import load_reranker

    try:  # the task's instruction (LLM reranker) or query-generation prompt (query likelihood), when known
        task = get_task(task_name)
    except UserError:
        task = None
    return load_reranker(args.reranker, args.rerank_type, task=task, max_length=args.rerank_max_length,
                         batch_size=args.rerank_batch_size, dtype=args.rerank_dtype)


@dataclass
class EvaluationModels:
    """What one evaluation run searches and generates with; each part only when a method needs it."""
    searchers: Searchers
    settings: GenerationSettings
    task: object = None
    generator: object = None
    reranker: object = None

    @classmethod
    def load(cls, args: EvaluateArguments, ds: RetrievalDataset) -> "EvaluationModels":
        from inference.prompts import get_task

        # Resolve the prompt task before any model work, so a bad --task fails in a second, not minutes.
        generative = any(m in GENERATIVE_METHODS for m in args.method_list)
        task = get_task(args.task or ds.name) if generative else None
        reranker = load_run_reranker(args, args.task or ds.name) if args.reranker else None
        settings = GenerationSettings(temperature=args.temperature, top_p=args.top_p,
                                      max_new_tokens=args.max_new_tokens, num_generations=args.num_generations,
                                      seed=args.seed)
        return cls(Searchers(args, ds), settings, task, load_run_generator(args) if generative else None, reranker)

    def describe(self, args: EvaluateArguments) -> dict:
        g, r = self.generator, self.reranker
        return {**self.searchers.describe(), "task": None if self.task is None else self.task.name,
                "generator": None if g is None else g.describe(),
                "reranker": None if r is None else {**r.describe(), "top_k": args.rerank_top_k,
                                                    "weights": args.rerank_weight or None},
                "generation": None if g is None else {**asdict(self.settings), **g.stats.as_dict()}}


def load_evaluation_set(args: EvaluateArguments) -> tuple[RetrievalDataset, RetrievalEvaluator]:
    """The dataset (corpus sampled when asked) and an evaluator over the selected judged queries."""
    ds = load_dataset(args.dataset, args.split)
    query_ids = select_evaluation_queries(args, ds)
    if args.corpus_sample is not None:
        ds.corpus = sample_corpus(ds.corpus, ds.qrels, query_ids, args.corpus_sample, args.seed)
    logger.info("%s/%s: %d documents, %d judged queries evaluated", ds.name, args.split, len(ds.corpus),
                len(query_ids))
    evaluator = RetrievalEvaluator({q: ds.queries[q] for q in query_ids}, ds.corpus,
                                   {q: ds.qrels[q] for q in query_ids}, name=f"{ds.name}/{args.split}")
    return ds, evaluator


@dataclass
class MethodScores:
    results: dict[str, dict] = field(default_factory=dict)
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    generations: dict[str, list] = field(default_factory=dict)
    first_stage: dict[str, str] = field(default_factory=dict)  # reranked method -> the run it reranked

    def add(self, name: str, result: RetrievalResult, reranks: str | None = None) -> None:
        self.results[name], self.per_query[name] = result.metrics, result.per_query
        if reranks is not None:
            self.first_stage[name] = reranks

    def rerank_comparisons(self) -> list[PairedComparison]:
        """Each reranked run against its first stage, per query: paired p-value and bootstrap intervals."""
        return [compare(name, self.per_query[name], base, self.per_query[base])
                for name, base in self.first_stage.items()]


def score_methods(args: EvaluateArguments, evaluator: RetrievalEvaluator, models: EvaluationModels,
                  timings: dict[str, float]) -> MethodScores:
    """Each method's first-stage run scored, then (with --reranker) its top documents reranked and scored."""
    scores = MethodScores()
    query_ids = evaluator.query_ids
    queries = [evaluator.queries[q] for q in query_ids]
    for method in args.method_list:
        t = time.perf_counter()
        run, generated = models.searchers.search(method, queries, query_ids, models.generator, models.task,
                                                 models.settings)
        scores.add(method, evaluator.score_run(run))
        timings[f"method:{method}"] = time.perf_counter() - t
        if models.reranker is not None:  # second stage on the raw query text, reported beside the first stage
            from inference.reranker import order_reranked, rescore_top

            t = time.perf_counter()
            rescored = rescore_top(run, evaluator.queries, evaluator.corpus, models.reranker, args.rerank_top_k)
            for w in args.rerank_weight or [None]:
                name = f"{method}+rerank" if w is None else f"{method}+rerank@{w:g}"
                scores.add(name, evaluator.score_run(order_reranked(run, rescored, w)), reranks=method)
            timings[f"rerank:{method}"] = time.perf_counter() - t
        if generated:
            scores.generations[method] = [{"query_id": q, "query": text, "generations": g}
                                          for q, text, g in zip(query_ids, queries, generated)]
    return scores


def run_evaluation(args: EvaluateArguments) -> dict:
    started = time.perf_counter()
    ds, evaluator = load_evaluation_set(args)
    timings: dict[str, float] = {"load": time.perf_counter() - started}
    models = EvaluationModels.load(args, ds)
    scores = score_methods(args, evaluator, models, timings)
    timings.update(models.searchers.timings)
    timings["total"] = time.perf_counter() - started
    report = {
        "metrics": scores.results[args.method_list[0]],
        "methods": scores.results,
        "per_query_ndcg@10": scores.per_query,
        "rerank_comparisons": [c.as_dict() for c in scores.rerank_comparisons()],
        "run": {
            "dataset": ds.path, "dataset_name": ds.name, "format": ds.format, "split": args.split,
            "documents": len(ds.corpus), "queries_evaluated": len(evaluator.query_ids),
            "query_subset": None if args.max_queries is None else {"max_queries": args.max_queries, "seed": args.seed},
            "corpus_sample": None if args.corpus_sample is None else {"others": args.corpus_sample, "seed": args.seed},
            **models.describe(args), "augmentation_weight": args.augmentation_weight,
            "arguments": asdict(args), "versions": package_versions(),
        },
        "load_report": ds.report.as_dict(),
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    if args.output:
        write_outputs(args.output, report, scores.generations)
    return report


def write_outputs(output: str, report: dict, generations: dict[str, list]) -> None:
    import json

    atomic_write_json(output, report)
    if generations:
        lines = [json.dumps({"method": m, **row}, ensure_ascii=False) for m, rows in generations.items()
                 for row in rows]
        atomic_write_text(Path(output).with_suffix(".generations.jsonl"), "\n".join(lines) + "\n")


def main(argv: Sequence[str]) -> int:
    args = parse_args(EvaluateArguments, argv, prog="python -m evaluation.evaluate")
    report = run_evaluation(args)
    run = report["run"]
    retriever = run["retriever"]["model"] if run.get("retriever") else "none (BM25 only)"
    print(f"\n{run['dataset_name']} / {run['split']}: {run['queries_evaluated']} queries, "
          f"{run['documents']} documents, retriever {retriever}")
    print(format_table(report["methods"]))
    for c in report["rerank_comparisons"]:
        print(PairedComparison(**c).summary())
    if report["load_report"]["unknown_query_ids"] or report["load_report"]["unknown_doc_ids"]:
        lr = report["load_report"]
        print(f"note: skipped {lr['unknown_query_ids']} qrels rows with unknown query ids and "
              f"{lr['unknown_doc_ids']} with unknown document ids")
    if args.output:
        print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
