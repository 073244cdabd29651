"""The flow-matching loss of RFMI FT, its training times and its learning-rate schedule.

For a data latent x1, noise ε ~ N(0, I) and a time t ∈ (0, 1) (paper time: 0 = noise, 1 = data), the loss is
L(θ) = mean ‖u_θ(x_t, t, y) − u*‖² on the straight path (``conventions.straight_path``: x_t = t·x1 + (1 − t)·ε,
u* = x1 − ε), with t logit-normal (t = sigmoid(m + s·n), n ~ N(0, 1)) or uniform.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..mi.checks import require_same_shape
from ..mi.conventions import ModuleVelocity, straight_path
from .config import TrainConfig

__all__ = ["sample_t", "lr_at", "flow_matching_loss"]


def sample_t(n: int, generator: torch.Generator, config: TrainConfig) -> Tensor:
    """n float32 training times: sigmoid(m + s·N(0, 1)) ("logit_normal") or U(0, 1) ("uniform")."""
    if config.t_sampling == "uniform":
        return torch.rand(n, generator=generator)
    return torch.sigmoid(config.logit_mean + config.logit_std * torch.randn(n, generator=generator))


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of the update that completes step ``step`` + 1 (0-based ``step``): lr·min(1, (step + 1)/W).

    A linear warm-up over the first W = ``warmup_steps`` updates (the first one already non-zero), constant after.
    """
    if config.warmup_steps == 0:
        return config.lr
    return config.lr * min(1.0, (step + 1) / config.warmup_steps)


def flow_matching_loss(velocity_fn: ModuleVelocity, model: nn.Module, x1: Tensor, t: Tensor, noise: Tensor,
                       cond: dict[str, Tensor], forward: Sequence[AbstractContextManager] = ()) -> Tensor:
    """mean ‖velocity_fn(model, x_t, t, cond) − (x1 − ε)‖² at x_t = t·x1 + (1 − t)·ε, in float32.

    ``forward``: contexts the model's forward runs in (autocast, saved-activation copies)."""
    x_t, target = straight_path(x1, noise, t)
    with ExitStack() as stack:
        for context in forward:
            stack.enter_context(context)
        u = velocity_fn(model, x_t, t, cond)
    require_same_shape("velocity_fn output", u, "x_t", x_t)
    return F.mse_loss(u.float(), target)
