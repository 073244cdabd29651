"""Candidate makers: Best-of-N for one prompt, as the set builder asks for it (paper Algorithms 1 and 2).

A maker encodes text, and samples n candidates of a prompt with their point-wise MI read along each trajectory:
candidate j comes from the noise of seed + j, so a candidate is the same whichever process, batch or run makes it.
``VelocityCandidates`` does it for any velocity model (the toy model, or ``MODULE:FACTORY`` as the trainer's) with
Euler steps on a shifted σ grid; ComfyUI checkpoints get a maker of ComfyUI's own sampler (``nodes/headless_model.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

import torch
from torch import Tensor, nn

from ..text.phrases import SplitPrompt, split_prompt
from ..mi.pointwise import PMI_T_EPS, condition_log_ratios_from_velocities
from ..mi.ranking import DEFAULT_SCORE, RANKING_N_T, RANKING_T_MAX, exact_ranking, is_exact, rival_texts
from ..mi.sampler import sample_with_mi
from .scores import ScoredCandidates
from ..mi.trajectory import MIResult

__all__ = ["CandidateMaker", "VelocityCandidates", "shifted_sigmas", "module_identity", "toy_candidates"]


class CandidateMaker(Protocol):
    """What the set builder needs of a model: its identity, text encoding, and Best-of-N with MI."""

    identity: str  # the model name records carry (one set may hold several models' records)

    def encode(self, text: str) -> Any:
        """The conditioning of ``text`` in the maker's own form."""

    def tensors(self, conditioning: Any) -> dict[str, Tensor]:
        """What a set stores of a conditioning: {"cross_attn": [1, L, D], "pooled_output": [1, P], ...} on the CPU."""

    def settings(self, seed: int, n: int) -> dict:
        """The ``ScoredCandidates.settings`` that ``best_of_n(…, seed, n)`` returns (they key a prompt's records)."""

    def best_of_n(self, positive: Any, negative: Any, seed: int, n: int,
                  progress: Callable[[int], None] | None = None, text: str = "") -> ScoredCandidates:
        """n candidates (seeds seed … seed + n − 1) with their score, latents (ComfyUI LATENT space, CPU) and settings;
        ``progress(done)`` is told the candidate-steps done so far (of n·steps); ``text`` is the prompt (a contrast's
        rivals are suggested from it)."""


def shifted_sigmas(steps: int, shift: float = 1.0) -> Tensor:
    """σ_i = shift·s_i / (1 + (shift − 1)·s_i), s = linspace(1, 0, steps + 1): SD3's time shift (1: a linear grid)."""
    s = torch.linspace(1.0, 0.0, steps + 1)
    return shift * s / (1 + (shift - 1) * s)


def module_identity(module: nn.Module, name: str | None = None) -> str:
    """A short, stable name for a module's weights: ``name`` (default: its class), parameter count, a hash of a few
    tensors' bytes (also the nodes' ``model_identity``)."""
    params = list(module.parameters())
    digest = hashlib.sha256()
    for p in params[:2] + params[-2:]:
        digest.update(p.detach().flatten()[:4096].float().cpu().numpy().tobytes())
    return f"{name or type(module).__name__}-{sum(p.numel() for p in params)}-{digest.hexdigest()[:12]}"


def _batched(conditioning: dict[str, Tensor], batch: int, device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device).expand(batch, *v.shape[1:]) for k, v in conditioning.items()}


@dataclass
class VelocityCandidates:
    """Best-of-N with a velocity model: ``velocity_fn(module, x_t, t, cond) -> u`` (paper time and sign, ``cond`` the
    set's tensors, batched, as the trainer calls it) and ``encoder(text) -> {name: [1, ...] tensor}``.

    Candidate j: noise ~ N(0, I) of ``latent_shape`` from ``torch.Generator().manual_seed(seed + j)`` (CPU), Euler with
    CFG over ``shifted_sigmas(steps, shift)``, the paper's MI along the trajectory (``sample_with_mi``); with an exact
    ``score`` (``ranking.EXACT_SCORES``, the default pmi) the candidates are then scored on their final images,
    ``n_t`` common draws seeded by the seed, the rivals ``ranking.rival_texts`` names (the editor's for contrast, the
    prompt less each phrase for phrase-pmi, split by ``split_phrases``). Its latent is stored in
    ComfyUI's LATENT space, latent = x1 / latent_scale + latent_shift (the inverse of the trainer's map).
    """

    module: nn.Module
    velocity_fn: Callable[[nn.Module, Tensor, Tensor, dict], Tensor]
    encoder: Callable[[str], dict[str, Tensor]]
    latent_shape: tuple[int, ...]
    steps: int = 28
    cfg: float = 4.5
    shift: float = 1.0
    batch_size: int = 4
    velocity: str = "cfg"
    score: str = DEFAULT_SCORE
    n_t: int = RANKING_N_T
    latent_scale: float = 1.0
    latent_shift: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    identity: str = ""
    split_phrases: Callable[[str], SplitPrompt] = split_prompt  # the prompt's phrases, for score phrase-pmi

    def __post_init__(self) -> None:
        self.module = self.module.to(self.device).eval()
        self.identity = self.identity or module_identity(self.module)

    def encode(self, text: str) -> dict[str, Tensor]:
        return {k: v.detach().cpu() for k, v in self.encoder(text).items()}

    def tensors(self, conditioning: dict[str, Tensor]) -> dict[str, Tensor]:
        return conditioning

    def settings(self, seed: int, n: int) -> dict:
        exact = dict(n_t=self.n_t, t_eps=PMI_T_EPS, t_max=RANKING_T_MAX) if is_exact(self.score) else {}
        return dict(sampler_name="euler", shift=self.shift, steps=self.steps, cfg=self.cfg, velocity=self.velocity,
                    score=self.score, seed=seed, n=n, **exact)

    def best_of_n(self, positive: dict[str, Tensor], negative: dict[str, Tensor], seed: int, n: int,
                  progress: Callable[[int], None] | None = None, text: str = "") -> ScoredCandidates:
        parts = []
        for start in range(0, n, self.batch_size):
            seeds = list(range(seed + start, seed + min(start + self.batch_size, n)))
            latents, result = self._sample(positive, negative, seeds)
            parts.append(ScoredCandidates(mi=result.mi.cpu(), seeds=seeds, batch_index=[0] * len(seeds),
                                          latents=latents))
            if progress is not None:
                progress((start + len(seeds)) * self.steps)
        scores = ScoredCandidates.concat(parts)
        scores.settings = self.settings(seed, n)
        return self._exactly_scored(scores, positive, negative, seed, text) if is_exact(self.score) else scores

    def _exactly_scored(self, scores: ScoredCandidates, positive: dict, negative: dict, seed: int,
                        text: str) -> ScoredCandidates:
        """The candidates ranked by the exact score of their final images, on common draws (``ranking``)."""
        rivals = rival_texts(self.score, text, split=self.split_phrases)
        conditions = [negative, positive, *(self.encode(r) for r in rivals)]
        x1 = ((scores.latents - self.latent_shift) * self.latent_scale).to(self.device)

        def velocities(x_t: Tensor, t: Tensor) -> list[Tensor]:
            return [self.velocity_fn(self.module, x_t, t, _batched(c, x_t.shape[0], self.device)) for c in conditions]

        with torch.no_grad():
            ratios = condition_log_ratios_from_velocities(velocities, x1, len(conditions), n_t=self.n_t,
                                                          t_eps=PMI_T_EPS, t_max=RANKING_T_MAX,
                                                          generator=torch.Generator().manual_seed(seed))
        ranked = exact_ranking(ratios, self.score, len(rivals))
        return replace(scores, mi=ranked.score, mi_standard_error=ranked.standard_error, rivals=tuple(rivals),
                       rival_margins=ranked.margins if rivals else None)

    def _sample(self, positive: dict, negative: dict, seeds: list[int]) -> tuple[Tensor, MIResult]:
        noise = torch.stack([torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        batch = len(seeds)
        cond, uncond = _batched(positive, batch, self.device), _batched(negative, batch, self.device)

        def velocity(x: Tensor, t: Tensor, c: dict) -> Tensor:
            return self.velocity_fn(self.module, x, t, c)

        x1, result = sample_with_mi(velocity, noise.to(self.device), shifted_sigmas(self.steps, self.shift), cond, uncond,
                                    cfg=self.cfg, mi_velocity=self.velocity,
                                    score="rfmi" if is_exact(self.score) else self.score, keep_map=False)
        return (x1 / self.latent_scale + self.latent_shift).cpu(), result


def toy_candidates(weights: str | None = None, **options: Any) -> VelocityCandidates:
    """The toy model shipped with the pack (or ``weights``): 3×16×16 images, its word ids as ``cross_attn``."""
    from ..toy.conditioning import conditioning_from_text
    from ..toy.model import load_toy_model
    from ..toy.prompts import split_toy_prompt
    from ..train.cli import toy_velocity

    return VelocityCandidates(load_toy_model(weights), toy_velocity,
                              lambda text: {"cross_attn": conditioning_from_text(text)}, (3, 16, 16),
                              **{"split_phrases": split_toy_prompt, **options})
