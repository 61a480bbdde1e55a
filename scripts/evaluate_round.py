"""Evaluate one self-boost round (step 7 of ``round.sh``).

On the dataset's test qrels (when it has them):
- full split: the base retriever and the round's retriever, raw (no generation);
- a fixed, seeded subset of test queries, every method on the same queries: base raw, HyDE and Query2doc with
  the base generator, the round's retriever raw and with the round's generator augmentation (Reinforced-IR),
  and optionally the ablations (base retriever + round generator; round retriever + base generator).
On the held-out pseudo-queries (no human labels needed): nDCG@10 of the base and the round's retriever, raw —
the signal the driver uses for early stopping.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from evaluation.evaluate import EvaluateArguments, format_table, run_evaluation
from evaluation.metrics import evaluate_run
from evaluation.search import encode_corpus_cached, search_run
from evaluation.data import load_dataset
from inference.config import parse_args
from inference.errors import UserError, run_cli
from inference.io import atomic_write_json

logger = logging.getLogger(__name__)


@dataclass
class RoundEvaluationArguments:
    """Evaluate a round: test qrels (full split + a paired subset) and held-out pseudo-queries."""
    dataset_path: str = ""
    output_dir: str = ""
    task: str = "scifact"
    split: str = "test"
    base_retriever: str = "sentence-transformers/all-MiniLM-L6-v2"
    base_pooling_method: str | None = field(default=None, metadata={"help": "for base models without ST config"})
    base_normalize: bool | None = None
    base_query_instruction: str | None = None
    base_generator: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    round_retriever: str = ""
    round_generator: str = ""
    generator_backend: str = "hf"
    max_queries: int | None = 50
    seed: int = 0
    max_new_tokens: int = 96
    generation_batch_size: int = 32
    temperature: float = 0.0
    heldout_path: str | None = None
    baselines: bool = True
    ablations: bool = False
    embedding_cache: str | None = None

    def validate(self) -> None:
        for name in ("dataset_path", "output_dir", "round_retriever", "round_generator"):
            if not getattr(self, name):
                raise UserError("required", field=name)


def heldout_ndcg(retriever: str, heldout: Path, dataset_path: str, cache: str | None, **embedder_kwargs
                 ) -> float | None:
    """nDCG@10 of a retriever on held-out pseudo-queries (each query's source document is its only qrel)."""
    from inference import Embedder

    rows = [json.loads(line) for line in heldout.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    ds = load_dataset(dataset_path, split=None)
    emb = Embedder(retriever, show_progress=False, **embedder_kwargs)
    doc_emb = encode_corpus_cached(emb, ds.corpus, cache)
    qids = [r["id"] for r in rows]
    run = search_run(emb.encode_queries([r["query"] for r in rows]), qids, doc_emb, ds.doc_ids, 100)
    return evaluate_run({r["id"]: {r["doc_id"]: 1} for r in rows}, run)["ndcg@10"]


def evaluate_round(args: RoundEvaluationArguments) -> dict:
    started = time.perf_counter()
    out = Path(args.output_dir)
    cache = args.embedding_cache
    common = dict(dataset=args.dataset_path, split=args.split, task=args.task, embedding_cache=cache or "none",
                  max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                  generation_batch_size=args.generation_batch_size, generator_backend=args.generator_backend)
    results: dict = {"subset": {}, "full": {}, "heldout": {}}
    has_qrels = (Path(args.dataset_path) / "qrels" / f"{args.split}.tsv").is_file() or \
        (Path(args.dataset_path) / f"{args.split}_qrels.jsonl").is_file()
    if has_qrels:
        def run(name: str, **kw) -> dict:
            report = run_evaluation(EvaluateArguments(**{**common, **kw}, output=str(out / f"{name}.json")))
            return report

        base_opts = dict(retriever=args.base_retriever, pooling_method=args.base_pooling_method,
                         normalize=args.base_normalize, query_instruction=args.base_query_instruction)
        if args.baselines:
            results["full"]["base_raw"] = run("base_full", **base_opts, method="raw")["metrics"]
            base = run("base_subset", **base_opts, methods=["raw", "hyde", "query2doc"],
                       generator=args.base_generator, max_queries=args.max_queries)
            results["subset"].update({"base_raw": base["methods"]["raw"], "hyde": base["methods"]["hyde"],
                                      "query2doc": base["methods"]["query2doc"]})
            results["subset_queries"] = base["run"]["queries_evaluated"]
        results["full"]["round_raw"] = run("round_full", retriever=args.round_retriever, method="raw")["metrics"]
        rnd = run("round_subset", retriever=args.round_retriever, methods=["raw", "reinforced_ir"],
                  generator=args.round_generator, max_queries=args.max_queries)
        results["subset"].update({"round_raw": rnd["methods"]["raw"],
                                  "round_reinforced_ir": rnd["methods"]["reinforced_ir"]})
        results["subset_queries"] = rnd["run"]["queries_evaluated"]
        if args.ablations:
            gen_only = run("ablation_generator_only", **base_opts, method="reinforced_ir",
                           generator=args.round_generator, max_queries=args.max_queries)
            ret_base_gen = run("ablation_base_generator", retriever=args.round_retriever, method="reinforced_ir",
                               generator=args.base_generator, max_queries=args.max_queries)
            base_gen = run("ablation_base_pair", **base_opts, method="reinforced_ir",
                           generator=args.base_generator, max_queries=args.max_queries)
            results["subset"].update({"base_retriever+round_generator": gen_only["metrics"],
                                      "round_retriever+base_generator": ret_base_gen["metrics"],
                                      "base_retriever+base_generator": base_gen["metrics"]})
    if args.heldout_path and Path(args.heldout_path).is_file():
        if args.baselines:
            results["heldout"]["base_raw"] = heldout_ndcg(
                args.base_retriever, Path(args.heldout_path), args.dataset_path, cache,
                pooling_method=args.base_pooling_method, normalize=args.base_normalize,
                query_instruction=args.base_query_instruction)
        results["heldout"]["round_raw"] = heldout_ndcg(args.round_retriever, Path(args.heldout_path),
                                                       args.dataset_path, cache)
    results["subset_definition"] = {"split": args.split, "max_queries": args.max_queries, "seed": args.seed}
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "results.json", results)
    atomic_write_json(out / "manifest.json", {"stage": "evaluate_round", "status": "complete",
                                              "parameters": {k: v for k, v in vars(args).items()},
                                              "wall_seconds": results["wall_seconds"]})
    return results


def main(argv: Sequence[str]) -> int:
    args = parse_args(RoundEvaluationArguments, argv, prog="python -m scripts.evaluate_round")
    manifest = Path(args.output_dir) / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("parameters") == vars(args):
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
    return 0


if __name__ == "__main__":
    run_cli(main)
