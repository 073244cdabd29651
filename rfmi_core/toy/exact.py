"""The exact per-image scores of toy candidates (``rfmi_core.pointwise``): point-wise MI, and "this prompt rather
than its rivals" (prompt contrasts, the posterior among rivals, phrase MI as the contrast with y∖p).

For each image x with prompt y and rivals y′_1 … y′_R, one pass on shared draws gives log p(x|c) − log p(x|∅) for
c ∈ {y, y′_1, …}; then

- ``pmi`` = log p(x|y) − log p(x|∅), the exact point-wise MI i(x; y);
- ``margins`` = log p(x|y) − log p(x|y′_r) for each rival, and ``contrast`` = the smallest (the nearest miss);
- ``posterior`` = p(y | x) among {y} ∪ rivals under a uniform prior: softmax of log p(x|c).

A prompt with no rival gets ``contrast`` = ``pmi`` (the fallback) and ``posterior`` = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..text.counterfactuals import counterfactuals
from ..mi.pointwise import PMI_T_EPS, condition_log_ratios_from_velocities
from ..mi.ranking import RANKING_T_MAX
from ..util.progress import progress_bar
from .prompts import MAX_TOKENS, PAD_ID, tokenize, tokenize_batch

__all__ = ["ExactScores", "condition_scores", "toy_rivals"]


def toy_rivals(text: str) -> list[str]:
    """The generic editor's rivals of a toy prompt (``rfmi_core.counterfactuals``) that the toy vocabulary can
    encode."""
    kept = []
    for rival in counterfactuals(text):
        try:
            tokenize(rival)
        except ValueError:
            continue
        kept.append(str(rival))
    return kept


@dataclass
class ExactScores:
    """Per image: ``pmi`` [N], ``contrast`` [N], ``posterior`` [N], ``margins`` (N tensors [R_i]) and the standard
    error of ``pmi`` [N], nats."""

    pmi: Tensor
    pmi_standard_error: Tensor
    contrast: Tensor
    posterior: Tensor
    margins: list[Tensor]


@torch.no_grad()
def condition_scores(model: nn.Module, images: Tensor, texts: list[str], rivals: list[list[str]] | None = None,
                     n_t: int = 16, seed: int = 0, t_eps: float = PMI_T_EPS, groups: Tensor | None = None,
                     cfg: float | None = None, batch: int = 64, draws_per_call: int = 4,
                     progress: bool = False, t_max: float = RANKING_T_MAX) -> ExactScores:
    """The exact scores of each image [N, 3, 16, 16] with its prompt ``texts[i]`` and ``rivals[i]`` (none when
    None). ``groups`` [N]: images of one group are scored on the same draws (common random numbers; one group a
    call, its draws seeded by ``seed`` + group), else independent draws. ``cfg``: the CFG velocity
    u_∅ + cfg·(u_y − u_∅) stands in for u_y (and likewise for each rival), a guided variant that is no longer a
    likelihood ratio. ``t_max``: the band of noise levels integrated (``mi.ranking.RANKING_T_MAX``; 1 = exact)."""
    rivals = rivals if rivals is not None else [[] for _ in texts]
    if not len(texts) == len(rivals) == images.shape[0]:
        raise ValueError(f"images ({images.shape[0]}), texts ({len(texts)}) and rivals ({len(rivals)}) must pair up")
    chunks: list[list[int]] = []
    if groups is not None:
        for g in groups.unique().tolist():
            members = torch.nonzero(groups == g).flatten().tolist()
            counts: dict[int, list[int]] = {}
            for i in members:
                counts.setdefault(len(rivals[i]), []).append(i)
            chunks += list(counts.values())
    else:
        counts = {}
        for i in range(len(texts)):
            counts.setdefault(len(rivals[i]), []).append(i)
        chunks = [m[s:s + batch] for m in counts.values() for s in range(0, len(m), batch)]
    n = len(texts)
    pmi, se = torch.zeros(n), torch.zeros(n)
    contrast, posterior = torch.zeros(n), torch.ones(n)
    margins: list[Tensor] = [torch.empty(0)] * n
    generator = torch.Generator().manual_seed(seed)
    for number, chunk in enumerate(progress_bar(chunks, enabled=progress, desc="exact scores")):
        if groups is not None:
            generator = torch.Generator().manual_seed(seed + int(groups[chunk[0]]))
        conditions = [None, tokenize_batch([texts[i] for i in chunk])]
        conditions += [tokenize_batch([rivals[i][r] for i in chunk]) for r in range(len(rivals[chunk[0]]))]
        ratios = condition_log_ratios_from_velocities(
            _toy_velocities(model, conditions, len(chunk), cfg), images[chunk].float(), len(conditions), reference=0,
            n_t=n_t, t_eps=t_eps, generator=generator, draws_per_call=draws_per_call, common=groups is not None,
            t_max=t_max)
        value, error = ratios.pair(1, 0)
        pmi[chunk], se[chunk] = value, error
        if len(conditions) > 2:
            chunk_margins = ratios.log_ratio[:, 1:2] - ratios.log_ratio[:, 2:]  # [b, R]
            contrast[chunk] = chunk_margins.min(dim=1).values
            posterior[chunk] = torch.softmax(ratios.log_ratio[:, 1:], dim=1)[:, 0]
            for row, i in enumerate(chunk):
                margins[i] = chunk_margins[row]
        else:
            contrast[chunk] = value
    return ExactScores(pmi, se, contrast, posterior, margins)


def _toy_velocities(model: nn.Module, conditions: list[Tensor | None], images: int, cfg: float | None):
    """velocities(x_t, t) for the toy model: one forward per condition (None = ∅, the padded empty prompt), tokens
    tiled to the stacked draws; with ``cfg`` each conditional one guided against ∅."""

    def velocities(x_t: Tensor, t: Tensor) -> list[Tensor]:
        k = x_t.shape[0] // images
        empty = torch.full((x_t.shape[0], MAX_TOKENS), PAD_ID, dtype=torch.long)
        u_empty = model(x_t, t, empty)
        out = [u_empty]
        for tokens in conditions[1:]:
            u = model(x_t, t, tokens.repeat(k, 1))
            out.append(u if cfg is None else u_empty + cfg * (u - u_empty))
        return out

    return velocities
