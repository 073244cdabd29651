"""Selection of the candidates to keep (paper Algorithm 1, line "keep the top-k by MI")."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["top_k"]


def top_k(scores: Tensor | list[float], k: int) -> Tensor:
    """Indices of the k highest scores, highest first; equal scores keep index order (stable). Returns long [k]."""
    scores = torch.as_tensor(scores).flatten()
    n = scores.numel()
    if not isinstance(k, int) or isinstance(k, bool):
        raise ValueError(f"k must be an integer; got {k!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of candidates ({n}); got k={k}")
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores hold NaN; expected one finite MI per candidate")
    order = torch.sort(scores.double(), descending=True, stable=True).indices
    return order[:k]
