"""Evaluate one self-boost round (step 7 of ``round.sh``).

On the dataset's test qrels (when it has them):
- full split: the base retriever and the round's retriever, raw (no generation);
- a fixed, seeded subset of test queries, every method on the same queries: base raw, HyDE and Query2doc with
  the base generator, the round's retriever raw and with the round's generator augmentation (Reinforced-IR),
  and optionally the ablations (base retriever + round generator; round retriever + base generator).
On the held-out pseudo-queries (no human labels needed): nDCG@10 of the base and the round's retriever, raw —
the signal the driver uses for early stopping.

On the full split also BM25 and the dense + BM25 hybrid (default 0.5 / 0.5 min-max) for both retrievers, and
the **label-free choice**: the retriever the held-out pseudo-queries prefer, fused with BM25 at the weight the
pseudo-queries choose (``evaluation.label_free``). Test qrels judge that choice; they never make it. Every
full-split comparison carries a paired randomisation p-value and a 95% bootstrap interval.
"""
from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from evaluation.data import load_dataset
from evaluation.evaluate import EvaluateArguments, format_table, run_evaluation
from evaluation.label_free import PseudoQueries, choose_hybrid_weight
from inference.hybrid import DEFAULT_HYBRID_WEIGHT
from evaluation.evaluator import RetrievalEvaluator
from evaluation.search import bm25_index_cached, encode_corpus_cached
from evaluation.stats import PairedComparison, compare
from inference.config import parse_args
from inference.errors import UserError, run_cli
from inference.io import atomic_write_json, iter_jsonl
from inference.manifest import is_complete, run_parameters, write_manifest
from .steps import RoundArguments

logger = logging.getLogger(__name__)


@dataclass
class RoundEvaluationArguments(RoundArguments):
    """Evaluate a round: test qrels (full split + a paired subset) and held-out pseudo-queries."""
    output_dir: str = ""
    base_pooling_method: str | None = field(default=None, metadata={"help": "for base models without ST config"})
    base_normalize_embeddings: bool | None = field(default=None, metadata={"aliases": ("base_normalize",)})
    base_query_instruction: str | None = None
    round_retriever: str = ""
    round_generator: str = ""
    max_queries: int | None = 50
    seed: int = 0
    max_new_tokens: int = 96
    generation_batch_size: int = 32
    temperature: float = 0.0
    heldout_path: str | None = None
    pseudo_queries_path: str | None = field(default=None, metadata={
        "help": "training pseudo-queries (default: queries.jsonl beside heldout_path); with the held-out ones they "
                "choose the hybrid weight on the base retriever, which saw none of them"})
    fusion: str = "minmax"
    round_trip_depth: int = field(default=20, metadata={
        "help": "label-free weight choice: score only pseudo-queries whose source the dense top-k holds (0 = all)"})
    baselines: bool = True
    ablations: bool = False

    def validate(self) -> None:
        for name in ("dataset", "output_dir", "round_retriever", "round_generator"):
            if not getattr(self, name):
                raise UserError("required", field=name)


def has_split_qrels(dataset: str, split: str) -> bool:
    return (Path(dataset) / "qrels" / f"{split}.tsv").is_file() or \
        (Path(dataset) / f"{split}_qrels.jsonl").is_file()


class RoundEvaluation:
    """The parts of one round's evaluation; each fills ``self.results``."""

    def __init__(self, args: RoundEvaluationArguments):
        self.args = args
        self.out = Path(args.output_dir)
        self.cache = args.embedding_cache_dir
        self.common = dict(dataset=args.dataset, split=args.split, task=args.task,
                           embedding_cache=str(self.cache) if self.cache else "none",
                           max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                           generation_batch_size=args.generation_batch_size, generator_backend=args.generator_backend,
                           fusion=args.fusion)
        self.base_opts = dict(retriever=args.base_retriever, pooling_method=args.base_pooling_method,
                              normalize_embeddings=args.base_normalize_embeddings,
                              query_instruction=args.base_query_instruction)
        self.results: dict = {"subset": {}, "full": {}, "heldout": {}}
        self.per_query: dict[str, dict[str, float]] = {}

    @functools.cached_property
    def corpus(self) -> dict[str, dict]:
        return load_dataset(self.args.dataset, split=None).corpus

    @functools.cached_property
    def base_embedder(self):
        """Loaded once: the held-out signal and the label-free weight choice both use it."""
        from inference import Embedder

        a = self.args
        return Embedder(a.base_retriever, show_progress=False, pooling_method=a.base_pooling_method,
                        normalize=a.base_normalize_embeddings, query_instruction=a.base_query_instruction)

    def run(self, name: str, **kw) -> dict:
        return run_evaluation(EvaluateArguments(**{**self.common, **kw}, output=str(self.out / f"{name}.json")))

    def full_split(self) -> None:
        """Base and round retriever, raw and hybrid (0.5 / 0.5), and BM25, on every judged query."""
        base = self.run("base_full", **self.base_opts, methods=["raw", "bm25", "hybrid"])
        rnd = self.run("round_full", retriever=self.args.round_retriever, methods=["raw", "hybrid"])
        for prefix, report in (("base", base), ("round", rnd)):
            for method, values in report["methods"].items():
                name = "bm25" if method == "bm25" else f"{prefix}_{method}"
                self.results["full"][name] = values
                self.per_query[name] = report["per_query_ndcg@10"][method]

    def subset(self) -> None:
        """Generative methods on a seeded subset of test queries, every method on the same queries."""
        a = self.args
        if a.baselines:
            base = self.run("base_subset", **self.base_opts, methods=["raw", "hyde", "query2doc"],
                            generator=a.base_generator, max_queries=a.max_queries)
            self.results["subset"].update({"base_raw": base["methods"]["raw"], "hyde": base["methods"]["hyde"],
                                           "query2doc": base["methods"]["query2doc"]})
        rnd = self.run("round_subset", retriever=a.round_retriever, methods=["raw", "reinforced_ir"],
                       generator=a.round_generator, max_queries=a.max_queries)
        self.results["subset"].update({"round_raw": rnd["methods"]["raw"],
                                       "round_reinforced_ir": rnd["methods"]["reinforced_ir"]})
        self.results["subset_queries"] = rnd["run"]["queries_evaluated"]
        if a.ablations:
            pairs = {"base_retriever+round_generator": (self.base_opts, a.round_generator),
                     "round_retriever+base_generator": ({"retriever": a.round_retriever}, a.base_generator),
                     "base_retriever+base_generator": (self.base_opts, a.base_generator)}
            for name, (retriever, generator) in pairs.items():
                report = self.run("ablation_" + name.replace("+", "_"), **retriever, method="reinforced_ir",
                                  generator=generator, max_queries=a.max_queries)
                self.results["subset"][name] = report["metrics"]

    def heldout(self) -> None:
        """nDCG@10 of both retrievers on the held-out pseudo-queries (each query's source is its only qrel)."""
        from inference import Embedder

        rows = [row for _, row in iter_jsonl(self.args.heldout_path)]
        if not rows:
            self.results["heldout"].update(base_raw=None, round_raw=None)
            return
        evaluator = RetrievalEvaluator.from_pseudo_queries(rows, self.corpus, cache_dir=self.cache)
        self.results["heldout"]["base_raw"] = evaluator(self.base_embedder).score
        self.results["heldout"]["round_raw"] = evaluator(Embedder(self.args.round_retriever,
                                                                  show_progress=False)).score

    def input_records(self) -> dict:
        """What the figures came from, so a retrained round model or new pseudo-queries make them stale."""
        from inference.embedder import weights_fingerprint
        from inference.io import file_sha256

        a = self.args
        records = {name: {"path": path, "weights": weights_fingerprint(path)}
                   for name, path in (("round_retriever", a.round_retriever), ("round_generator", a.round_generator))
                   if Path(path).is_dir()}
        for f in self.pseudo_query_files():
            records[f.name] = {"path": str(f), "sha256": file_sha256(f)}
        return records

    def pseudo_query_files(self) -> list[Path]:
        a = self.args
        files = [Path(a.pseudo_queries_path)] if a.pseudo_queries_path else \
            ([Path(a.heldout_path).with_name("queries.jsonl")] if a.heldout_path else [])
        if a.heldout_path:
            files.append(Path(a.heldout_path))
        return [f for f in files if f.is_file()]

    def choose(self) -> dict | None:
        """The label-free system: retriever by held-out pseudo-queries, hybrid weight by all pseudo-queries on
        the base retriever (none of them trained it; the weight is a property of the corpus)."""
        files = self.pseudo_query_files()
        if not files:
            return None
        a = self.args
        pseudo = PseudoQueries.load(files, set(self.corpus))
        weight = choose_hybrid_weight(self.base_embedder.encode_queries(pseudo.texts) if pseudo.texts else None,
                                      encode_corpus_cached(self.base_embedder, self.corpus, self.cache),
                                      bm25_index_cached(self.corpus, self.cache), pseudo, list(self.corpus),
                                      fusion=a.fusion, round_trip_depth=a.round_trip_depth,
                                      fallback_weight=DEFAULT_HYBRID_WEIGHT)
        held = self.results["heldout"]
        use_round = held.get("round_raw") is not None and held["round_raw"] >= (held.get("base_raw") or 0.0)
        return {"method": "hybrid", "retriever": "round" if use_round else "base",
                "retriever_path": a.round_retriever if use_round else a.base_retriever,
                "fusion": a.fusion, "weight": weight.weight, "weight_choice": weight.as_dict(),
                "retriever_choice": {"rule": "round retriever when its held-out pseudo-query nDCG@10 ≥ the base's",
                                     **{k: v for k, v in held.items()}}}

    def evaluate_choice(self, choice: dict) -> None:
        opts = {"retriever": self.args.round_retriever} if choice["retriever"] == "round" else self.base_opts
        report = self.run("label_free_full", **opts, method="hybrid", fusion_weight=choice["weight"])
        self.results["full"]["label_free"] = report["metrics"]
        self.per_query["label_free"] = report["per_query_ndcg@10"]["hybrid"]
        choice["ndcg@10"] = report["metrics"]["ndcg@10"]
        choice["vs_base"] = compare("label_free", self.per_query["label_free"], "base_raw",
                                    self.per_query["base_raw"], seed=self.args.seed).as_dict()
        self.results["label_free_choice"] = choice

    def comparisons(self) -> list[dict]:
        pairs = [("round_raw", "base_raw"), ("bm25", "base_raw"), ("base_hybrid", "base_raw"),
                 ("round_hybrid", "base_hybrid"), ("label_free", "base_raw"), ("label_free", "bm25"),
                 ("label_free", "base_hybrid")]
        return [compare(a, self.per_query[a], b, self.per_query[b], seed=self.args.seed).as_dict()
                for a, b in pairs if a in self.per_query and b in self.per_query]


def evaluate_round(args: RoundEvaluationArguments) -> dict:
    started = time.perf_counter()
    ev = RoundEvaluation(args)
    if args.heldout_path and Path(args.heldout_path).is_file():
        ev.heldout()
    if has_split_qrels(args.dataset, args.split):
        ev.full_split()
        ev.subset()
        choice = ev.choose()
        if choice is not None:
            ev.evaluate_choice(choice)
        ev.results["comparisons"] = ev.comparisons()
        ev.results["per_query_full_ndcg@10"] = ev.per_query
    results = ev.results
    results["subset_definition"] = {"split": args.split, "max_queries": args.max_queries, "seed": args.seed}
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(ev.out / "results.json", results)
    write_manifest(ev.out, "evaluate_round", "complete", parameters=round_parameters(args), inputs=ev.input_records(),
                   wall_seconds=results["wall_seconds"])
    return results


def round_parameters(args: RoundEvaluationArguments) -> dict:
    """What the results depend on: every option but the resumable ones (the cache folder)."""
    return run_parameters(dict(vars(args)))


def main(argv: Sequence[str]) -> int:
    args = parse_args(RoundEvaluationArguments, argv, prog="python -m scripts.evaluate_round")
    if is_complete(args.output_dir, parameters=round_parameters(args)):
        logger.info("round evaluation already complete in %s", args.output_dir)
        results = json.loads((Path(args.output_dir) / "results.json").read_text())
    else:
        results = evaluate_round(args)
    if results["subset"]:
        print(f"\nsubset of {results.get('subset_queries')} {args.split} queries (seed {args.seed}):")
        print(format_table(results["subset"]))
    if results["full"]:
        print(f"\nfull {args.split} split:")
        print(format_table(results["full"]))
    if results["heldout"]:
        print("\nheld-out pseudo-queries, nDCG@10: " + ", ".join(
            f"{k} {v:.4f}" for k, v in results["heldout"].items() if v is not None))
    choice = results.get("label_free_choice")
    if choice:
        print(f"\nlabel-free choice: {choice['retriever']} retriever + BM25, {choice['fusion']} weight "
              f"{choice['weight']:g} (pseudo-query nDCG@10 by weight: {choice['weight_choice']['ndcg_at_10']})")
    for c in results.get("comparisons", []):
        print(PairedComparison(**c).summary())
    return 0


if __name__ == "__main__":
    run_cli(main)
