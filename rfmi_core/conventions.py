"""Changes of representation between the paper's time convention and ComfyUI's (and k-diffusion's) sigma convention.

Paper (RFMI, Sec. 2):   x_t = t·x1 + (1 − t)·x0,  x1 data at t = 1, x0 ~ N(0, I) noise at t = 0,  velocity u = x1 − x0.
ComfyUI (CONST models): x = σ·noise + (1 − σ)·data, so σ = 1 − t; the network outputs ``noise − data`` and
                        ``denoised = x − σ·output`` is its estimate of the data.

Hence u = data − noise = −output = (denoised − x)/σ. One sign slip here inverts every MI ranking, so each conversion is
its own function with its own test (tests/test_conventions.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import require_same_shape, require_unit_interval

__all__ = [
    "t_from_sigma",
    "sigma_from_t",
    "velocity_from_denoised",
    "denoised_from_velocity",
    "velocity_from_model_output",
    "cfg_velocity",
]


def t_from_sigma(sigma: Tensor | float) -> Tensor | float:
    """Paper time from ComfyUI noise level: t = 1 − σ."""
    return 1 - sigma


def sigma_from_t(t: Tensor | float) -> Tensor | float:
    """ComfyUI noise level from paper time: σ = 1 − t."""
    return 1 - t


def _per_image(sigma: Tensor | float, like: Tensor) -> Tensor:
    """σ (scalar or [B]) shaped [B, 1, ..., 1] to broadcast against ``like`` [B, ...], in float32."""
    s = torch.as_tensor(sigma, device=like.device).to(torch.float32)
    if s.numel() == 1:
        return s.reshape([1] * like.ndim)
    if s.numel() != like.shape[0]:
        raise ValueError(f"sigma must be a scalar or hold one value per image ({like.shape[0]}); got {s.numel()} values")
    return s.reshape([-1] + [1] * (like.ndim - 1))


def velocity_from_denoised(x: Tensor, denoised: Tensor, sigma: Tensor | float) -> Tensor:
    """Paper velocity from ComfyUI's denoised estimate: u = (denoised − x)/σ, in float32.

    ``x`` and ``denoised`` are [B, ...] in the model's latent space; σ is a scalar or [B], in (0, 1].
    """
    require_same_shape("denoised", denoised, "x", x)
    require_unit_interval("sigma", sigma)
    s = _per_image(sigma, x)
    if bool((s <= 0).any()):
        raise ValueError("sigma must be > 0 for a velocity: at sigma = 0 the image is clean and u is undefined")
    return (denoised.float() - x.float()).div_(s)  # one new tensor: the difference is fresh, divide it in place


def denoised_from_velocity(x: Tensor, u: Tensor, sigma: Tensor | float) -> Tensor:
    """ComfyUI's denoised estimate from the paper velocity: denoised = x + σ·u (the inverse of velocity_from_denoised)."""
    require_same_shape("u", u, "x", x)
    return x.float() + _per_image(sigma, x) * u.float()


def velocity_from_model_output(output: Tensor) -> Tensor:
    """Paper velocity from a CONST (flow) model's raw output: u = −output, since the output is noise − data."""
    return -output.float()


def cfg_velocity(u_cond: Tensor, u_uncond: Tensor, scale: float | Tensor) -> Tensor:
    """Classifier-free-guided velocity (the paper's u_cfg, Sec. 4): u_cfg = u_∅ + w·(u_y − u_∅)."""
    require_same_shape("u_uncond", u_uncond, "u_cond", u_cond)
    w = scale if not isinstance(scale, Tensor) else _per_image(scale, u_cond)
    return u_uncond + w * (u_cond - u_uncond)
