"""Aggregate a self-boost run into ``report.md``, ``report.json`` and ``ndcg_by_round.png``.

    python -m scripts.report --run_dir runs/cpu-demo-scifact

``report.json`` keys: ``before.ndcg@10`` (base retriever, raw), ``after.ndcg@10`` (last round's retriever with its
generator's augmentation), ``hyde.ndcg@10`` and ``query2doc.ndcg@10`` (base generator) — all four on the same
seeded subset of test queries, named in ``query_set`` — plus full-split figures, per-round results, ``timings``
(seconds and peak memory per step) and ``sizes`` (rows produced by each stage). From the last round, on the full
split: ``bm25``, ``hybrid`` (base and round retriever, 0.5 / 0.5), ``label_free_choice`` (method, settings,
nDCG@10, paired p-value against the base retriever) and ``comparisons`` (each with p-value and 95% interval).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from data_generation.stage import DROPPED_FILE
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


def write_report(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    rounds = _rounds(run_dir)
    if not rounds:
        raise UserError("no evaluated round found", file=run_dir)
    per_round = {k: json.loads((run_dir / f"round_{k}" / "eval" / "results.json").read_text()) for k in rounds}
    first, last = per_round[rounds[0]], per_round[rounds[-1]]
    sub0, subl = first.get("subset", {}), last.get("subset", {})
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").is_file() else {}
    pick = lambda d, key: None if key not in d else d[key]["ndcg@10"]  # noqa: E731
    report = {
        "before": {"ndcg@10": pick(sub0, "base_raw")},
        "after": {"ndcg@10": pick(subl, "round_reinforced_ir")},
        "hyde": {"ndcg@10": pick(sub0, "hyde")},
        "query2doc": {"ndcg@10": pick(sub0, "query2doc")},
        "after_retriever_only": {"ndcg@10": pick(subl, "round_raw")},
        "query_set": {**last.get("subset_definition", {}), "queries": last.get("subset_queries")},
        "full_split": {"before": {"ndcg@10": pick(first.get("full", {}), "base_raw")},
                       "after_retriever_only": {"ndcg@10": pick(last.get("full", {}), "round_raw")}},
        "bm25": {"ndcg@10": pick(last.get("full", {}), "bm25")},
        "hybrid": {"fusion": "minmax", "weight": 0.5, "base": {"ndcg@10": pick(last.get("full", {}), "base_hybrid")},
                   "round": {"ndcg@10": pick(last.get("full", {}), "round_hybrid")}},
        "label_free_choice": _choice_summary(last.get("label_free_choice")),
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
    _plot(run_dir, per_round, rounds)
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
    lines = ["", f"## Full {split} split, with statistics", "",
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


def _markdown(report: dict, per_round: dict, rounds: list[int]) -> str:
    q = report["query_set"]
    lines = ["# Self-boost report", "",
             f"Paired comparison on a seeded subset of {q.get('queries')} {q.get('split')} queries "
             f"(seed {q.get('seed')}); every method on the same queries.", "",
             "| method | nDCG@10 |", "|---|---:|",
             f"| before: base retriever, raw | {_fmt(report['before']['ndcg@10'])} |",
             f"| HyDE (base generator) | {_fmt(report['hyde']['ndcg@10'])} |",
             f"| Query2doc (base generator) | {_fmt(report['query2doc']['ndcg@10'])} |",
             f"| round {rounds[-1]} retriever, raw | {_fmt(report['after_retriever_only']['ndcg@10'])} |",
             f"| **after**: round {rounds[-1]} retriever + round {rounds[-1]} generator | "
             f"{_fmt(report['after']['ndcg@10'])} |"]
    for name, value in per_round[rounds[-1]].get("subset", {}).items():
        if "+" in name:
            lines.append(f"| ablation: {name.replace('+', ' + ').replace('_', ' ')} | {_fmt(value['ndcg@10'])} |")
    fs = report["full_split"]
    lines += ["", f"Full {q.get('split')} split, no generation: base {_fmt(fs['before']['ndcg@10'])} → "
              f"round {rounds[-1]} retriever {_fmt(fs['after_retriever_only']['ndcg@10'])}.", "",
              "Held-out pseudo-queries (label-free early-stopping signal), nDCG@10: " + ", ".join(
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


def _plot(run_dir: Path, per_round: dict, rounds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sub0 = per_round[rounds[0]].get("subset", {})
    xs = [0] + rounds
    series = {"retriever raw": [sub0.get("base_raw")] + [per_round[k]["subset"].get("round_raw") for k in rounds],
              "retriever + generator": [sub0.get("base_retriever+base_generator")] +
              [per_round[k]["subset"].get("round_reinforced_ir") for k in rounds]}
    for label, values in series.items():
        pts = [(x, v["ndcg@10"]) for x, v in zip(xs, values) if v]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    for name, style in (("hyde", ":"), ("query2doc", "--")):
        if sub0.get(name):
            ax.axhline(sub0[name]["ndcg@10"], linestyle=style, color="grey", label=f"{name} (base generator)")
    ax.set_xlabel("round (0 = base models)")
    ax.set_ylabel("nDCG@10 (paired test subset)")
    ax.set_xticks(xs)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "ndcg_by_round.png", dpi=120)
    plt.close(fig)


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
