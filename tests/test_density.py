"""The truncated importance density q(t) ∝ min(t/(1 − t), t_ε/(1 − t_ε)) and its Lambert-W inverse CDF."""

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from rfmi_core import TruncatedRatioDensity
from rfmi_core.mi.estimate import T_MAX_FLOAT32, times_from_uniform


@pytest.fixture(params=[0.9, 0.99, 0.999])
def density(request):
    return TruncatedRatioDensity(request.param)


def test_pdf_integrates_to_one(density):
    total, _ = integrate.quad(density.pdf, 0, 1, points=[density.t_eps], limit=200)
    assert total == pytest.approx(1.0, abs=1e-9)


def test_cdf_is_the_integral_of_pdf(density):
    for t in [0.05, 0.3, 0.8, density.t_eps, (1 + density.t_eps) / 2]:
        area, _ = integrate.quad(density.pdf, 0, t, points=[min(t, density.t_eps)], limit=200)
        assert density.cdf(t) == pytest.approx(area, abs=1e-10)


def test_icdf_inverts_cdf_on_both_branches(density):
    below = np.linspace(1e-4, density.t_eps, 2001)
    above = np.linspace(density.t_eps, 1.0, 501)
    for t in (below, above):
        np.testing.assert_allclose(density.icdf(density.cdf(t)), t, rtol=0, atol=1e-9)
    p = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(density.cdf(density.icdf(p)), p, rtol=0, atol=1e-12)


def test_icdf_agrees_with_a_root_finder(density):
    """The closed form (Lambert W, branch 0) against brute-force root finding on the CDF."""
    for p in [1e-6, 0.01, 0.37, 0.9, 0.999]:
        root = optimize.brentq(lambda t: density.cdf(t) - p, 0, 1, xtol=1e-14)
        assert density.icdf(p) == pytest.approx(root, abs=1e-10)


def test_samples_follow_the_cdf(density):
    draws = density.sample(20_000, torch.Generator().manual_seed(0)).numpy()
    assert draws.min() >= 0 and draws.max() <= 1
    assert stats.kstest(draws, density.cdf).pvalue > 0.01


def test_importance_weight_undoes_the_density(density):
    t = np.linspace(0.01, 0.99999, 333)
    np.testing.assert_allclose(density.importance_weight(t) * density.pdf(t), t / (1 - t), rtol=1e-10)


@pytest.mark.parametrize("t_eps", [0.0, 1.0, -0.5, 2.0, float("nan")])
def test_t_eps_outside_the_open_unit_interval_is_refused(t_eps):
    with pytest.raises(ValueError, match="t_eps"):
        TruncatedRatioDensity(t_eps)


def test_out_of_range_arguments_are_refused():
    density = TruncatedRatioDensity(0.99)
    with pytest.raises(ValueError, match="p must lie in"):
        density.icdf(1.5)
    with pytest.raises(ValueError, match="t must lie in"):
        density.pdf(-0.1)


def test_drawn_times_stay_below_one_in_float32(density):
    """A uniform draw at the top of q's range would give t = 1 after the float32 cast (σ = 0, velocity undefined):
    the drawn times stop at the largest float32 below 1, and every other time is the exact inverse CDF."""
    uniform = np.array([0.3, 0.995, 1 - 1e-9, 1.0])
    times = times_from_uniform(density, uniform)
    assert times[-2:].tolist() == [T_MAX_FLOAT32, T_MAX_FLOAT32]
    assert np.all(times.astype(np.float32) < 1) and np.all(1 - times.astype(np.float32) > 0)
    assert times[:2].tolist() == density.icdf(uniform[:2]).tolist()
    assert density.icdf(np.array([1 - 1e-9])).astype(np.float32)[0] == 1.0  # what the cap prevents
