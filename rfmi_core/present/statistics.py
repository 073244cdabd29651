"""Summaries of measured outcomes, from scipy: a proportion's Wilson interval, a mean's percentile-bootstrap interval,
the AUROC of a score (Mann–Whitney U over pairs) and rank correlation with ties averaged (Spearman)."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["wilson_interval", "bootstrap_interval", "auroc", "spearman"]


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials (NaNs when n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    interval = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def bootstrap_interval(values, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The percentile-bootstrap interval of the mean of ``values`` (NaNs when empty; the value itself when all are
    equal)."""
    data = np.asarray(values, dtype=np.float64).ravel()
    if data.size == 0:
        return float("nan"), float("nan")
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    result = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                             random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def auroc(positive, negative) -> float:
    """P(a positive scores above a negative), ties counted half: the Mann–Whitney U over all pairs, normalised."""
    pos, neg = np.asarray(positive, dtype=np.float64).ravel(), np.asarray(negative, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    return float(stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic / (pos.size * neg.size))


def spearman(a, b) -> float:
    """Spearman's rank correlation, ties given their average rank (NaN when either side is constant)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)
