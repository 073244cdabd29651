"""Scored candidates: what travels between the RFMI nodes (the ``RFMI_SCORES`` socket) and into a fine-tune set."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .select import top_k
from ..mi.trajectory import MIResult

__all__ = ["ScoredCandidates"]


@dataclass
class ScoredCandidates:
    """N candidates with their point-wise MI (nats) and how each was made.

    Candidate j was sampled from ``seeds[j]`` at position ``batch_index[j]`` of a batch drawn from that seed
    (``comfy.sample.prepare_noise``); Best-of-N always samples candidate j from seed + j at batch index 0. ``mi`` is
    the score the candidates are ranked by: the plain MI, or a phrase score (``phrase_mi.phrase_score``) when ranked
    by one. When phrase MI was read, ``phrases`` names the prompt's phrases and ``phrase_mi`` / ``phrase_maps`` hold
    each candidate's i(x; p | y∖p) and where each phrase shaped it. When ranked against rivals (``"contrast"``,
    ``"posterior"``), ``rivals`` names them and ``rival_margins`` holds each candidate's log p(x|y) − log p(x|y′).
    ``settings["score"]`` names the score ``mi`` holds (``rfmi_core.ranking.SCORE_HELP``).
    """

    mi: Tensor  # [N] float32
    seeds: list[int]
    batch_index: list[int]
    result: MIResult | None = None  # per-step trace and per-position map, when read along a trajectory
    latents: Tensor | None = None  # [N, ...] in VAE space, when kept (Best-of-N keeps all N)
    mi_standard_error: Tensor | None = None  # [N], for importance-sampled estimates
    settings: dict = field(default_factory=dict)  # sampler, scheduler, steps, cfg, velocity, score, ...
    phrases: tuple[str, ...] = ()  # the prompt's phrases, when phrase MI was read
    phrase_mi: Tensor | None = None  # [N, P] i(x; p | y∖p), nats
    phrase_maps: Tensor | None = None  # [N, P, *positions] ‖u_y − u_{y∖p}‖² maps (≥ 0)
    rivals: tuple[str, ...] = ()  # the prompt's rivals, when ranked by a contrast or posterior
    rival_margins: Tensor | None = None  # [N, R] log p(x|y) − log p(x|rival), nats

    def __post_init__(self):
        n = self.mi.shape[0]
        if self.mi.ndim != 1:
            raise ValueError(f"mi must be one value per candidate, shape [N]; got {tuple(self.mi.shape)}")
        for name in ("seeds", "batch_index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must hold one entry per candidate ({n}); got {len(getattr(self, name))}")
        if self.latents is not None and self.latents.shape[0] != n:
            raise ValueError(f"latents must hold one latent per candidate ({n}); got {self.latents.shape[0]}")
        self._check_phrases()
        if self.rival_margins is not None and tuple(self.rival_margins.shape) != (n, len(self.rivals)):
            raise ValueError(f"rival_margins must be [candidates, rivals] = {[n, len(self.rivals)]}; got "
                             f"{list(self.rival_margins.shape)}")

    def _check_phrases(self) -> None:
        """phrase_mi is [N, P] and phrase_maps [N, P, ...] for the P ``phrases``; neither without phrases."""
        expected = (self.mi.shape[0], len(self.phrases))
        if self.phrase_mi is not None and tuple(self.phrase_mi.shape) != expected:
            raise ValueError(f"phrase_mi must be [candidates, phrases] = {list(expected)}; "
                             f"got {list(self.phrase_mi.shape)}")
        if self.phrase_maps is not None and (self.phrase_mi is None or tuple(self.phrase_maps.shape[:2]) != expected):
            raise ValueError(f"phrase_maps must be [candidates, phrases, ...] = {list(expected)} + positions, with "
                             f"phrase_mi; got {list(self.phrase_maps.shape)}")

    def __len__(self) -> int:
        return self.mi.shape[0]

    def ranking(self) -> Tensor:
        """All candidate indices, highest MI first (ties by index)."""
        return top_k(self.mi, len(self))

    def select(self, index: Tensor | list[int]) -> "ScoredCandidates":
        """The given candidates, in that order."""
        index = torch.as_tensor(index, dtype=torch.long).flatten()
        pick = lambda t: None if t is None else t.index_select(0, index.to(t.device))  # noqa: E731
        return replace(
            self,
            mi=pick(self.mi),
            seeds=[self.seeds[i] for i in index.tolist()],
            batch_index=[self.batch_index[i] for i in index.tolist()],
            result=None if self.result is None else self.result.select(index),
            latents=pick(self.latents),
            mi_standard_error=pick(self.mi_standard_error),
            phrase_mi=pick(self.phrase_mi),
            phrase_maps=pick(self.phrase_maps),
            rival_margins=pick(self.rival_margins),
        )

    @staticmethod
    def concat(parts: "list[ScoredCandidates]") -> "ScoredCandidates":
        if not parts:
            raise ValueError("parts must hold at least one ScoredCandidates to concatenate")
        cat = lambda name: None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts])  # noqa: E731
        return ScoredCandidates(
            mi=cat("mi"),
            seeds=[s for p in parts for s in p.seeds],
            batch_index=[b for p in parts for b in p.batch_index],
            result=None if parts[0].result is None else MIResult.concat([p.result for p in parts]),
            latents=cat("latents"),
            mi_standard_error=cat("mi_standard_error"),
            settings=dict(parts[0].settings),
            phrases=parts[0].phrases,
            phrase_mi=cat("phrase_mi"),
            phrase_maps=cat("phrase_maps"),
            rivals=parts[0].rivals,
            rival_margins=cat("rival_margins"),
        )
