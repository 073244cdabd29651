"""Point-wise MI along a trajectory (Algorithm 2) and on existing samples (Prop. 3.3), against closed-form MI."""

import math

import pytest
import torch

from rfmi_core import (
    GaussianChannel,
    GaussianMixture,
    TrajectoryMI,
    estimate_mi,
    sample_with_mi,
)

N_IMAGES = 2000


def linear_grid(steps=100):
    return torch.linspace(1, 0, steps + 1)


def shifted_grid(steps=100, shift=3.0):
    """SD3's schedule: σ = shift·τ/(1 + (shift − 1)·τ) on a uniform τ grid (ComfyUI's time_snr_shift)."""
    tau = torch.linspace(1, 0, steps + 1)
    return shift * tau / (1 + (shift - 1) * tau)


def mean_and_se(values):
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


@pytest.fixture(scope="module")
def channel():
    return GaussianChannel.random(dim_x=4, dim_y=2, noise_scale=0.5, seed=0)


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.random(num_components=3, dim_x=4, seed=0)


@pytest.mark.parametrize("grid", [linear_grid, shifted_grid], ids=["linear", "shift3"])
def test_trajectory_mi_matches_the_gaussian_closed_form(channel, grid):
    g = torch.Generator().manual_seed(11)
    y, noise = channel.sample_condition(N_IMAGES, g), torch.randn(N_IMAGES, 4, generator=g)
    _, result = sample_with_mi(channel.velocity, noise, grid(), y, None, mi_velocity="cond")
    mean, se = mean_and_se(result.mi)
    print(f"gaussian trajectory ({grid.__name__}): {mean:.4f} ± {se:.4f} vs closed form {channel.true_mi:.4f}")
    assert abs(mean - channel.true_mi) < 3 * se
    assert se < 0.05 * channel.true_mi  # the test has power: 3 s.e. is a tight band


def test_estimate_mi_matches_the_gaussian_closed_form(channel):
    g = torch.Generator().manual_seed(12)
    y = channel.sample_condition(N_IMAGES, g)
    x1 = channel.sample_data(y, g)
    mi = estimate_mi(channel.velocity, x1, y, None, n_t=8, t_eps=0.99, generator=g, mi_velocity="cond")
    mean, se = mean_and_se(mi)
    print(f"gaussian estimate_mi: {mean:.4f} ± {se:.4f} vs closed form {channel.true_mi:.4f}")
    assert abs(mean - channel.true_mi) < 3 * se
    assert se < 0.05 * channel.true_mi


def test_trajectory_and_estimate_match_the_mixture_mi(mixture):
    truth, truth_se = mixture.monte_carlo_mi(n=200_000, seed=1)
    g = torch.Generator().manual_seed(13)
    labels = mixture.sample_condition(N_IMAGES, g)
    _, result = sample_with_mi(mixture.velocity, torch.randn(N_IMAGES, 4, generator=g), linear_grid(), labels, None,
                               mi_velocity="cond")
    traj, traj_se = mean_and_se(result.mi)
    est, est_se = mean_and_se(estimate_mi(mixture.velocity, mixture.sample_data(labels, g), labels, None, n_t=8,
                                          generator=g, mi_velocity="cond"))
    print(f"mixture: truth {truth:.4f} ± {truth_se:.4f}; trajectory {traj:.4f} ± {traj_se:.4f}; estimate {est:.4f} ± {est_se:.4f}")
    assert abs(traj - truth) < 3 * math.hypot(traj_se, truth_se)
    assert abs(est - truth) < 3 * math.hypot(est_se, truth_se)


def test_left_riemann_sum_on_the_samplers_own_grid():
    """Hand-computed: constant velocities, grid σ = 1, 0.5, 0.2, 0 → weights t/(1 − t) = 0, 1, 4; Δt = 0.5, 0.3, 0.2."""
    acc = TrajectoryMI(velocity="cond", score="rfmi")
    x = torch.zeros(1, 2)
    u_y, u_0 = torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 1.0]])  # u·(u − u_∅) = 6, ‖u_y − u_∅‖² = 4
    for sigma, sigma_next in [(1.0, 0.5), (0.5, 0.2), (0.2, 0.0)]:
        acc.add_step(sigma, sigma_next, x, u_y, u_0, cfg_scale=2.0)
    result = acc.result()
    assert result.mi.item() == pytest.approx(0 * 6 * 0.5 + 1 * 6 * 0.3 + 4 * 6 * 0.2)
    assert result.mi_of("squared").item() == pytest.approx(1 * 4 * 0.3 + 4 * 4 * 0.2)
    assert result.mi_of("mitune").item() == pytest.approx((1 * 6 + 4 * 6) / 2)  # σ = 1 is outside (0.05, 1)
    torch.testing.assert_close(result.trace, torch.tensor([[0.0, 6.0, 24.0]]))


def test_cfg_velocity_stands_in_for_the_conditional():
    acc = TrajectoryMI(velocity="cfg")
    u_y, u_0 = torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 1.0]])
    acc.add_step(0.5, 0.0, torch.zeros(1, 2), u_y, u_0, cfg_scale=2.0)
    # u_cfg = (5, 1); u_cfg − u_∅ = (4, 0); inner = 20; weight 1; Δt 0.5
    assert acc.result().mi.item() == pytest.approx(10.0)


def test_steps_at_sigma_zero_contribute_nothing():
    acc = TrajectoryMI(velocity="cond")
    ones = torch.ones(2, 3)
    acc.add_step(0.5, 0.0, ones, 2 * ones, ones)
    acc.add_step(torch.tensor([0.0, 0.0]), 0.0, ones, torch.full((2, 3), float("nan")), ones)
    result = acc.result()
    torch.testing.assert_close(result.mi, torch.tensor([3.0, 3.0]))  # 1 · (2·1·3) · 0.5
    assert torch.equal(result.trace[:, 1], torch.zeros(2))


def test_map_is_non_negative_and_sums_to_the_squared_form():
    g = torch.Generator().manual_seed(4)
    sigmas = shifted_grid(20)
    acc = TrajectoryMI(velocity="cfg")
    expected = torch.zeros(3, dtype=torch.float64)
    for i in range(20):
        x, u_y, u_0 = (torch.randn(3, 4, 6, 5, generator=g) for _ in range(3))
        acc.add_step(sigmas[i], sigmas[i + 1], x, u_y, u_0, cfg_scale=4.5)
        s = float(sigmas[i])
        expected += (1 - s) / s * (u_y - u_0).double().square().sum(dim=(1, 2, 3)) * float(sigmas[i] - sigmas[i + 1])
    result = acc.result()
    assert result.map.shape == (3, 6, 5)
    assert bool((result.map >= 0).all())
    torch.testing.assert_close(result.map.double().sum(dim=(1, 2)), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(result.mi_of("squared").double(), expected, rtol=1e-5, atol=0)


def test_an_images_mi_does_not_depend_on_its_batch(channel):
    g = torch.Generator().manual_seed(7)
    y, noise = channel.sample_condition(8, g), torch.randn(8, 4, generator=g)
    _, together = sample_with_mi(channel.velocity, noise, shifted_grid(30), y, None, cfg=3.0)
    for i in (0, 5):
        _, alone = sample_with_mi(channel.velocity, noise[i : i + 1], shifted_grid(30), y[i : i + 1], None, cfg=3.0)
        torch.testing.assert_close(alone.mi, together.mi[i : i + 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_match_float32(dtype):
    """A latent-sized trajectory (16×32×32) fed in half precision: finite, and within 1e-2 of float32."""
    g = torch.Generator().manual_seed(9)
    sigmas = shifted_grid(10)
    full, half = TrajectoryMI(), TrajectoryMI()
    for i in range(10):
        x = torch.randn(2, 16, 32, 32, generator=g)
        u_0 = torch.randn(2, 16, 32, 32, generator=g)
        u_y = u_0 + 0.3 * torch.randn(2, 16, 32, 32, generator=g)
        full.add_step(sigmas[i], sigmas[i + 1], x, u_y, u_0, 4.5)
        half.add_step(sigmas[i], sigmas[i + 1], x.to(dtype), u_y.to(dtype), u_0.to(dtype), 4.5)
    a, b = full.result(), half.result()
    assert a.mi.dtype == b.mi.dtype == torch.float32 and bool(torch.isfinite(b.mi).all())
    torch.testing.assert_close(b.mi, a.mi, rtol=1e-2, atol=0)
    torch.testing.assert_close(b.map, a.map, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize(
    "step, message",
    [
        (lambda acc: acc.add_step(0.5, 0.4, torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3)), "u_cond has shape"),
        (lambda acc: acc.add_step(0.5, 0.4, torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(1, 3)), "u_uncond has shape"),
        (lambda acc: acc.add_step(1.2, 0.4, torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)), "sigma must lie in"),
        (lambda acc: acc.add_step(0.5, -0.1, torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)), "sigma_next must lie in"),
        (lambda acc: acc.add_step(0.5, 0.4, torch.zeros(2, 3), torch.full((2, 3), float("inf")), torch.zeros(2, 3)), "u_cond holds 1|u_cond holds 6"),
        (lambda acc: acc.add_step(0.5, 0.4, torch.zeros(2, 3), torch.zeros(2, 3), torch.full((2, 3), float("nan"))), "u_uncond holds"),
        (lambda acc: acc.add_step(0.5, 0.4, torch.zeros(3), torch.zeros(3), torch.zeros(3)), "x must be batched"),
        (lambda acc: acc.result(), "no steps were added"),
    ],
)
def test_bad_input_names_the_argument(step, message):
    with pytest.raises(ValueError, match=message):
        step(TrajectoryMI())


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="velocity must be one of"):
        TrajectoryMI(velocity="uncond")
    with pytest.raises(ValueError, match="score must be one of"):
        TrajectoryMI(score="kl")
    with pytest.raises(ValueError, match="sigmas must be non-increasing"):
        sample_with_mi(lambda x, t, c: x, torch.zeros(1, 2), torch.tensor([0.0, 1.0]), None, None)
