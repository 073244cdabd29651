"""Changes of representation between the paper's time convention and ComfyUI's (and k-diffusion's) sigma convention.

Paper (RFMI, Sec. 2):   x_t = t·x1 + (1 − t)·x0,  x1 data at t = 1, x0 ~ N(0, I) noise at t = 0,  velocity u = x1 − x0.
ComfyUI (CONST models): x = σ·noise + (1 − σ)·data, so σ = 1 − t; the network outputs ``noise − data`` and
                        ``denoised = x − σ·output`` is its estimate of the data.

Hence u = data − noise = −output = (denoised − x)/σ. One sign slip here inverts every MI ranking, so each conversion is
its own function with its own test (tests/test_conventions.py). The straight path itself, x_t = t·x1 + (1 − t)·ε with
its velocity x1 − ε, is ``straight_path`` (the estimator's draws and every trainer's targets), and a velocity field in
the paper's convention is typed by the ``Velocity`` protocol.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from .checks import require_same_shape, require_unit_interval

__all__ = [
    "Velocity",
    "ModuleVelocity",
    "VelocityPair",
    "PathSample",
    "straight_path",
    "t_from_sigma",
    "sigma_from_t",
    "velocity_from_denoised",
    "denoised_from_velocity",
    "velocity_from_model_output",
    "cfg_velocity",
]


class Velocity(Protocol):
    """A velocity field in the paper's convention: ``velocity(x_t [B, ...], t [B], condition) -> u [B, ...]``, the
    velocity u = x1 − x0 (data minus noise) at paper time t (0 = noise, 1 = data); ``condition`` is whatever the
    field is conditioned on (a label tensor, a dict of tensors, or None for ∅)."""

    def __call__(self, x_t: Tensor, t: Tensor, condition: Any, /) -> Tensor: ...


class ModuleVelocity(Protocol):
    """A ``Velocity`` of the module being trained, which the trainer passes first: ``velocity_fn(module, x_t, t,
    cond)``, with ``cond`` the batch's condition dict (so the trainer can wrap or adapt the module it calls)."""

    def __call__(self, module: nn.Module, x_t: Tensor, t: Tensor, cond: dict[str, Tensor], /) -> Tensor: ...


class VelocityPair(Protocol):
    """Both velocities of a CFG model at once: ``velocity_pair(x_t [N, ...], t [N]) -> (u_y, u_∅)``, each [N, ...]
    (one call may batch the two, as CFG does)."""

    def __call__(self, x_t: Tensor, t: Tensor, /) -> tuple[Tensor, Tensor]: ...


class PathSample(NamedTuple):
    """A point of the straight path and its velocity: ``x_t`` = t·x1 + (1 − t)·ε and ``target`` = x1 − ε."""

    x_t: Tensor
    target: Tensor


def straight_path(x1: Tensor, noise: Tensor, t: Tensor | float) -> PathSample:
    """The rectified-flow path from noise ε (t = 0) to data x1 (t = 1): x_t = t·x1 + (1 − t)·ε, velocity u* = x1 − ε.

    ``t`` is a scalar or holds one time per leading index of ``x1`` ([B] for x1 [B, ...], [E, B] for x1 [E, B, d]);
    it is broadcast over the remaining dims in x1's dtype. u* is the flow-matching target and the exact velocity
    E[x1 − ε | x_t] is what a trained network estimates.
    """
    require_same_shape("noise", noise, "x1", x1)
    t = torch.as_tensor(t, device=x1.device)
    if t.ndim > x1.ndim or tuple(t.shape) != tuple(x1.shape[: t.ndim]):
        raise ValueError(f"t must be a scalar or match the leading dims of x1 {tuple(x1.shape)}; got "
                         f"{tuple(t.shape)}")
    t_b = t.reshape(*t.shape, *[1] * (x1.ndim - t.ndim)).to(x1.dtype)
    return PathSample(t_b * x1 + (1 - t_b) * noise, x1 - noise)


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
