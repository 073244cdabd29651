"""Presenting phrase MI: the candidate × phrase table shown on the node, and the phrases' heatmaps as masks.

Headless (no ComfyUI import): the RFMI Phrase MI node is glue over ``phrase_mi.estimate_phrase_mi_from_velocities``
and these two functions.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .heatmap import upsample_map

__all__ = ["phrase_table", "phrase_masks"]


def phrase_table(phrases: Sequence[str], mi: Tensor, standard_error: Tensor | None = None,
                 total_mi: Tensor | None = None) -> str:
    """A plain-text table, one row per candidate, one column per phrase (i(x; p | y∖p) in nats, ± its s.e. when
    given), then the weakest phrase (phrase-min) and, when given, the plain MI i(x; y)."""
    if mi.ndim != 2 or mi.shape[1] != len(phrases):
        raise ValueError(f"mi must be [candidates, {len(phrases)} phrases]; got {tuple(mi.shape)}")
    if standard_error is not None and standard_error.shape != mi.shape:
        raise ValueError(f"standard_error {tuple(standard_error.shape)} must match mi {tuple(mi.shape)}")
    legend = [f"p{j + 1} = {text}" for j, text in enumerate(phrases)]
    header = ["#"] + [f"p{j + 1}" for j in range(len(phrases))] + ["weakest"] + ([] if total_mi is None else ["MI(y)"])
    rows = []
    for i in range(mi.shape[0]):
        cells = [str(i)]
        for j in range(mi.shape[1]):
            cell = f"{float(mi[i, j]):.3f}"
            if standard_error is not None:
                cell += f" ± {float(standard_error[i, j]):.3f}"
            cells.append(cell)
        cells.append(f"p{int(mi[i].argmin()) + 1}")
        if total_mi is not None:
            cells.append(f"{float(total_mi[i]):.3f}")
        rows.append(cells)
    widths = [max(len(r[k]) for r in [header] + rows) for k in range(len(header))]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join(["phrase MI i(x; p | y∖p), nats", *legend, "", line(header), *map(line, rows)])


def phrase_masks(maps: Tensor, height: int | None = None, width: int | None = None) -> list[Tensor]:
    """[B, P, h, w] phrase maps (≥ 0) → one MASK [B, H, W] in [0, 1] per phrase. Each candidate is divided by its
    largest value over all its phrases, so a phrase that shaped little stays dim beside one that shaped much;
    upsampled (bilinear) to height × width when given."""
    if maps.ndim != 4:
        raise ValueError(f"maps must be [candidates, phrases, h, w] (a 2-D map per phrase); got {tuple(maps.shape)}")
    maps = maps.float().clamp(min=0)
    peak = maps.flatten(1).amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
    scaled = (maps / peak[:, None, None, None]).clamp(0, 1)
    masks = [scaled[:, p] for p in range(scaled.shape[1])]
    if height is not None and width is not None:
        masks = [upsample_map(m, height, width) for m in masks]
    return masks
