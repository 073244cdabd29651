"""Phrase MI: how much each phrase p of the prompt adds about the image once the rest y∖p is known.

By the chain rule of point-wise MI, i(x; y) = i(x; y∖p) + i(x; p | y∖p) (in expectation over images), and the second
term is the paper's identity with the ablated prompt y∖p in the place of ∅:

    i(x; p | y∖p) = ∫₀¹ t/(1 − t) · u_t(x_t|y) · (u_t(x_t|y) − u_t(x_t|y∖p)) dt                       (nats)

With one phrase y∖p = ∅ and this is the plain MI. Velocities (``velocity``):

- ``"cfg"`` (default): both conditionals CFG-calibrated against the same ∅ at the sampler's scale w,
  u_cfg(c) = u_∅ + w·(u_c − u_∅), so the integrand is u_cfg(y)·(u_cfg(y) − u_cfg(y∖p)) with
  u_cfg(y) − u_cfg(y∖p) = w·(u_y − u_{y∖p}); for y∖p = ∅ it is exactly the paper's (and ``TrajectoryMI``'s) "cfg" MI,
  and per step the plain "cfg" integrand splits exactly into this one plus u_cfg(y)·w·(u_{y∖p} − u_∅);
- ``"cfg-y"``: u_cfg(y) in place of u_y only, u_cfg(y)·(u_cfg(y) − u_{y∖p}); note u_cfg(y) − u_{y∖p} =
  (u_y − u_{y∖p}) + (w − 1)·(u_y − u_∅) also carries the whole prompt's contrast, (w − 1)/w of the plain MI's;
- ``"cond"``: u_y·(u_y − u_{y∖p}), the exact identity (w = 1 makes all three equal).

The per-position map of phrase p is ∫ t/(1 − t)·‖u_y − u_{y∖p}‖²_position dt (never negative; the heatmap of where
the phrase shaped the image). The scores over phrases: ``"phrase-min"`` (the weakest phrase) and ``"phrase-mean"``.

Along a trajectory (``PhraseTrajectoryMI``) one more velocity per phrase is evaluated at each step and the steps are
summed exactly as ``TrajectoryMI`` sums them (left Riemann sum over the sampler's σ grid; it is reused, one per
phrase). For existing latents (``estimate_phrase_mi``) t is drawn from Prop. 3.3's density q, and the same t and noise
serve y, ∅ and every y∖p, so the phrase differences have low variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch
from torch import Tensor

from .checks import require_choice, require_same_shape
from .conventions import Velocity, cfg_velocity
from .estimate import importance_sampled_points, inner_product, tile_condition
from .pointwise import denoising_gain
from .sampler import euler_sample, pair_velocities
from .stats import mean_and_standard_error
from .trajectory import MIResult, StepIntegrand, TrajectoryMI, positionwise_squared_norm

__all__ = [
    "PHRASE_VELOCITIES",
    "PHRASE_SCORES",
    "PHRASE_FORMS",
    "phrase_score",
    "PhraseMIResult",
    "PhraseTrajectoryMI",
    "PhraseEstimate",
    "estimate_phrase_mi",
    "estimate_phrase_mi_from_velocities",
    "sample_with_phrase_mi",
]

PHRASE_VELOCITIES = ("cfg", "cfg-y", "cond")
PHRASE_FORMS = ("exact", "paper")
PHRASE_SCORES = ("phrase-min", "phrase-mean")

class VelocitySet(Protocol):
    """A CFG model's velocities with every phrase ablated: ``velocity_set(x_t [N, ...], t [N]) -> (u_y, u_∅,
    [u_{y∖p} per phrase])``, each [N, ...] (one call may batch them)."""

    def __call__(self, x_t: Tensor, t: Tensor, /) -> tuple[Tensor, Tensor, Sequence[Tensor]]: ...


def phrase_score(phrase_mi: Tensor, score: str = "phrase-min") -> Tensor:
    """[B, P] phrase MI → [B]: ``"phrase-min"`` = min over phrases (the weakest phrase), ``"phrase-mean"`` = mean."""
    require_choice("score", score, PHRASE_SCORES)
    if phrase_mi.ndim != 2 or phrase_mi.shape[1] < 1:
        raise ValueError(f"phrase_mi must be [B, P] with P ≥ 1 phrases; got {tuple(phrase_mi.shape)}")
    return phrase_mi.amin(dim=1) if score == "phrase-min" else phrase_mi.mean(dim=1)


def _reference_pair(u_y: Tensor, u_0: Tensor | None, u_ablated: Tensor, velocity: str, w: Tensor | float
                    ) -> tuple[Tensor, Tensor]:
    """(u, u_ref) whose u·(u − u_ref) is the phrase integrand for ``velocity``; u_0 is needed unless "cond"."""
    if velocity == "cond":
        return u_y, u_ablated
    u = cfg_velocity(u_y, u_0, w)
    return (u, cfg_velocity(u_ablated, u_0, w)) if velocity == "cfg" else (u, u_ablated)


@dataclass
class PhraseMIResult:
    """Per-image, per-phrase MI along one trajectory, nats; ``phrases[p]`` is the ``MIResult`` of phrase p (its
    ``trace``, ``sigmas``, ``dt``, ``mi_of("mitune")`` …; its ``map`` is the phrase's ‖u_y − u_{y∖p}‖² map)."""

    phrases: list[MIResult]
    velocity: str

    @property
    def mi(self) -> Tensor:
        """[B, P] i(x; p | y∖p) for each image and phrase."""
        return torch.stack([r.mi for r in self.phrases], dim=1)

    @property
    def maps(self) -> Tensor | None:
        """[B, P, *positions] Σ_i t_i/(1 − t_i)·‖u_y − u_{y∖p}‖²·Δt_i per position, or None when not kept."""
        if self.phrases[0].map is None:
            return None
        return torch.stack([r.map for r in self.phrases], dim=1)

    def score(self, score: str = "phrase-min") -> Tensor:
        """[B] ``phrase_score`` of ``mi``."""
        return phrase_score(self.mi, score)

    def select(self, index: Tensor | list[int]) -> "PhraseMIResult":
        """The rows of the given images, in that order."""
        return PhraseMIResult([r.select(index) for r in self.phrases], self.velocity)

    @staticmethod
    def concat(results: "list[PhraseMIResult]") -> "PhraseMIResult":
        """Join the results of several batches (same steps, same phrases) into one, e.g. Best-of-N's chunks."""
        if not results:
            raise ValueError("results must hold at least one PhraseMIResult to concatenate")
        if len({len(r.phrases) for r in results}) != 1:
            raise ValueError(f"results must share their phrases; got {[len(r.phrases) for r in results]} phrases")
        joined = [MIResult.concat([r.phrases[p] for r in results]) for p in range(len(results[0].phrases))]
        return PhraseMIResult(joined, results[0].velocity)


class PhraseTrajectoryMI:
    """Accumulates phrase MI over a trajectory, one sampler step at a time: one ``TrajectoryMI`` per phrase, fed
    (u, u_ref) so that its "cond" integrand u·(u − u_ref) is the phrase integrand, and its map ‖u_y − u_{y∖p}‖²."""

    def __init__(self, num_phrases: int, velocity: str = "cfg", score: str = "rfmi", keep_map: bool = True):
        require_choice("velocity", velocity, PHRASE_VELOCITIES)
        if num_phrases < 1:
            raise ValueError(f"num_phrases must be at least 1; got {num_phrases}")
        self.velocity = velocity
        self._accumulators = [TrajectoryMI(velocity="cond", score=score, keep_map=keep_map) for _ in range(num_phrases)]

    @property
    def num_phrases(self) -> int:
        return len(self._accumulators)

    def add_step(self, sigma: Tensor | float, sigma_next: Tensor | float, x: Tensor, u_cond: Tensor,
                 u_uncond: Tensor | None, u_ablated: Sequence[Tensor], cfg_scale: Tensor | float = 1.0) -> None:
        """Step i: σ_i, σ_{i+1}, x_t, u_y, u_∅ (may be None for ``velocity="cond"``) and u_{y∖p} for each phrase."""
        self.add_integrands(self.integrands(sigma, x, u_cond, u_uncond, u_ablated, cfg_scale), sigma_next)

    def integrands(self, sigma: Tensor | float, x: Tensor, u_cond: Tensor, u_uncond: Tensor | None,
                   u_ablated: Sequence[Tensor], cfg_scale: Tensor | float = 1.0) -> list[StepIntegrand]:
        """Each phrase's integrands at σ (before Δt): small tensors a sampler hook holds until it learns σ_{i+1}."""
        if len(u_ablated) != self.num_phrases:
            raise ValueError(f"u_ablated must hold one velocity per phrase ({self.num_phrases}); got {len(u_ablated)}")
        if u_uncond is None and self.velocity != "cond":
            raise ValueError(f"u_uncond is needed for velocity={self.velocity!r}; only 'cond' works without it")
        w = cfg_scale
        if isinstance(cfg_scale, Tensor) and cfg_scale.numel() > 1:
            w = cfg_scale.to(torch.float32).reshape([-1] + [1] * (x.ndim - 1))
        u_y = u_cond.float()
        u_0 = None if u_uncond is None else u_uncond.float()
        steps = []
        for p, (acc, u_p) in enumerate(zip(self._accumulators, u_ablated)):
            require_same_shape(f"u_ablated[{p}]", u_p, "x", x)
            u, u_ref = _reference_pair(u_y, u_0, u_p.float(), self.velocity, w)
            step = acc.integrand(sigma, x, u, u_ref)
            if self.velocity != "cond":  # the map is ‖u_y − u_{y∖p}‖², whatever stands in for u_y
                active = (step.sigma > 0).reshape([-1] + [1] * (step.per_position.ndim - 1))
                step.per_position = torch.where(active, positionwise_squared_norm(u_y - u_p.float()),
                                                torch.zeros_like(step.per_position))
            steps.append(step)
        return steps

    def add_integrands(self, steps: Sequence[StepIntegrand], sigma_next: Tensor | float) -> None:
        """Adds one step from its phrases' integrands (``integrands``) and σ_{i+1}."""
        for acc, step in zip(self._accumulators, steps, strict=True):
            acc.add_integrand(step, sigma_next)

    def result(self) -> PhraseMIResult:
        return PhraseMIResult([acc.result() for acc in self._accumulators], self.velocity)


@torch.no_grad()
def sample_with_phrase_mi(
    velocity: Velocity,
    noise: Tensor,
    sigmas: Tensor,
    cond: Any,
    uncond: Any,
    ablated: Sequence[Any],
    cfg: float = 1.0,
    mi_velocity: str = "cfg",
    keep_map: bool = True,
    progress: bool = False,
) -> tuple[Tensor, MIResult, PhraseMIResult]:
    """Euler-integrates dx/dt = u_cfg as ``sample_with_mi`` does (the same samples) and reads, besides the plain MI,
    each phrase's i(x; p | y∖p): one more velocity(x, t, ablated[p]) per phrase per step.

    Returns (samples, plain MIResult with velocity "cfg" for "cfg"/"cfg-y" and "cond" for "cond", PhraseMIResult).
    """
    require_choice("mi_velocity", mi_velocity, PHRASE_VELOCITIES)
    plain = TrajectoryMI(velocity="cond" if mi_velocity == "cond" else "cfg", keep_map=keep_map)
    phrases = PhraseTrajectoryMI(len(ablated), velocity=mi_velocity, keep_map=keep_map)

    def accumulate(sigma, sigma_next, x, t, u):
        plain.add_step(sigma, sigma_next, x, u[0], u[1], cfg)
        phrases.add_step(sigma, sigma_next, x, u[0], u[1], u[2:], cfg)

    x = euler_sample(pair_velocities(velocity, cond, uncond, *ablated), noise, sigmas, cfg, [accumulate], progress)
    return x, plain.result(), phrases.result()


@dataclass
class PhraseEstimate:
    """Importance-sampled phrase MI of existing samples (Prop. 3.3), nats. B samples, P phrases, n_t draws."""

    draws: Tensor  # [B, P, n_t] the weighted phrase integrand r/q·u·(u − u_ref) of each draw
    total_draws: Tensor  # [B, n_t] the plain MI's draws (y against ∅) at the same t and noise
    maps: Tensor | None  # [B, P, *positions] mean over draws of r/q·‖u_y − u_{y∖p}‖² per position
    velocity: str

    @property
    def mi(self) -> Tensor:
        """[B, P] i(x; p | y∖p), the mean of the draws."""
        return self.draws.mean(dim=2)

    @property
    def standard_error(self) -> Tensor:
        """[B, P] the standard error of ``mi`` over the draws (n_t ≥ 2)."""
        return mean_and_standard_error(self.draws, dim=2)[1]

    @property
    def total_mi(self) -> Tensor:
        """[B] i(x; y) from the same draws."""
        return self.total_draws.mean(dim=1)

    def score(self, score: str = "phrase-min") -> Tensor:
        return phrase_score(self.mi, score)


@torch.no_grad()
def estimate_phrase_mi_from_velocities(
    velocity_set: VelocitySet,
    x1: Tensor,
    num_phrases: int,
    n_t: int = 64,
    t_eps: float = 0.99,
    generator: torch.Generator | None = None,
    mi_velocity: str = "cfg",
    cfg: float = 1.0,
    draws_per_call: int = 1,
    stratified: bool = True,
    keep_map: bool = True,
    progress: bool = False,
    form: str = "paper",
    common: bool = False,
) -> PhraseEstimate:
    """Phrase MI of existing samples x1 [B, ...], the same (t, ε) for y, ∅ and every y∖p (stratified, draw-major).

    ``form="paper"``: E_{t~q, ε}[r(t)/q(t)·u·(u − u_ref)] with x_t = t·x1 + (1 − t)·ε (the paper's identity with
    y∖p in place of ∅; right on average). ``form="exact"``: the per-image log p(x|y) − log p(x|y∖p) of the I-MMSE
    form (``pointwise``): r/q·(‖u* − u_{y∖p}‖² − ‖u* − u_y‖²) with u* = x1 − ε, conditional velocities (``mi_velocity``
    and ``cfg`` unused), the total i(x; y) likewise against ∅; ``common``: every sample on the same draws."""
    require_choice("mi_velocity", mi_velocity, PHRASE_VELOCITIES)
    require_choice("form", form, PHRASE_FORMS)
    if num_phrases < 1:
        raise ValueError(f"num_phrases must be positive; got {num_phrases}")
    points = importance_sampled_points(x1, n_t, t_eps, generator, draws_per_call, stratified, progress,
                                       desc="phrase scoring", common=common)
    batch = x1.shape[0]
    draws = torch.empty((batch, num_phrases, n_t), dtype=torch.float32)
    total = torch.empty((batch, n_t), dtype=torch.float32)
    maps = None
    for chunk in points:
        k, x_t, w_draw, drawn = chunk.count, chunk.x_t, chunk.weights, slice(chunk.start, chunk.start + chunk.count)
        u_y, u_0, u_ablated = velocity_set(x_t, chunk.t)
        if len(u_ablated) != num_phrases:
            raise ValueError(f"velocity_set returned {len(u_ablated)} ablated velocities; expected {num_phrases}")
        u_y, u_0 = u_y.float(), u_0.float()
        require_same_shape("u_cond", u_y, "x_t", x_t)
        require_same_shape("u_uncond", u_0, "x_t", x_t)
        if form == "exact":
            total[:, drawn] = (w_draw * denoising_gain(u_y, u_0, chunk.target).reshape(k, -1).cpu()).T
        else:
            u_main = cfg_velocity(u_y, u_0, cfg) if mi_velocity != "cond" else u_y
            total[:, drawn] = (w_draw * inner_product(u_main, u_main - u_0, k)).T
        for p, u_p in enumerate(u_ablated):
            u_p = u_p.float()
            require_same_shape(f"u_ablated[{p}]", u_p, "x_t", x_t)
            if form == "exact":
                draws[:, p, drawn] = (w_draw * denoising_gain(u_y, u_p, chunk.target).reshape(k, -1).cpu()).T
            else:
                u, u_ref = _reference_pair(u_y, u_0, u_p, mi_velocity, cfg)
                draws[:, p, drawn] = (w_draw * inner_product(u, u - u_ref, k)).T
            if keep_map:
                per_position = positionwise_squared_norm(u_y - u_p)  # [k·B, *P]
                shaped = w_draw.to(per_position.device).reshape(k, batch, *[1] * (per_position.ndim - 1))
                contribution = (shaped * per_position.reshape(k, batch, *per_position.shape[1:])).sum(dim=0) / n_t
                if maps is None:
                    maps = torch.zeros((batch, num_phrases, *per_position.shape[1:]), device=per_position.device)
                maps[:, p] += contribution
    return PhraseEstimate(draws=draws, total_draws=total, maps=maps, velocity="exact" if form == "exact" else mi_velocity)


def estimate_phrase_mi(
    velocity: Velocity,
    x1: Tensor,
    cond: Any,
    uncond: Any,
    ablated: Sequence[Any],
    n_t: int = 64,
    t_eps: float = 0.99,
    generator: torch.Generator | None = None,
    **options: Any,
) -> PhraseEstimate:
    """``estimate_phrase_mi_from_velocities`` for a velocity(x_t, t, condition) called with ``cond`` (y), ``uncond``
    (∅) and each ``ablated[p]`` (y∖p). Per-sample condition tensors [B, ...], also inside tuples or lists (a
    two-part condition such as ``(y1, None)``), are tiled to match stacked draws; anything else is passed as is."""

    def velocity_set(x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        k = x_t.shape[0] // x1.shape[0]
        call = lambda c: velocity(x_t, t, tile_condition(c, k))  # noqa: E731
        return call(cond), call(uncond), [call(c) for c in ablated]

    return estimate_phrase_mi_from_velocities(velocity_set, x1, len(ablated), n_t, t_eps, generator, **options)
