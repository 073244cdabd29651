"""Summaries of Monte-Carlo estimates: a mean and its standard error."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["mean_and_standard_error"]


def mean_and_standard_error(values: Tensor, dim: int | None = None) -> tuple[Tensor, Tensor]:
    """(mean, standard error of the mean) of ``values`` along ``dim`` (over all of them when None).

    The standard error is the sample standard deviation (n − 1 in the denominator) over √n; NaN when n < 2.
    """
    n = values.numel() if dim is None else values.shape[dim]
    mean = values.mean() if dim is None else values.mean(dim=dim)
    if n < 2:
        return mean, torch.full_like(mean, float("nan"))
    std = values.std() if dim is None else values.std(dim=dim)
    return mean, std / math.sqrt(n)
