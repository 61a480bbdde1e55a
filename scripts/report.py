"""Aggregate a self-boost run into ``report.md``, ``report.json`` and ``ndcg_by_round.png``.

    python -m scripts.report --run_dir runs/cpu-demo-scifact

The picture and the first lines of ``report.md`` are full-split figures (every judged test query), each with its
95% bootstrap interval: the retriever by round, the hybrid, BM25 and the label-free choice. The generation methods
(HyDE, Query2doc, the round's generator augmentation) run on a seeded subset of test queries only; wherever they
appear they are labelled "paired subset of N queries" and kept apart (their own table, their own panel).

``report.json`` keys: ``before.ndcg@10`` (base retriever, raw), ``after.ndcg@10`` (last round's retriever with its
generator's augmentation), ``hyde.ndcg@10`` and ``query2doc.ndcg@10`` (base generator) — all four on the same
seeded subset of test queries, named in ``query_set`` — plus ``full_split`` (``split``, ``queries``, ``before``,
``after_retriever_only`` and ``by_round``: raw, hybrid and label-free choice of each round, each with ``ci95``),
per-round results, ``timings`` (seconds and peak memory per step) and ``sizes`` (rows produced by each stage). From
the last round, on the full split: ``bm25``, ``hybrid`` (base and round retriever, 0.5 / 0.5), ``label_free_choice``
(method, settings, nDCG@10 and its ``ci95``, paired p-value against the base retriever) and ``comparisons`` (each
with p-value and 95% interval). Every ``ci95`` is a percentile bootstrap of the mean per-query nDCG@10
(``evaluation.stats.bootstrap_interval``, seeded), null where the per-query figures are missing.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from data_generation.stage import DROPPED_FILE
from evaluation.stats import bootstrap_interval
from inference.config import parse_args
from inference.errors import UserError, run_cli
from inference.io import atomic_write_json, atomic_write_text, iter_jsonl
from inference.manifest import read_manifest

from .steps import STEPS

SAMPLED_STAGES = tuple(s.name for s in STEPS if s.samples_queries)  # which pseudo-queries were kept and dropped
SAMPLE_SIZE = 3


def _query_samples(stage_dir: Path, output_name: str) -> dict:
    """A seeded sample of kept queries and, per drop reason, of dropped ones (from the stage's dropped.jsonl)."""
    kept = [r["query"] for _, r in iter_jsonl(stage_dir / output_name)] if (stage_dir / output_name).is_file() else []
    by_reason: dict[str, list[str]] = {}
    if (stage_dir / DROPPED_FILE).is_file():
        for _, row in iter_jsonl(stage_dir / DROPPED_FILE):
            by_reason.setdefault(row["reason"], []).append(row["query"])
    rng = random.Random(0)
    pick = lambda qs: rng.sample(qs, min(SAMPLE_SIZE, len(qs)))  # noqa: E731
    return {"kept": pick(kept), "dropped": {reason: pick(qs) for reason, qs in sorted(by_reason.items())}}


def _rounds(run_dir: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in run_dir.glob("round_*") if (p / "eval" / "results.json").is_file())


def _sizes(run_dir: Path, k: int) -> dict:
    sizes = {}
    for step in (s for s in STEPS if s.kind == "stage"):
        name, stage_dir = step.name, step.directory(run_dir, k)
        if (m := read_manifest(stage_dir)) is not None:
            counts = m["counts"]
            sizes[name] = {"items": counts.get("items"), "kept": counts.get("kept"), "dropped": counts.get("dropped"),
                           **({"heldout": m["heldout"]["rows"]} if "heldout" in m else {})}
            if name in SAMPLED_STAGES:  # held-out queries were kept too, only set aside
                kept = counts.get("kept", 0) + sizes[name].get("heldout", 0)
                sizes[name]["kept_share"] = round(kept / counts["items"], 4) if counts.get("items") else None
                sizes[name]["samples"] = _query_samples(stage_dir, m["output"]["path"])
            if name == "distill":  # the teacher, and how many listwise rankings parsed (ok / partial / fallback)
                notes = m["counts"].get("notes", {})
                sizes[name]["teacher_scoring"] = m["parameters"].get("teacher_scoring", "listwise")
                sizes[name]["rankings"] = {key.removeprefix("ranking_"): n for key, n in notes.items()
                                           if key.startswith("ranking_")}
                if "scored" in notes:
                    sizes[name]["rankings"]["scored"] = notes["scored"]
    for step in (s for s in STEPS if s.training):
        if (m := read_manifest(step.directory(run_dir, k))) is not None:
            sizes[step.name] = m.get("counts") or {key: m["parameters"].get(key)
                                                   for key in ("max_steps", "num_train_epochs")}
    return sizes


def _full_figure(results: dict, name: str, seed: int) -> dict | None:
    """A full-split figure of one round's evaluation, with the bootstrap interval of its per-query values."""
    if name not in results.get("full", {}):
        return None
    per_query = results.get("per_query_full_ndcg@10", {}).get(name)
    ci95 = list(bootstrap_interval(list(per_query.values()), seed=seed)) if per_query else None
    return {"ndcg@10": results["full"][name]["ndcg@10"], "ci95": ci95}


def _full_split(per_round: dict, rounds: list[int], seed: int) -> dict:
    first, last = per_round[rounds[0]], per_round[rounds[-1]]
    by_round = {"round_0": {"raw": _full_figure(first, "base_raw", seed),
                            "hybrid": _full_figure(first, "base_hybrid", seed)}}
    for k in rounds:
        by_round[f"round_{k}"] = {"raw": _full_figure(per_round[k], "round_raw", seed),
                                  "hybrid": _full_figure(per_round[k], "round_hybrid", seed),
                                  "label_free": _full_figure(per_round[k], "label_free", seed)}
    per_query = last.get("per_query_full_ndcg@10", {})
    return {"split": last.get("subset_definition", {}).get("split"),
            "queries": len(per_query["base_raw"]) if "base_raw" in per_query else None,
            "before": _full_figure(first, "base_raw", seed) or {"ndcg@10": None, "ci95": None},
            "after_retriever_only": _full_figure(last, "round_raw", seed) or {"ndcg@10": None, "ci95": None},
            "by_round": by_round}


def write_report(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    rounds = _rounds(run_dir)
    if not rounds:
        raise UserError("no evaluated round found", file=run_dir)
    per_round = {k: json.loads((run_dir / f"round_{k}" / "eval" / "results.json").read_text()) for k in rounds}
    first, last = per_round[rounds[0]], per_round[rounds[-1]]
    sub0, subl = first.get("subset", {}), last.get("subset", {})
    seed = last.get("subset_definition", {}).get("seed") or 0
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").is_file() else {}
    pick = lambda d, key: None if key not in d else d[key]["ndcg@10"]  # noqa: E731
    full = lambda name: _full_figure(last, name, seed) or {"ndcg@10": None, "ci95": None}  # noqa: E731
    choice = _choice_summary(last.get("label_free_choice"))
    if choice:
        choice["ci95"] = full("label_free")["ci95"]
    report = {
        "before": {"ndcg@10": pick(sub0, "base_raw")},
        "after": {"ndcg@10": pick(subl, "round_reinforced_ir")},
        "hyde": {"ndcg@10": pick(sub0, "hyde")},
        "query2doc": {"ndcg@10": pick(sub0, "query2doc")},
        "after_retriever_only": {"ndcg@10": pick(subl, "round_raw")},
        "query_set": {**last.get("subset_definition", {}), "queries": last.get("subset_queries")},
        "full_split": _full_split(per_round, rounds, seed),
        "bm25": full("bm25"),
        "hybrid": {"fusion": "minmax", "weight": 0.5, "base": full("base_hybrid"), "round": full("round_hybrid")},
        "label_free_choice": choice,
        "comparisons": last.get("comparisons", []),
        "heldout_pseudo_queries": {"base": first.get("heldout", {}).get("base_raw"),
                                   **{f"round_{k}": per_round[k].get("heldout", {}).get("round_raw") for k in rounds}},
        "rounds": {f"round_{k}": per_round[k] for k in rounds},
        "timings": timings,
        "peak_rss_mib": max((t.get("peak_rss_mib_so_far", 0) for t in timings.values()), default=None),
        "total_seconds": round(sum(t["seconds"] for t in timings.values()), 1),
        "sizes": {f"round_{k}": _sizes(run_dir, k) for k in rounds},
    }
    atomic_write_json(run_dir / "report.json", report)
    _plot(run_dir, report, per_round, rounds)
    md = _markdown(report, per_round, rounds)
    atomic_write_text(run_dir / "report.md", md)
    return md


def _choice_summary(choice: dict | None) -> dict | None:
    if not choice:
        return None
    vs = choice["vs_base"]
    return {"method": choice["method"], "retriever": choice["retriever"], "retriever_path": choice["retriever_path"],
            "fusion": choice["fusion"], "weight": choice["weight"], "ndcg@10": choice["ndcg@10"],
            "p_value_vs_base": vs["p_value"], "delta_vs_base": vs["delta"], "delta_ci95_vs_base": vs["delta_ci95"],
            "evidence": {"weight": choice["weight_choice"], "retriever": choice["retriever_choice"]}}


def _full_split_lines(report: dict, split: str) -> list[str]:
    if not report["comparisons"]:
        return []
    lines = ["", f"## Full {split} split: paired comparisons, with statistics", "",
             "| comparison (a vs b) | a | b | Δ points | 95% CI | paired p |", "|---|---:|---:|---:|---|---:|"]
    for c in report["comparisons"]:
        lo, hi = c["delta_ci95"]
        lines.append(f"| {c['a']} vs {c['b']} | {c['mean_a']:.4f} | {c['mean_b']:.4f} | {100 * c['delta']:+.2f} | "
                     f"[{100 * lo:+.2f}, {100 * hi:+.2f}] | {c['p_value']:.3g} |")
    choice = report["label_free_choice"]
    if choice:
        ev = choice["evidence"]["weight"]
        lines += ["", f"Label-free choice: **{choice['retriever']} retriever + BM25**, {choice['fusion']} BM25 weight "
                  f"{choice['weight']:g} → nDCG@10 {choice['ndcg@10']:.4f} (paired p = "
                  f"{choice['p_value_vs_base']:.3g} against the base retriever). Chosen on pseudo-queries, no test "
                  "label: nDCG@10 by weight "
                  + ", ".join(f"{w} {v:.4f}" for w, v in ev["ndcg_at_10"].items())
                  + f" over {ev['pseudo_queries']} of {ev['pseudo_queries_total']} pseudo-queries; rule: {ev['rule']}."]
    return lines


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def _with_ci(figure: dict | None) -> str:
    """``0.7363 [0.7012, 0.7698]``: nDCG@10 and its 95% bootstrap interval (``—`` when not measured)."""
    if not figure or figure.get("ndcg@10") is None:
        return "—"
    ci = figure.get("ci95")
    return _fmt(figure["ndcg@10"]) + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _delta(report: dict, a: str, b: str) -> str | None:
    c = next((c for c in report["comparisons"] if (c["a"], c["b"]) == (a, b)), None)
    if c is None:
        return None
    lo, hi = c["delta_ci95"]
    return f"Δ {100 * c['delta']:+.2f} points [{100 * lo:+.2f}, {100 * hi:+.2f}], paired p = {c['p_value']:.3g}"


def _subset_label(q: dict, detail: bool = True) -> str:
    label = f"paired subset of {q.get('queries')} queries"
    return label + (f" ({q.get('split')} split, seed {q.get('seed')})" if detail else "")


def _headline_lines(report: dict, rounds: list[int]) -> list[str]:
    """The report's first lines: full-split figures with their intervals, the label-free choice first."""
    fs, k, choice = report["full_split"], rounds[-1], report["label_free_choice"]
    split = fs.get("split") or report["query_set"].get("split")
    if fs["before"]["ndcg@10"] is None:
        return [f"No {split} qrels: no test figures; the held-out pseudo-queries below are the only signal."]
    chosen = (f"{choice['retriever']} retriever + BM25, {choice['fusion']} BM25 weight {choice['weight']:g}, "
              "chosen on pseudo-queries" if choice else "")
    parts = ([f"label-free choice **{_with_ci(choice)}** ({chosen})"] if choice else []) + [
        f"untrained hybrid 0.5 / 0.5 (base retriever + BM25) {_with_ci(report['hybrid']['base'])}",
        f"BM25 {_with_ci(report['bm25'])}",
        f"round {k} retriever {_with_ci(fs['after_retriever_only'])} vs base {_with_ci(fs['before'])}"
        + (f" ({d})" if (d := _delta(report, "round_raw", "base_raw")) else "")]
    lines = [f"**Full {split} split, all {fs['queries']} judged queries** (nDCG@10, 95% bootstrap interval): "
             + "; ".join(parts) + ".", "",
             "| full split: system | nDCG@10 [95% CI] |", "|---|---:|"]
    if choice:
        lines.append(f"| **label-free choice**: {chosen} (no test label) | **{_with_ci(choice)}** |")
    lines += [f"| hybrid: round {k} retriever + BM25, min-max 0.5 / 0.5 | {_with_ci(report['hybrid']['round'])} |",
              f"| hybrid: base retriever + BM25, min-max 0.5 / 0.5 | {_with_ci(report['hybrid']['base'])} |",
              f"| BM25 | {_with_ci(report['bm25'])} |",
              f"| round {k} retriever, raw | {_with_ci(fs['after_retriever_only'])} |",
              f"| before: base retriever, raw | {_with_ci(fs['before'])} |"]
    if choice and (d := _delta(report, "label_free", "base_raw")):
        lines += ["", f"Label-free choice vs the base retriever: {d}."]
    return lines


def _markdown(report: dict, per_round: dict, rounds: list[int]) -> str:
    q = report["query_set"]
    lines = ["# Self-boost report", "", *_headline_lines(report, rounds), *_fit_lines(report)]
    if q.get("queries"):
        lines += _subset_lines(report, per_round, rounds)
    lines += ["", "Held-out pseudo-queries (label-free early-stopping signal), nDCG@10: " + ", ".join(
                  f"{k} {_fmt(v)}" for k, v in report["heldout_pseudo_queries"].items()),
              *_full_split_lines(report, q.get("split")), "",
              "## Timings", "", "| step | seconds | peak RSS so far (MiB) |", "|---|---:|---:|"]
    for step, t in report["timings"].items():
        lines.append(f"| {step} | {t['seconds']:.0f} | {t.get('peak_rss_mib_so_far', '')} |")
    lines += [f"| **total** | {report['total_seconds']:.0f} | {report['peak_rss_mib']} |", "", "## Sizes", ""]
    for rnd, sizes in report["sizes"].items():
        for stage, s in sizes.items():
            lines.append(f"- {rnd} {stage}: {json.dumps({k: v for k, v in s.items() if k != 'samples'})}")
    lines += _sample_lines(report)
    lines.append("")
    return "\n".join(lines)


def _fit_lines(report: dict) -> list[str]:
    """Training steps the driver sized down or skipped because filtering left too few rows (scripts/fit.py)."""
    fits = [(step, t["fit"]) for step, t in report["timings"].items() if t.get("fit")]
    if not fits:
        return []
    return ["", "Training steps fitted to the rows filtering left:",
            *(f"- {step}: {fit['action']}: {fit['reason']}" for step, fit in fits)]


def _subset_lines(report: dict, per_round: dict, rounds: list[int]) -> list[str]:
    """The generation methods, on the paired subset only, labelled as such."""
    q = report["query_set"]
    lines = ["", f"## Generation methods: {_subset_label(q)}", "",
             f"HyDE, Query2doc and the round's generator run on a {_subset_label(q)} only, every method on the "
             "same queries; compare them with each other, not with the full-split figures above.", "",
             f"| method | nDCG@10, {_subset_label(q, detail=False)} |", "|---|---:|",
             f"| before: base retriever, raw | {_fmt(report['before']['ndcg@10'])} |",
             f"| HyDE (base generator) | {_fmt(report['hyde']['ndcg@10'])} |",
             f"| Query2doc (base generator) | {_fmt(report['query2doc']['ndcg@10'])} |",
             f"| round {rounds[-1]} retriever, raw | {_fmt(report['after_retriever_only']['ndcg@10'])} |",
             f"| **after**: round {rounds[-1]} retriever + round {rounds[-1]} generator | "
             f"{_fmt(report['after']['ndcg@10'])} |"]
    for name, value in per_round[rounds[-1]].get("subset", {}).items():
        if "+" in name:
            lines.append(f"| ablation: {name.replace('+', ' + ').replace('_', ' ')} | {_fmt(value['ndcg@10'])} |")
    return lines


def _sample_lines(report: dict) -> list[str]:
    lines = []
    for rnd, sizes in report["sizes"].items():
        for stage in SAMPLED_STAGES:
            s = sizes.get(stage)
            if not s or "samples" not in s:
                continue
            share = "—" if s["kept_share"] is None else f"{100 * s['kept_share']:.0f}%"
            lines += ["", f"### {rnd} {stage.replace('_', ' ')}: {share} of {s['items']} kept", ""]
            lines += [f"- kept: {q!r}" for q in s["samples"]["kept"]]
            lines += [f"- dropped ({reason.replace('_', ' ')}): {q!r}"
                      for reason, qs in s["samples"]["dropped"].items() for q in qs]
    return ["", "## Pseudo-queries kept and dropped (seeded sample)", *lines] if lines else []


def _errorbar(ax, points: list[tuple[float, dict]], **style) -> None:
    """nDCG@10 points with their 95% intervals as error bars (a point without an interval gets none)."""
    points = [(x, f) for x, f in points if f and f.get("ndcg@10") is not None]
    if not points:
        return
    xs, ys = [x for x, _ in points], [f["ndcg@10"] for _, f in points]
    err = [[y - (f["ci95"] or [y, y])[0] for y, (_, f) in zip(ys, points)],
           [(f["ci95"] or [y, y])[1] - y for y, (_, f) in zip(ys, points)]]
    ax.errorbar(xs, ys, yerr=err, capsize=3, **style)


def _plot(run_dir: Path, report: dict, per_round: dict, rounds: list[int]) -> list[str]:
    """``ndcg_by_round.png``: left, the full split by round with 95% intervals (retriever raw, hybrid, label-free
    choice) beside BM25; right, apart and labelled, the paired subset the generation methods ran on. Returns the
    panels' titles and legend labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs, q, xs = report["full_split"], report["query_set"], [0] + rounds
    fig, (full_ax, sub_ax) = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True,
                                          gridspec_kw={"width_ratios": [3, 2]})
    by_round = [fs["by_round"].get(f"round_{x}", {}) for x in xs]
    choice = report["label_free_choice"]
    series = [("retriever, raw", "raw", dict(marker="o", color="C0")),
              ("hybrid: retriever + BM25, 0.5 / 0.5", "hybrid", dict(marker="s", color="C2")),
              ("label-free choice" + (f" ({choice['retriever']} retriever + BM25 at {choice['weight']:g})"
                                      if choice else ""), "label_free", dict(marker="*", markersize=11, color="C3"))]
    for i, (label, key, style) in enumerate(series):  # a small offset keeps overlapping intervals apart
        _errorbar(full_ax, [(x + 0.04 * (i - 1), r.get(key)) for x, r in zip(xs, by_round)],
                  label=f"{label} (round {xs[-1]}: {_with_ci(by_round[-1].get(key))})", **style)
    bm25 = report["bm25"]
    if bm25["ndcg@10"] is not None:
        full_ax.axhline(bm25["ndcg@10"], color="grey", linestyle="--", label=f"BM25: {_with_ci(bm25)}")
        if bm25.get("ci95"):
            full_ax.axhspan(*bm25["ci95"], color="grey", alpha=0.12)
    full_ax.set_title(f"full {fs.get('split') or q.get('split')} split, all {fs.get('queries')} judged queries "
                      "(95% bootstrap CI)" if fs.get("queries") else "no test qrels: no full-split figures",
                      fontsize=9)
    full_ax.set_ylabel("nDCG@10")

    sub0 = per_round[rounds[0]].get("subset", {})
    subset = {"retriever, raw": [sub0.get("base_raw")] + [per_round[k]["subset"].get("round_raw") for k in rounds],
              "retriever + generator": [sub0.get("base_retriever+base_generator")] +
              [per_round[k]["subset"].get("round_reinforced_ir") for k in rounds]}
    for (label, values), color in zip(subset.items(), ("C0", "C1")):
        pts = [(x, v["ndcg@10"]) for x, v in zip(xs, values) if v]
        if pts:
            sub_ax.plot(*zip(*pts), marker="o", linestyle=":", color=color, label=label)
    for name, label, style in (("hyde", "HyDE", ":"), ("query2doc", "Query2doc", "--")):
        if sub0.get(name):
            sub_ax.axhline(sub0[name]["ndcg@10"], linestyle=style, color="grey", label=f"{label} (base generator)")
    sub_ax.set_title(_subset_label(q) if q.get("queries") else "no paired subset", fontsize=9)
    for ax in (full_ax, sub_ax):
        ax.set_xlabel("round (0 = base models)")
        ax.set_xticks(xs)
        ax.set_xlim(-0.3, xs[-1] + 0.3)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(run_dir / "ndcg_by_round.png", dpi=120)
    labels = [ax.get_title() for ax in (full_ax, sub_ax)] + \
        [t.get_text() for ax in (full_ax, sub_ax) if ax.get_legend() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    return labels


@dataclass
class ReportArguments:
    """Write report.md / report.json / ndcg_by_round.png for a run folder."""
    run_dir: str = ""


def main(argv: Sequence[str]) -> int:
    args = parse_args(ReportArguments, argv, prog="python -m scripts.report")
    print(write_report(args.run_dir))
    return 0


if __name__ == "__main__":
    run_cli(main)
