"""IR metrics with pytrec_eval (BEIR conventions).

Reported: nDCG@{1,3,5,10,100}, Recall@{10,100,1000}, MAP@100, MRR@10. Hits whose document id equals the
query id are removed first (BEIR's ``ignore_identical_ids``: e.g. ArguAna, Quora). Scores are averaged over
the judged queries; a judged query missing from the run counts as 0 (pytrec_eval alone would skip it).
"""
from __future__ import annotations

import numpy as np
import pytrec_eval

NDCG_CUTOFFS = (1, 3, 5, 10, 100)
RECALL_CUTOFFS = (10, 100, 1000)
METRIC_ORDER = [f"ndcg@{k}" for k in NDCG_CUTOFFS] + [f"recall@{k}" for k in RECALL_CUTOFFS] + ["map@100", "mrr@10"]


def remove_identical_ids(run: dict[str, dict[str, float]]) -> tuple[dict[str, dict[str, float]], int]:
    removed = 0
    clean = {}
    for qid, hits in run.items():
        if qid in hits:
            removed += 1
            hits = {d: s for d, s in hits.items() if d != qid}
        clean[qid] = hits
    return clean, removed


def _top(hits: dict[str, float], k: int) -> dict[str, float]:
    return dict(sorted(hits.items(), key=lambda x: (-x[1], x[0]))[:k])


def per_query_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, dict]:
    """``{qid: {metric: value}}`` for every judged query (missing from run → zeros)."""
    run, _ = remove_identical_ids(run)
    # pytrec_eval breaks score ties by document id (descending); pass plain floats.
    run = {q: {d: float(s) for d, s in hits.items()} for q, hits in run.items() if q in qrels}
    measures = {"ndcg_cut." + ",".join(map(str, NDCG_CUTOFFS)), "recall." + ",".join(map(str, RECALL_CUTOFFS)),
                "map_cut.100"}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures)
    raw = evaluator.evaluate(run)
    # MRR@10: reciprocal rank computed on the top-10 of each run.
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate({q: _top(h, 10) for q, h in run.items()})
    out = {}
    for qid in qrels:
        values = raw.get(qid, {})
        row = {f"ndcg@{k}": values.get(f"ndcg_cut_{k}", 0.0) for k in NDCG_CUTOFFS}
        row.update({f"recall@{k}": values.get(f"recall_{k}", 0.0) for k in RECALL_CUTOFFS})
        row["map@100"] = values.get("map_cut_100", 0.0)
        row["mrr@10"] = rr.get(qid, {}).get("recip_rank", 0.0)
        out[qid] = row
    return out


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                 query_ids: list[str] | None = None) -> dict[str, float]:
    """Mean metrics over ``query_ids`` (default: every judged query)."""
    return mean_metrics(per_query_metrics(qrels, run), query_ids)


def mean_metrics(per_query: dict[str, dict], query_ids: list[str] | None = None) -> dict[str, float]:
    ids = [q for q in (query_ids if query_ids is not None else list(per_query)) if q in per_query]
    if not ids:
        return {m: 0.0 for m in METRIC_ORDER}
    return {m: float(np.mean([per_query[q][m] for q in ids])) for m in METRIC_ORDER}
