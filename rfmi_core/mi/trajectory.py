"""Point-wise MI read off a sampler's own trajectory (paper Algorithm 2).

Along a trajectory that ends at image x (t from 0, noise, to 1, data; σ = 1 − t),

    I(x; y) = ∫₀¹ t/(1 − t) · u_t(x_t|y) · (u_t(x_t|y) − u_t(x_t|∅)) dt                     (paper Eq. 7)

summed over every latent coordinate. A CFG sampler already evaluates u_y and u_∅ at each step, so the estimate costs
a few element-wise operations per step. ``TrajectoryMI`` is fed one step at a time and computes, per image:

- ``"rfmi"``: the left Riemann sum Σ_i t_i/(1 − t_i) · u·(u − u_∅) · Δt_i over the sampler's own grid
  (t_i = 1 − σ_i, Δt_i = σ_i − σ_{i+1});
- ``"mitune"``: the reference code's score (Chao0511/mitune), the plain mean of (1 − σ)/σ · u·(u − u_∅) over the steps
  with 0.05 < σ < 1, so its rankings can be reproduced;
- ``"squared"``: Σ_i t_i/(1 − t_i) · ‖u_y − u_∅‖² · Δt_i, the squared form (MINDE's), always ≥ 0.

u is the CFG velocity u_cfg = u_∅ + w·(u_y − u_∅) (``velocity="cfg"``, the paper's recommendation for ranking) or
u_y (``velocity="cond"``). The per-position map is the squared form before the sum over positions: where the prompt
shaped the image. Everything accumulates in float32 whatever the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import per_sample, require_batched, require_choice, require_finite, require_same_shape, require_unit_interval

__all__ = ["VELOCITIES", "SCORES", "MIResult", "StepIntegrand", "TrajectoryMI", "positionwise_squared_norm"]

VELOCITIES = ("cfg", "cond")
SCORES = ("rfmi", "mitune", "squared")
MITUNE_SIGMA_RANGE = (0.05, 1.0)


@dataclass
class MIResult:
    """Per-image MI from one trajectory, in nats. Shapes: B images, S steps, P = the latent's positions."""

    mi: Tensor  # [B] the requested score
    trace: Tensor  # [B, S] the integrand t/(1 − t)·u·(u − u_∅) at each step (before Δt)
    trace_squared: Tensor  # [B, S] the integrand t/(1 − t)·‖u_y − u_∅‖² at each step
    sigmas: Tensor  # [B, S] σ at each step
    dt: Tensor  # [B, S] Δt = σ_i − σ_{i+1}
    map: Tensor | None  # [B, *P] Σ_i t_i/(1 − t_i)·‖u_y − u_∅‖²_position·Δt_i (sums to mi_of("squared"))
    velocity: str
    score: str

    def mi_of(self, score: str) -> Tensor:
        """Any score from the same trajectory: "rfmi", "mitune" or "squared"."""
        require_choice("score", score, SCORES)
        if score == "rfmi":
            return (self.trace * self.dt).sum(dim=1)
        if score == "squared":
            return (self.trace_squared * self.dt).sum(dim=1)
        low, high = MITUNE_SIGMA_RANGE
        inside = ((self.sigmas > low) & (self.sigmas < high)).to(self.trace.dtype)
        return (self.trace * inside).sum(dim=1) / inside.sum(dim=1).clamp(min=1)

    def select(self, index: Tensor | list[int]) -> "MIResult":
        """The rows of the given images, in that order."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.mi.device)
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return MIResult(pick(self.mi), pick(self.trace), pick(self.trace_squared), pick(self.sigmas), pick(self.dt),
                        pick(self.map), self.velocity, self.score)

    @staticmethod
    def concat(results: "list[MIResult]") -> "MIResult":
        """Join the results of several batches (same steps) into one."""
        if not results:
            raise ValueError("results must hold at least one MIResult to concatenate")
        first = results[0]
        cat = lambda name: torch.cat([getattr(r, name) for r in results])  # noqa: E731
        return MIResult(cat("mi"), cat("trace"), cat("trace_squared"), cat("sigmas"), cat("dt"),
                        None if first.map is None else cat("map"), first.velocity, first.score)


def positionwise_squared_norm(delta: Tensor) -> Tensor:
    """‖δ‖² per position: summed over the channel axis of [B, C, *spatial], element-wise for flat [B, D]."""
    return sum_over_channels(delta.square())


def sum_over_channels(values: Tensor) -> Tensor:
    """Per-coordinate values summed over the channel axis of [B, C, *spatial]; flat [B, D] stays as it is."""
    return values.sum(dim=1) if values.ndim >= 3 else values


@dataclass
class StepIntegrand:
    """One step's integrands before Δt; B images, P positions. ``weight`` is t/(1 − t) = (1 − σ)/σ (0 at σ = 0)."""

    sigma: Tensor  # [B]
    weight: Tensor  # [B]
    inner: Tensor  # [B] u·(u − u_∅) summed over coordinates
    per_position: Tensor  # [B, *P] ‖u_y − u_∅‖² per position


class TrajectoryMI:
    """Accumulates point-wise MI over a trajectory, one sampler step at a time (paper Algorithm 2)."""

    def __init__(self, velocity: str = "cfg", score: str = "rfmi", keep_map: bool = True):
        require_choice("velocity", velocity, VELOCITIES)
        require_choice("score", score, SCORES)
        self.velocity = velocity
        self.score = score
        self.keep_map = keep_map
        self._trace: list[Tensor] = []
        self._trace_squared: list[Tensor] = []
        self._sigmas: list[Tensor] = []
        self._dt: list[Tensor] = []
        self._map: Tensor | None = None
        self._shape: tuple[int, ...] | None = None

    @property
    def num_steps(self) -> int:
        return len(self._trace)

    def add_step(
        self,
        sigma: Tensor | float,
        sigma_next: Tensor | float,
        x: Tensor,
        u_cond: Tensor,
        u_uncond: Tensor,
        cfg_scale: Tensor | float = 1.0,
    ) -> None:
        """Adds step i: σ_i, σ_{i+1} (scalars or [B]), x_t and the velocities u_y, u_∅ at it ([B, ...], paper sign).

        A step at σ ≤ 0 contributes nothing: its velocities are not even read.
        """
        self.add_integrand(self.integrand(sigma, x, u_cond, u_uncond, cfg_scale), sigma_next)

    def integrand(self, sigma: Tensor | float, x: Tensor, u_cond: Tensor, u_uncond: Tensor,
                  cfg_scale: Tensor | float = 1.0) -> StepIntegrand:
        """The step's integrands at σ (before the Δt that the next σ gives): small tensors, so a caller that learns
        σ_{i+1} only later (a sampler hook) holds these instead of the latent-sized velocities."""
        require_batched("x", x)
        require_same_shape("u_cond", u_cond, "x", x)
        require_same_shape("u_uncond", u_uncond, "x", x)
        if self._shape is not None and tuple(x.shape) != self._shape:
            raise ValueError(f"x has shape {tuple(x.shape)} but earlier steps had {self._shape}; one accumulator per batch")
        self._shape = tuple(x.shape)
        batch, device = x.shape[0], x.device
        sigma = per_sample("sigma", sigma, batch, device)
        require_unit_interval("sigma", sigma)
        w = per_sample("cfg_scale", cfg_scale, batch, device)

        active = sigma > 0
        weight = torch.where(active, (1 - sigma) / sigma.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(sigma))
        if bool(active.all()):
            inner, per_position = self._integrands(u_cond, u_uncond, w)
        else:  # rows at σ = 0 are zero and their velocities are never read
            inner = torch.zeros(batch, device=device)
            per_position = torch.zeros((batch, *positionwise_squared_norm(x[:1].float()).shape[1:]), device=device)
            if bool(active.any()):
                inner[active], per_position[active] = self._integrands(u_cond[active], u_uncond[active], w[active])
        return StepIntegrand(sigma=sigma, weight=weight, inner=inner, per_position=per_position)

    def add_integrand(self, step: StepIntegrand, sigma_next: Tensor | float) -> None:
        """Adds a step from its integrands and σ_{i+1}: Δt_i = σ_i − σ_{i+1}."""
        sigma_next = per_sample("sigma_next", sigma_next, step.sigma.shape[0], step.sigma.device)
        require_unit_interval("sigma_next", sigma_next)
        dt = step.sigma - sigma_next
        self._trace.append(step.weight * step.inner)
        self._trace_squared.append(step.weight * step.per_position.flatten(1).sum(dim=1))
        self._sigmas.append(step.sigma)
        self._dt.append(dt)
        if self.keep_map:
            step_map = (step.weight * dt).reshape([-1] + [1] * (step.per_position.ndim - 1)) * step.per_position
            self._map = step_map if self._map is None else self._map + step_map

    def _integrands(self, u_cond: Tensor, u_uncond: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """u·(u − u_∅) summed over coordinates [b], and ‖u_y − u_∅‖² per position [b, *P], in float32.

        With d = u_y − u_∅ and u = u_∅ + w·d (u_cfg, Sec. 4; w = 1 for u_y): u·(u − u_∅) = w·(u_∅·d) + w²·‖d‖², so a
        step makes two tensors of the input's size (d, d²; u_∅·d is a dot product) and syncs once. A NaN/Inf in either
        velocity makes those sums non-finite; only then are the inputs searched, to name the culprit.
        """
        u_y, u_0 = u_cond.float(), u_uncond.float()
        delta = u_y - u_0
        squared = delta.square()
        squared_sum = squared.flatten(1).sum(dim=1)
        cross = torch.linalg.vecdot(u_0.flatten(1), delta.flatten(1))
        if not bool((squared_sum + cross).isfinite().all()):
            require_finite("u_cond", u_y)
            require_finite("u_uncond", u_0)
            raise ValueError("the MI integrand overflowed float32 with finite velocities; check the model's output scale")
        scale = w if self.velocity == "cfg" else torch.ones_like(w)
        return scale * cross + scale.square() * squared_sum, sum_over_channels(squared)

    def result(self) -> MIResult:
        if not self._trace:
            raise ValueError("no steps were added: feed add_step() once per sampler step before result()")
        stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731
        partial = MIResult(
            mi=torch.empty(0), trace=stack(self._trace), trace_squared=stack(self._trace_squared),
            sigmas=stack(self._sigmas), dt=stack(self._dt), map=self._map, velocity=self.velocity, score=self.score,
        )
        partial.mi = partial.mi_of(self.score)
        return partial
