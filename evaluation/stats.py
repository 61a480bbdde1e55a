"""Paired significance and confidence intervals over queries (numpy only, seeded).

- ``paired_randomization_test``: two-sided sign-flip test on per-query differences (Smucker et al., CIKM
  2007, recommend it for IR): the p-value is the share of random sign assignments whose mean difference is
  at least as far from 0 as the observed one (with the observed assignment counted, so p > 0).
- ``bootstrap_interval``: percentile bootstrap of the mean (of a metric, or of the paired differences).

``compare`` bundles both for two systems scored on the same queries.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

RESAMPLES = 10_000


def paired_randomization_test(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.ndim != 1 or len(diff) == 0:
        raise ValueError("need two equal-length, non-empty per-query score vectors")
    observed = abs(diff.mean())
    if observed == 0.0:
        return 1.0
    rng = np.random.default_rng(seed)
    extreme = 0
    for n in _chunks(resamples, len(diff)):  # bounded memory for 10k-query splits
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, len(diff)))
        extreme += np.count_nonzero(np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12)
    return float((extreme + 1) / (resamples + 1))


def _chunks(resamples: int, width: int, cells: int = 4_000_000) -> list[int]:
    step = max(1, cells // max(width, 1))
    return [min(step, resamples - i) for i in range(0, resamples, step)]


def bootstrap_interval(values: np.ndarray, resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95
                       ) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.concatenate([values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
                            for n in _chunks(resamples, len(values))])
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


@dataclass
class PairedComparison:
    """System a against system b on the same queries (a − b)."""
    a: str
    b: str
    queries: int
    mean_a: float
    mean_b: float
    delta: float
    p_value: float
    delta_ci95: tuple[float, float]
    mean_a_ci95: tuple[float, float]

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lo, hi = self.delta_ci95
        return (f"{self.a} vs {self.b}: {self.mean_a:.4f} vs {self.mean_b:.4f}, Δ {100 * self.delta:+.2f} points "
                f"[95% CI {100 * lo:+.2f}, {100 * hi:+.2f}], paired p = {self.p_value:.3g} ({self.queries} queries)")


def compare(a_name: str, a: Mapping[str, float], b_name: str, b: Mapping[str, float], seed: int = 0
            ) -> PairedComparison:
    """Compare per-query scores ``{qid: value}``; only queries both systems were scored on count."""
    qids = sorted(set(a) & set(b))
    if not qids:
        raise ValueError(f"{a_name} and {b_name} share no scored query")
    va = np.array([a[q] for q in qids], dtype=np.float64)
    vb = np.array([b[q] for q in qids], dtype=np.float64)
    return PairedComparison(a=a_name, b=b_name, queries=len(qids), mean_a=float(va.mean()), mean_b=float(vb.mean()),
                            delta=float((va - vb).mean()), p_value=paired_randomization_test(va, vb, seed=seed),
                            delta_ci95=bootstrap_interval(va - vb, seed=seed),
                            mean_a_ci95=bootstrap_interval(va, seed=seed))
