"""Every change of representation between the paper's t and ComfyUI's σ, and the sign that each one carries."""

import math

import pytest
import torch

from rfmi_core import (
    GaussianChannel,
    cfg_velocity,
    denoised_from_velocity,
    sample_with_mi,
    sigma_from_t,
    t_from_sigma,
    velocity_from_denoised,
    velocity_from_model_output,
)


def comfy_flow_step(data, noise, sigma):
    """What a ComfyUI CONST (flow) model sees and returns, built from its documented conventions."""
    x = sigma * noise + (1 - sigma) * data  # model_sampling.noise_scaling
    output = noise - data  # a perfect flow model's raw output
    denoised = x - sigma * output  # model_sampling.calculate_denoised
    return x, output, denoised


def test_t_and_sigma_are_mirror_images():
    assert t_from_sigma(0.25) == 0.75
    assert sigma_from_t(0.75) == 0.25
    s = torch.rand(7, dtype=torch.float64)
    assert torch.equal(sigma_from_t(t_from_sigma(s)), s)


def test_velocity_from_denoised_is_data_minus_noise():
    g = torch.Generator().manual_seed(0)
    data, noise = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    sigma = torch.tensor([0.9, 0.5, 0.1])
    x, output, denoised = comfy_flow_step(data, noise, sigma.view(-1, 1, 1, 1))
    torch.testing.assert_close(denoised, data, atol=1e-5, rtol=0)
    u = velocity_from_denoised(x, denoised, sigma)
    torch.testing.assert_close(u, data - noise, atol=1e-4, rtol=0)
    torch.testing.assert_close(velocity_from_model_output(output), data - noise)
    torch.testing.assert_close(u, -output, atol=1e-4, rtol=0)


def test_denoised_from_velocity_inverts_velocity_from_denoised():
    g = torch.Generator().manual_seed(1)
    x, denoised = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    u = velocity_from_denoised(x, denoised, 0.3)
    torch.testing.assert_close(denoised_from_velocity(x, u, 0.3), denoised, atol=1e-6, rtol=0)


def test_cfg_velocity_extrapolates_from_uncond():
    u_c, u_u = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert torch.equal(cfg_velocity(u_c, u_u, 1.0), u_c)
    assert torch.equal(cfg_velocity(u_c, u_u, 0.0), u_u)
    assert torch.equal(cfg_velocity(u_c, u_u, 3.0), torch.tensor([[4.0, -2.0]]))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: velocity_from_denoised(torch.zeros(2, 3), torch.zeros(2, 4), 0.5), "denoised has shape"),
        (lambda: velocity_from_denoised(torch.zeros(2, 3), torch.zeros(2, 3), 1.5), "sigma must lie in"),
        (lambda: velocity_from_denoised(torch.zeros(2, 3), torch.zeros(2, 3), 0.0), "sigma must be > 0"),
        (lambda: velocity_from_denoised(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3) * 0.5), "one value per image"),
        (lambda: cfg_velocity(torch.zeros(2, 3), torch.zeros(3, 3), 2.0), "u_uncond has shape"),
    ],
)
def test_conversion_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sign_and_time_slips_change_the_estimate():
    """A Gaussian flow model in ComfyUI's convention (output = noise − data): only u = −output recovers the true MI."""
    channel = GaussianChannel.random(dim_x=4, dim_y=2, noise_scale=0.5, seed=3)
    n = 1000
    g = torch.Generator().manual_seed(5)
    y, noise = channel.sample_condition(n, g), torch.randn(n, 4, generator=g)

    def comfy_model(x, sigma, c):  # raw output of a perfect CONST model at noise level sigma
        return -channel.velocity(x, 1 - sigma, c)

    def run(velocity):
        _, result = sample_with_mi(velocity, noise, torch.linspace(1, 0, 51), y, None, mi_velocity="cond")
        return float(result.mi.mean()), float(result.mi.std() / math.sqrt(n))

    def correct(x, t, c):
        sigma = 1 - t
        return velocity_from_denoised(x, x - sigma[:, None] * comfy_model(x, sigma, c), sigma)

    right, se = run(correct)
    assert abs(right - channel.true_mi) < 3 * se
    flipped, _ = run(lambda x, t, c: comfy_model(x, 1 - t, c))  # u = +output: the sampler runs backwards
    assert abs(flipped - channel.true_mi) > 10 * se
    swapped, _ = run(lambda x, t, c: -comfy_model(x, t, c))  # σ passed where t belongs
    print(f"sign test: true {channel.true_mi:.4f}; u = −output {right:.4f} ± {se:.4f}; u = +output {flipped:.4f}; "
          f"σ for t {swapped:.4f}")
    assert abs(swapped - channel.true_mi) > 10 * se
