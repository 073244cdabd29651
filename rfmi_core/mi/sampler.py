"""A plain Euler sampler in the paper's convention that reads point-wise MI on the way (paper Algorithm 2).

For models loaded outside ComfyUI (analytic fields, the toy model); inside ComfyUI the nodes read the same quantities
through ComfyUI's own sampler instead.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .checks import require_batched, require_unit_interval
from .conventions import Velocity, cfg_velocity, t_from_sigma
from ..util.progress import progress_bar
from .trajectory import MIResult, TrajectoryMI

__all__ = ["euler_sample", "pair_velocities", "sample_with_mi", "StepObserver"]


def check_sigma_grid(sigmas: Tensor) -> Tensor:
    """A decreasing 1-D grid of noise levels in [0, 1], as float32."""
    sigmas = torch.as_tensor(sigmas).to(torch.float32).flatten()
    if sigmas.numel() < 2:
        raise ValueError(f"sigmas must hold at least 2 noise levels (start and target); got {sigmas.numel()}")
    require_unit_interval("sigmas", sigmas)
    if bool((sigmas[1:] > sigmas[:-1]).any()):
        raise ValueError("sigmas must be non-increasing, from noise (1) towards data (0)")
    return sigmas


StepObserver = Callable[[Tensor, Tensor, Tensor, Tensor, Sequence[Tensor]], None]
"""``observer(sigma, sigma_next, x, t, velocities)``: sees each Euler step before it is taken."""


@torch.no_grad()
def euler_sample(velocities: Callable[[Tensor, Tensor], Sequence[Tensor]], noise: Tensor, sigmas: Tensor,
                 cfg: float = 1.0, observers: Sequence[StepObserver] = (), progress: bool = False) -> Tensor:
    """The one Euler loop of the core: from ``noise`` at σ = sigmas[0] to σ = sigmas[-1], each step
    x ← x + (σ_i − σ_{i+1})·u_cfg with u_cfg = u_∅ + cfg·(u_y − u_∅).

    ``velocities(x, t)`` returns [u_y, u_∅, …] at paper time t = 1 − σ ([B] per image; any further velocities, e.g.
    of ablated prompts, ride along: one call may batch them all); every ``observer`` sees the step first (the MI
    accumulators of Algorithm 2 are observers). A step at σ ≤ 0 ends the loop. Returns the final x (float32)."""
    require_batched("noise", noise)
    sigmas = check_sigma_grid(sigmas).to(noise.device)
    x = noise.float()
    for i in progress_bar(range(sigmas.numel() - 1), enabled=progress, desc="sampling"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma <= 0:
            break
        t = torch.full((x.shape[0],), float(t_from_sigma(sigma)), device=x.device)
        u = [v.float() for v in velocities(x, t)]
        for observe in observers:
            observe(sigma, sigma_next, x, t, u)
        x = x + (sigma - sigma_next) * cfg_velocity(u[0], u[1], cfg)
    return x


def pair_velocities(velocity: Velocity, cond: Any, uncond: Any, *extra: Any) -> Callable[[Tensor, Tensor], list]:
    """``velocities`` for ``euler_sample`` from a velocity(x, t, condition): [u_y, u_∅, u(·|extra[0]), …]."""
    return lambda x, t: [velocity(x, t, c) for c in (cond, uncond, *extra)]


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
    observers: Sequence[StepObserver] = (),
) -> tuple[Tensor, MIResult]:
    """Euler-integrates dx/dt = u_cfg from ``noise`` (σ = sigmas[0]) to σ = sigmas[-1]; returns (samples, MI result).

    Each step evaluates u_y = velocity(x, t, cond) and u_∅ = velocity(x, t, uncond) (the CFG pair, so MI is free),
    feeds the pair to ``TrajectoryMI`` (and to any further ``observers``) and moves x ← x + (σ_i − σ_{i+1})·u_cfg.
    """
    accumulator = TrajectoryMI(velocity=mi_velocity, score=score, keep_map=keep_map)

    def accumulate(sigma, sigma_next, x, t, u):
        accumulator.add_step(sigma, sigma_next, x, u[0], u[1], cfg)

    x = euler_sample(pair_velocities(velocity, cond, uncond), noise, sigmas, cfg, [accumulate, *observers], progress)
    return x, accumulator.result()
