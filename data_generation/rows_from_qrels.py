"""Training rows from *labelled* qrels (the Open-Retrievals setting): judged positives + mined negatives.

    python -m data_generation.rows_from_qrels --dataset ../shared/data/scifact --split train \
        --output_dir runs/scifact-train-rows --holdout_fraction 0.25

Rows are ``{id, query, pos, neg, pos_ids, neg_ids, pos_scores, neg_scores}`` (schema: :mod:`.rows`; the
retriever and reranker trainers read them; the scores are the base retriever's, a teacher for ``--knowledge_distillation``). Negatives
are drawn uniformly from the base retriever's ranks ``[lo, hi)``, never a judged document. A seeded fraction of
the queries is held out *by query* and listed in ``heldout_query_ids.txt`` for ``evaluation.evaluate
--query_ids_file``, so a model trained on the rows can be scored on queries it never saw.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from evaluation.data import load_dataset
from evaluation.search import encode_corpus_cached
from inference.config import EmbeddingCacheArguments, asdict_public, parse_args
from inference.embedder import document_text
from inference.errors import UserError, run_cli
from inference.io import atomic_write_text
from inference.manifest import input_record, write_manifest
from inference.search import exact_search

from .rows import training_row
from .retriever_args import RetrieverArguments, build_retriever


@dataclass
class RowsFromQrelsArguments(RetrieverArguments, EmbeddingCacheArguments):
    """Training rows from a labelled split: judged positives, negatives from the retriever's ranks [lo, hi)."""
    dataset: str = field(default="", metadata={"help": "BEIR / AIR-Bench folder with qrels for --split"})
    split: str = "train"
    output_dir: str = ""
    negative_ranks: list[int] = field(default_factory=lambda: [10, 60], metadata={"help": "lo hi (0-based)"})
    num_negatives: int = 7
    holdout_fraction: float = field(default=0.0, metadata={"help": "queries held out for evaluation (by query)"})
    seed: int = 42

    def validate(self) -> None:
        for name in ("dataset", "output_dir"):
            if not getattr(self, name):
                raise UserError("required", field=name)
        lo, hi = (self.negative_ranks + [0, 0])[:2]
        if len(self.negative_ranks) != 2 or not 0 <= lo < hi:
            raise UserError("must be two increasing ranks, e.g. 10,60", field="negative_ranks")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise UserError("must be in [0, 1)", field="holdout_fraction")


def build_rows(args: RowsFromQrelsArguments) -> dict:
    ds = load_dataset(args.dataset, args.split)
    qids = sorted(ds.evaluated_query_ids())
    rng = random.Random(args.seed)
    heldout = set(rng.sample(qids, int(round(len(qids) * args.holdout_fraction))))
    train_ids = [q for q in qids if q not in heldout]
    doc_ids = ds.doc_ids
    texts = [document_text(ds.corpus[d]) for d in doc_ids]
    retriever = build_retriever(args)
    doc_emb = encode_corpus_cached(retriever, texts, args.embedding_cache_dir)
    lo, hi = args.negative_ranks
    q_emb = retriever.encode_queries([ds.queries[q] for q in train_ids])
    _, ranked = exact_search(q_emb, doc_emb, min(hi, len(doc_ids)))
    position = {d: i for i, d in enumerate(doc_ids)}
    rows, no_negatives = [], 0
    for qid, q_vec, ids in zip(train_ids, q_emb, ranked):
        judged = set(ds.qrels[qid])
        positives = [d for d, rel in ds.qrels[qid].items() if rel > 0]
        pool = [doc_ids[i] for i in ids[lo:hi] if i >= 0 and doc_ids[i] not in judged]
        if not positives or not pool:
            no_negatives += 1
            continue
        negs = random.Random(f"{args.seed}:{qid}").sample(pool, min(args.num_negatives, len(pool)))
        # the base retriever's scores: a teacher for --knowledge_distillation (the RLGF rows' field names)
        score = {d: round(float(doc_emb[position[d]] @ q_vec), 6) for d in positives + negs}
        rows.append(training_row(ds.queries[qid], [document_text(ds.corpus[d]) for d in positives],
                                 [document_text(ds.corpus[d]) for d in negs], pos_ids=positives, neg_ids=negs,
                                 pos_scores=[score[d] for d in positives], neg_scores=[score[d] for d in negs],
                                 id=qid))
    out = Path(args.output_dir)
    atomic_write_text(out / "train.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write_text(out / "heldout_query_ids.txt", "".join(f"{q}\n" for q in sorted(heldout)))
    # the split is a parameter (in ``parameters``), not an input file
    return write_manifest(out, "rows_from_qrels", "complete", inputs={"corpus": input_record(ds.corpus_file)},
                          models={"retriever": retriever.identity}, parameters=asdict_public(args), seed=args.seed,
                          counts={"queries": len(qids), "rows": len(rows), "heldout": len(heldout),
                                  "skipped_without_negatives": no_negatives})


def main(argv: Sequence[str]) -> int:
    args = parse_args(RowsFromQrelsArguments, argv, prog="python -m data_generation.rows_from_qrels")
    counts = build_rows(args)["counts"]
    print(f"rows_from_qrels: {counts['rows']} rows from {counts['queries'] - counts['heldout']} queries, "
          f"{counts['heldout']} held out; output {args.output_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
