"""A plain Euler sampler in the paper's convention that reads point-wise MI on the way (paper Algorithm 2).

For models loaded outside ComfyUI (analytic fields, the toy model); inside ComfyUI the nodes read the same quantities
through ComfyUI's own sampler instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .checks import require_batched, require_unit_interval
from .conventions import Velocity, cfg_velocity, t_from_sigma
from ..util.progress import progress_bar
from .trajectory import MIResult, TrajectoryMI

__all__ = ["sample_with_mi"]


def check_sigma_grid(sigmas: Tensor) -> Tensor:
    """A decreasing 1-D grid of noise levels in [0, 1], as float32."""
    sigmas = torch.as_tensor(sigmas).to(torch.float32).flatten()
    if sigmas.numel() < 2:
        raise ValueError(f"sigmas must hold at least 2 noise levels (start and target); got {sigmas.numel()}")
    require_unit_interval("sigmas", sigmas)
    if bool((sigmas[1:] > sigmas[:-1]).any()):
        raise ValueError("sigmas must be non-increasing, from noise (1) towards data (0)")
    return sigmas


@torch.no_grad()
def sample_with_mi(
    velocity: Velocity,
    noise: Tensor,
    sigmas: Tensor,
    cond: Any,
    uncond: Any,
    cfg: float = 1.0,
    mi_velocity: str = "cfg",
    score: str = "rfmi",
    keep_map: bool = True,
    progress: bool = False,
) -> tuple[Tensor, MIResult]:
    """Euler-integrates dx/dt = u_cfg from ``noise`` (σ = sigmas[0]) to σ = sigmas[-1]; returns (samples, MI result).

    Each step evaluates u_y = velocity(x, t, cond) and u_∅ = velocity(x, t, uncond) (the CFG pair, so MI is free),
    moves x ← x + (σ_i − σ_{i+1})·u_cfg and feeds the pair to ``TrajectoryMI``.
    """
    require_batched("noise", noise)
    sigmas = check_sigma_grid(sigmas).to(noise.device)
    accumulator = TrajectoryMI(velocity=mi_velocity, score=score, keep_map=keep_map)
    x = noise.float()
    batch = x.shape[0]
    for i in progress_bar(range(sigmas.numel() - 1), enabled=progress, desc="sampling"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma <= 0:
            break
        t = torch.full((batch,), float(t_from_sigma(sigma)), device=x.device)
        u_cond = velocity(x, t, cond).float()
        u_uncond = velocity(x, t, uncond).float()
        accumulator.add_step(sigma, sigma_next, x, u_cond, u_uncond, cfg)
        x = x + (sigma - sigma_next) * cfg_velocity(u_cond, u_uncond, cfg)
    return x, accumulator.result()
