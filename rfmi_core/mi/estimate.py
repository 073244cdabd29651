"""Point-wise MI of samples that already exist, by importance-sampled time (paper Prop. 3.3).

    I(x1; y) = E_{t ~ q, ε ~ N(0, I)} [ r(t)/q(t) · u_t(x_t|y)·(u_t(x_t|y) − u_t(x_t|∅)) ],   x_t = t·x1 + (1 − t)·ε

with r(t) = t/(1 − t) and q the truncated density of ``density.TruncatedRatioDensity``. Each draw gets its own t and ε;
draws are stratified in the CDF by default (t_j = F⁻¹((j + U_j)/n_t)), which keeps the estimate unbiased and lowers
its variance.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .checks import require_batched, require_choice, require_same_shape
from .conventions import Velocity, VelocityPair, cfg_velocity, straight_path
from .density import TruncatedRatioDensity
from ..util.progress import progress_bar
from .trajectory import VELOCITIES

__all__ = ["estimate_mi", "estimate_mi_draws", "estimate_mi_draws_from_pairs", "draw_times", "importance_sampled_points",
           "DrawChunk", "inner_product", "times_from_uniform", "T_MAX_FLOAT32"]


# The largest float32 below 1: a time drawn above it would round to t = 1 when cast to float32 (the dtype models see),
# i.e. σ = 1 − t = 0, where the velocity u = (denoised − x)/σ is undefined. Such draws (probability ~1e-6 at
# t_ε = 0.99) are moved down to it; their importance weight is computed at the moved time, so weight and t agree.
T_MAX_FLOAT32 = float(np.nextafter(np.float32(1), np.float32(0)))


def times_from_uniform(density: TruncatedRatioDensity, uniform: np.ndarray) -> np.ndarray:
    """float64 times t = F⁻¹(u) of q, at most ``T_MAX_FLOAT32`` (so float32 t < 1 and σ > 0)."""
    return np.minimum(density.icdf(uniform), T_MAX_FLOAT32)


def draw_times(density: TruncatedRatioDensity, n_t: int, batch: int, generator: torch.Generator | None,
               stratified: bool = True, common: bool = False, t_max: float = 1.0) -> Tensor:
    """[n_t, B] float64 times: n_t draws per image from q restricted to [0, t_max] (stratified over the n_t draws
    when asked: t = F⁻¹(u·F(t_max))); with ``common`` one column drawn and shared by every image (common random
    numbers)."""
    device = generator.device if generator is not None else torch.device("cpu")
    columns = 1 if common else batch
    uniform = torch.rand((n_t, columns), generator=generator, dtype=torch.float64, device=device).cpu()
    if stratified:
        uniform = (torch.arange(n_t, dtype=torch.float64).unsqueeze(1) + uniform) / n_t
    if t_max < 1.0:
        uniform = uniform * float(density.cdf(t_max))
    return torch.from_numpy(times_from_uniform(density, uniform.numpy())).expand(n_t, batch)


class DrawChunk(NamedTuple):
    """``count`` draws of Prop. 3.3's estimator for every sample, stacked draw-major (sample b of draw j is row j·B + b)."""

    start: int  # the index of the first draw
    count: int
    t: Tensor  # [count·B] float32, on x1's device
    x_t: Tensor  # [count·B, ...] = t·x1 + (1 − t)·ε
    weights: Tensor  # [count, B] float32 on the CPU: r(t)/q(t)
    target: Tensor  # [count·B, ...] = x1 − ε, the flow-matching target u* of each draw


def importance_sampled_points(
    x1: Tensor,
    n_t: int,
    t_eps: float,
    generator: torch.Generator | None,
    draws_per_call: int = 1,
    stratified: bool = True,
    progress: bool = False,
    desc: str = "scoring",
    common: bool = False,
    t_max: float = 1.0,
) -> Iterator[DrawChunk]:
    """The points where an importance-sampled estimator reads the velocities: n_t draws per sample of x1 [B, ...]
    (t ~ q, the truncated t/(1 − t) density; ε ~ N(0, I)), x_t = t·x1 + (1 − t)·ε, in chunks of ``draws_per_call``
    draws. All times are drawn first, then each chunk's noise, so every estimator built on it sees the same (t, ε)
    for a seed. ``common``: every sample of the batch gets the same t and ε at each draw (common random numbers:
    candidates of one prompt compared on the same draws, so their differences carry less noise). ``t_max`` < 1: the
    integral over [0, t_max] only, the draws from q restricted there (each weight r/q times F(t_max)), so an
    estimator built on them integrates its integrand below t_max."""
    require_batched("x1", x1)
    if n_t < 1 or draws_per_call < 1:
        raise ValueError(f"n_t and draws_per_call must be positive; got n_t={n_t}, draws_per_call={draws_per_call}")
    density = TruncatedRatioDensity(t_eps)
    if not 0.0 < t_max <= 1.0:
        raise ValueError(f"t_max must lie in (0, 1]; got {t_max}")
    times = draw_times(density, n_t, x1.shape[0], generator, stratified, common, t_max)  # [n_t, B]
    mass = float(density.cdf(t_max)) if t_max < 1.0 else 1.0
    weights = torch.from_numpy(mass * density.importance_weight(times.numpy())).to(torch.float32)
    return _chunks(x1.float(), times, weights, generator, draws_per_call, progress, desc, common)


def _chunks(x1: Tensor, times: Tensor, weights: Tensor, generator: torch.Generator | None, draws_per_call: int,
            progress: bool, desc: str, common: bool) -> Iterator[DrawChunk]:
    n_t, batch = times.shape
    noise_device = generator.device if generator is not None else torch.device("cpu")
    for start in progress_bar(range(0, n_t, draws_per_call), enabled=progress, desc=desc):
        k = min(draws_per_call, n_t - start)
        t = times[start : start + k].reshape(-1).to(device=x1.device, dtype=torch.float32)  # [k·B], draw-major
        if common:  # one ε per draw, shared by the batch
            eps = torch.randn((k, 1, *x1.shape[1:]), generator=generator, device=noise_device)
            eps = eps.expand(k, batch, *x1.shape[1:]).reshape(k * batch, *x1.shape[1:]).to(x1.device)
        else:
            eps = torch.randn((k * batch, *x1.shape[1:]), generator=generator, device=noise_device).to(x1.device)
        x_t, target = straight_path(x1.repeat(k, *[1] * (x1.ndim - 1)), eps, t)
        yield DrawChunk(start, k, t, x_t, weights[start : start + k], target)


def inner_product(u: Tensor, v: Tensor, count: int) -> Tensor:
    """[count, B] u·v summed over every coordinate of each row of the draw-major stack [count·B, ...] (on the CPU)."""
    return (u * v).flatten(1).sum(dim=1).reshape(count, -1).cpu()


@torch.no_grad()
def estimate_mi_draws_from_pairs(
    velocity_pair: VelocityPair,
    x1: Tensor,
    n_t: int = 64,
    t_eps: float = 0.99,
    generator: torch.Generator | None = None,
    mi_velocity: str = "cfg",
    cfg: float = 1.0,
    draws_per_call: int = 1,
    stratified: bool = True,
    progress: bool = False,
) -> Tensor:
    """The n_t importance-weighted integrand draws per sample, float32 [B, n_t]; their mean is the MI in nats.

    ``draws_per_call`` draws are stacked draw-major into one call of batch B·draws_per_call (image b of draw j is row
    j·B + b). With ``mi_velocity="cfg"`` u_cfg = u_∅ + cfg·(u_y − u_∅) stands in for u_y (cfg = 1 gives u_y).
    """
    require_choice("mi_velocity", mi_velocity, VELOCITIES)
    points = importance_sampled_points(x1, n_t, t_eps, generator, draws_per_call, stratified, progress)
    draws = torch.empty((x1.shape[0], n_t), dtype=torch.float32)
    for chunk in points:
        u_y, u_0 = (u.float() for u in velocity_pair(chunk.x_t, chunk.t))
        require_same_shape("u_cond", u_y, "x_t", chunk.x_t)
        require_same_shape("u_uncond", u_0, "x_t", chunk.x_t)
        u = cfg_velocity(u_y, u_0, cfg) if mi_velocity == "cfg" else u_y
        draws[:, chunk.start : chunk.start + chunk.count] = (chunk.weights * inner_product(u, u - u_0, chunk.count)).T
    return draws


def estimate_mi_draws(
    velocity: Velocity,
    x1: Tensor,
    cond: Any,
    uncond: Any,
    n_t: int = 64,
    t_eps: float = 0.99,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Tensor:
    """``estimate_mi_draws_from_pairs`` for a velocity(x_t, t, condition) called once with ``cond``, once with ``uncond``.

    A per-sample condition tensor [B, ...] is tiled to match the stacked draws; any other condition is passed as is.
    """

    def pair(x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        k = x_t.shape[0] // x1.shape[0]
        return velocity(x_t, t, tile_condition(cond, k)), velocity(x_t, t, tile_condition(uncond, k))

    return estimate_mi_draws_from_pairs(pair, x1, n_t, t_eps, generator, **options)


def estimate_mi(
    velocity: Velocity,
    x1: Tensor,
    cond: Any,
    uncond: Any,
    n_t: int = 64,
    t_eps: float = 0.99,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Tensor:
    """Point-wise MI per sample, float32 [B], in nats (the mean of ``estimate_mi_draws``; same options)."""
    return estimate_mi_draws(velocity, x1, cond, uncond, n_t, t_eps, generator, **options).mean(dim=1)


def tile_condition(condition: Any, k: int) -> Any:
    """A per-sample condition tensor [B, ...] tiled k times (draw-major) to match a batch of k·B, recursively inside
    tuples and lists (a two-part condition such as ``(y1, None)``); anything else unchanged."""
    if k == 1:
        return condition
    if isinstance(condition, (tuple, list)):
        return type(condition)(tile_condition(c, k) for c in condition)
    if isinstance(condition, Tensor) and condition.ndim > 0:
        return condition.repeat(k, *[1] * (condition.ndim - 1))
    return condition
