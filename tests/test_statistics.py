"""The pack's summaries come from scipy; each is checked against the closed form or the direct count it replaces."""

import math

import numpy as np
import pytest
import torch

from rfmi_core.present.statistics import auroc, bootstrap_interval, spearman, wilson_interval


def wilson_by_hand(k, n, z=1.959964):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


@pytest.mark.parametrize("k, n", [(0, 10), (10, 10), (50, 100), (3, 7), (171, 600)])
def test_wilson_is_the_closed_form(k, n):
    assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-6)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_auroc_is_the_pair_count_with_ties_half():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randint(0, 5, (13,), generator=g).float(), torch.randint(0, 5, (17,), generator=g).float()
    diff = pos[:, None] - neg[None, :]
    by_hand = float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())
    assert auroc(pos.numpy(), neg.numpy()) == pytest.approx(by_hand, abs=1e-7)  # the count in float32
    assert math.isnan(auroc([], [1.0]))


def test_spearman_averages_ties():
    a, b = [1, 2, 2, 3, 4], [10, 20, 20, 40, 30]
    ranks = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(float)  # noqa: E731
    assert spearman(a, b) == pytest.approx(0.8947368, abs=1e-6)  # ties averaged: ranks 2.5, 2.5 on both sides
    assert spearman(a, b) != pytest.approx(float(np.corrcoef(ranks(a), ranks(b))[0, 1]), abs=1e-3)  # arbitrary ties
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_bootstrap_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.5, 1, 50), rng.normal(0.5, 1, 5000)
    lo, hi = bootstrap_interval(small)
    assert lo < small.mean() < hi and hi - lo == pytest.approx(2 * 1.96 / math.sqrt(50), rel=0.35)
    lo2, hi2 = bootstrap_interval(large)
    assert hi2 - lo2 < (hi - lo) / 5
    assert bootstrap_interval([1.0, 1.0]) == (1.0, 1.0)
