"""Argument checks shared by the estimator: each raises a ValueError that names the argument and what was expected."""

from __future__ import annotations

import torch
from torch import Tensor


def require_same_shape(name: str, tensor: Tensor, reference_name: str, reference: Tensor) -> None:
    if tuple(tensor.shape) != tuple(reference.shape):
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)} but {reference_name} has shape {tuple(reference.shape)}; "
            f"they must match (one row per image in the batch)"
        )


def require_batched(name: str, tensor: Tensor) -> None:
    if tensor.ndim < 2:
        raise ValueError(f"{name} must be batched, shape [B, ...] with at least 2 dimensions; got {tuple(tensor.shape)}")


def require_finite(name: str, tensor: Tensor) -> None:
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} holds {bad} NaN/Inf value(s); expected finite velocities "
            f"(a model run in too low a precision or at sigma = 0 gives these)"
        )


def require_unit_interval(name: str, value: Tensor | float, *, open_left: bool = False, open_right: bool = False) -> None:
    v = torch.as_tensor(value, dtype=torch.float64)
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} must be finite and in [0, 1]; got {value!r}")
    low_ok = (v > 0) if open_left else (v >= 0)
    high_ok = (v < 1) if open_right else (v <= 1)
    if not bool((low_ok & high_ok).all()):
        interval = ("(" if open_left else "[") + "0, 1" + (")" if open_right else "]")
        shown = v.flatten()[:4].tolist()
        raise ValueError(f"{name} must lie in {interval}; got {shown if v.numel() > 1 else v.item()}")


def require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")


def per_sample(name: str, value: Tensor | float, batch: int, device: torch.device) -> Tensor:
    """A scalar or [B] tensor as a float32 [B] tensor on ``device`` (float32: Apple's MPS has no float64)."""
    v = torch.as_tensor(value, device=device).to(torch.float32).flatten()
    if v.numel() == 1:
        return v.expand(batch)
    if v.numel() != batch:
        raise ValueError(f"{name} must be a scalar or hold one value per image ({batch}); got {v.numel()} values")
    return v
