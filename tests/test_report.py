"""scripts.report on a synthetic run folder (no model, no dataset): the first lines of report.md and the picture
show full-split figures with their 95% intervals beside BM25, the hybrid and the label-free choice; the generation
methods' subset figures are labelled as a subset."""
import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.stats import bootstrap_interval, compare
from scripts.report import write_report

FULL_QUERIES, SUBSET_QUERIES = 300, 40
# Means close to a real make-demo run: the round's retriever level with the base on the full split, the generator
# two points up on the paired subset, BM25 / hybrid / the label-free choice well above both.
FULL_MEANS = {"base_raw": 0.645, "base_hybrid": 0.738, "bm25": 0.679, "round_raw": 0.646, "round_hybrid": 0.740,
              "label_free": 0.736}
SUBSET_MEANS = {"base_raw": 0.592, "hyde": 0.571, "query2doc": 0.580, "round_raw": 0.596,
                "round_reinforced_ir": 0.613}


def _per_query(seed: int, mean: float, n: int) -> dict[str, float]:
    values = np.clip(np.random.default_rng(seed).normal(mean, 0.3, size=n), 0.0, 1.0)
    values += mean - values.mean()          # the intended mean, still a spread of per-query values
    return {f"q{i}": float(v) for i, v in enumerate(values)}


def _round_results(k: int) -> dict:
    """Round k's evaluation; the base retriever and BM25 score the same in every round, the round's systems not."""
    shift = 0.002 * (k - 1)
    per_query = {name: _per_query(i + (100 * k if name.startswith("round") or name == "label_free" else 0),
                                  m + (shift if name.startswith("round") or name == "label_free" else 0.0),
                                  FULL_QUERIES) for i, (name, m) in enumerate(FULL_MEANS.items())}
    full = {name: {"ndcg@10": float(np.mean(list(v.values())))} for name, v in per_query.items()}
    pairs = [("round_raw", "base_raw"), ("bm25", "base_raw"), ("base_hybrid", "base_raw"),
             ("round_hybrid", "base_hybrid"), ("label_free", "base_raw"), ("label_free", "bm25"),
             ("label_free", "base_hybrid")]
    comparisons = [compare(a, per_query[a], b, per_query[b]).as_dict() for a, b in pairs]
    choice = {"method": "hybrid", "retriever": "base", "retriever_path": "sentence-transformers/all-MiniLM-L6-v2",
              "fusion": "minmax", "weight": 0.4, "ndcg@10": full["label_free"]["ndcg@10"],
              "weight_choice": {"ndcg_at_10": {"0.3": 0.81, "0.4": 0.83, "0.5": 0.82}, "pseudo_queries": 90,
                                "pseudo_queries_total": 120, "rule": "highest pseudo-query nDCG@10"},
              "retriever_choice": {"rule": "round when its held-out nDCG@10 >= the base's"},
              "vs_base": next(c for c in comparisons if (c["a"], c["b"]) == ("label_free", "base_raw"))}
    return {"subset": {name: {"ndcg@10": m + (shift if name.startswith("round") else 0.0)}
                       for name, m in SUBSET_MEANS.items()},
            "subset_queries": SUBSET_QUERIES, "full": full, "per_query_full_ndcg@10": per_query,
            "heldout": {"base_raw": 0.55, "round_raw": 0.56}, "label_free_choice": choice,
            "comparisons": comparisons, "subset_definition": {"split": "test", "max_queries": SUBSET_QUERIES,
                                                              "seed": 0}}


def make_run_dir(root: Path, rounds: int = 1) -> Path:
    """A run folder as ``scripts.self_boost`` leaves it, reduced to what the report reads: each round's
    ``eval/results.json`` and ``timings.json``."""
    for k in range(1, rounds + 1):
        (root / f"round_{k}" / "eval").mkdir(parents=True)
        (root / f"round_{k}" / "eval" / "results.json").write_text(json.dumps(_round_results(k)))
    (root / "timings.json").write_text(json.dumps({"round_1/evaluate": {"seconds": 60.0, "peak_rss_mib_so_far": 900}}))
    return root


@pytest.fixture(params=[1, 2], ids=["one round", "two rounds"])
def run_dir(request, tmp_path) -> Path:
    return make_run_dir(tmp_path / "run", rounds=request.param)


def _ci_text(per_query: dict) -> str:
    lo, hi = bootstrap_interval(list(per_query.values()))
    return f"[{lo:.4f}, {hi:.4f}]"


def test_first_lines_of_the_report_are_the_full_split_with_intervals_and_the_subset_is_labelled(run_dir):
    md = write_report(run_dir)
    last = json.loads(sorted(run_dir.glob("round_*/eval/results.json"))[-1].read_text())
    per_query = last["per_query_full_ndcg@10"]
    head = "\n".join(md.splitlines()[:4])
    assert "Full test split" in head and f"all {FULL_QUERIES} judged queries" in head
    choice = f"{last['full']['label_free']['ndcg@10']:.4f} {_ci_text(per_query['label_free'])}"
    assert "label-free choice" in head and choice in head                 # the choice with its 95% interval
    for name in ("bm25", "base_hybrid", "round_raw", "base_raw"):  # beside BM25, the untrained hybrid, both retrievers
        assert f"{last['full'][name]['ndcg@10']:.4f} {_ci_text(per_query[name])}" in head
    assert "subset" not in head.lower()
    # every subset figure comes after its label, and the label names the subset's size
    label = f"paired subset of {SUBSET_QUERIES} queries"
    after = f"{last['subset']['round_reinforced_ir']['ndcg@10']:.4f}"
    assert label in md and md.index(label) < md.index(after)
    assert f"## Generation methods: {label}" in md and f"| method | nDCG@10, {label} |" in md


def test_report_json_carries_the_intervals_and_the_picture_shows_full_split_beside_the_subset(run_dir):
    from scripts.report import _plot

    write_report(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    rounds = sorted(int(p.name.split("_")[1]) for p in run_dir.glob("round_*"))
    last = json.loads((run_dir / f"round_{rounds[-1]}" / "eval" / "results.json").read_text())
    per_query = last["per_query_full_ndcg@10"]
    assert report["label_free_choice"]["ci95"] == list(bootstrap_interval(list(per_query["label_free"].values())))
    assert report["bm25"]["ci95"] == list(bootstrap_interval(list(per_query["bm25"].values())))
    assert report["full_split"]["queries"] == FULL_QUERIES and report["full_split"]["split"] == "test"
    assert set(report["full_split"]["by_round"]) == {f"round_{k}" for k in [0, *rounds]}
    assert report["full_split"]["by_round"][f"round_{rounds[-1]}"]["label_free"]["ndcg@10"] == \
        report["label_free_choice"]["ndcg@10"]
    assert (run_dir / "ndcg_by_round.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per_round = {k: json.loads((run_dir / f"round_{k}" / "eval" / "results.json").read_text()) for k in rounds}
    full_title, subset_title, *legend = _plot(run_dir, report, per_round, rounds)
    assert full_title.startswith("full test split") and f"{FULL_QUERIES} judged queries" in full_title
    assert subset_title.startswith(f"paired subset of {SUBSET_QUERIES} queries")
    choice = f"{report['label_free_choice']['ndcg@10']:.4f} {_ci_text(per_query['label_free'])}"
    assert any(t.startswith("label-free choice") and choice in t for t in legend)
    assert any(t.startswith("BM25: ") for t in legend) and any(t.startswith("hybrid") for t in legend)
