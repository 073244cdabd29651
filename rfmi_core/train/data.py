"""What the trainer trains on, and which samples each step draws.

``data`` is any object with ``__len__`` and ``__getitem__(i) -> (latent [C, ...], cond, uncond)`` where ``cond`` and
``uncond`` are dicts of tensors with a leading batch dim of 1 (SD3: ``cross_attn`` [1, 154, 4096], ``pooled_output``
[1, 2048]; FLUX adds ``guidance`` [1]). A batch stacks the latents and concatenates each condition key along dim 0; a
key missing from ``uncond`` (e.g. ``guidance``) is taken from ``cond`` when dropped.

All randomness of step s (its samples, t, ε, dropout) comes from generators seeded by (seed, s); samples are drawn
epoch by epoch from permutations seeded by (seed, epoch), so a run resumed at step k reproduces the uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["LatentSpaceData", "affine_latent_map", "step_generator", "batch_indices", "collate", "check_data",
           "micro_batch"]

_STEP_STREAM, _EPOCH_STREAM = 0, 1


class LatentSpaceData:
    """Training items whose latents are moved into the model's latent space by ``to_model_space`` (a map of batched
    latents [B, C, ...], e.g. ComfyUI's ``process_latent_in``, or ``affine_latent_map``); conditions unchanged."""

    def __init__(self, data: Any, to_model_space: Callable[[Tensor], Tensor]):
        self.data, self.to_model_space = data, to_model_space

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Tensor, dict, dict]:
        latent, cond, uncond = self.data[index]
        return self.to_model_space(latent[None])[0], cond, uncond


def affine_latent_map(scale: float = 1.0, shift: float = 0.0) -> Callable[[Tensor], Tensor]:
    """x ↦ (x − shift)·scale: a latent format's ``process_in`` (SD3: 1.5305 / 0.0609, FLUX: 0.3611 / 0.1159)."""

    def to_model_space(latent: Tensor) -> Tensor:
        return (latent - shift) * scale

    return to_model_space


def _seed(seed: int, stream: int, index: int) -> int:
    """A 64-bit seed for (seed, stream, index), well mixed (numpy's SeedSequence)."""
    low, high = np.random.SeedSequence([seed, stream, index]).generate_state(2, dtype=np.uint32)
    return int(high) << 32 | int(low)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator all of step ``step``'s t, ε and dropout draws come from."""
    return torch.Generator().manual_seed(_seed(seed, _STEP_STREAM, step))


def batch_indices(seed: int, step: int, n: int, count: int) -> Tensor:
    """The ``count`` dataset indices of step ``step``: positions step·count … of the stream that visits all n
    samples once per epoch, each epoch in its own order (a permutation seeded by (seed, epoch))."""
    positions = torch.arange(step * count, (step + 1) * count)
    epochs = positions // n
    indices = torch.empty(count, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(seed, _EPOCH_STREAM, epoch)))
        chosen = epochs == epoch
        indices[chosen] = order[positions[chosen] % n]
    return indices


def check_data(data: Any) -> None:
    """A ValueError unless ``data`` is a non-empty dataset whose first item is a (latent, cond, uncond) triple."""
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError(f"data must have __len__ and __getitem__; got {type(data).__name__}")
    if len(data) < 1:
        raise ValueError("data is empty; expected at least one (latent, cond, uncond) sample")
    _check_item(data[0], 0)


def _check_item(item: Any, index: int) -> None:
    if not (isinstance(item, (tuple, list)) and len(item) == 3):
        raise ValueError(f"data[{index}] must be a (latent, cond, uncond) triple; got {type(item).__name__}")
    latent, cond, uncond = item
    if not isinstance(latent, Tensor) or latent.ndim < 1:
        raise ValueError(f"data[{index}] latent must be a tensor [C, ...]; got {type(latent).__name__}")
    for name, c in (("cond", cond), ("uncond", uncond)):
        if not isinstance(c, dict) or not all(isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == 1
                                              for v in c.values()):
            raise ValueError(f"data[{index}] {name} must be a dict of tensors with a leading batch dim of 1")


def collate(items: Sequence[tuple[Tensor, dict]]) -> tuple[Tensor, dict[str, Tensor]]:
    """Latents stacked to [B, C, ...]; each condition key concatenated along dim 0 to [B, ...]."""
    keys = set(items[0][1])
    if any(set(c) != keys for _, c in items):
        raise ValueError(f"data: the samples of a batch have different condition keys: "
                         f"{sorted({tuple(sorted(c)) for _, c in items})}")
    try:
        latents = torch.stack([x for x, _ in items])
        cond = {k: torch.cat([c[k] for _, c in items]) for k in sorted(keys)}
    except RuntimeError as error:
        raise ValueError(f"data: the samples of a batch do not stack ({error}); use batch_size=1 (and "
                         f"grad_accum_steps for a larger effective batch) when shapes differ") from None
    return latents, cond


def micro_batch(data: Any, indices: Tensor, drop: Tensor, device: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
    """The collated batch of ``indices``, with ``uncond`` (over ``cond``) where ``drop``; copies on ``device``."""
    items = []
    for i, dropped in zip(indices.tolist(), drop.tolist()):
        latent, cond, uncond = data[i]
        items.append((latent, {**cond, **uncond} if dropped else cond))
    latents, cond = collate(items)
    # copies: tensors made under torch.inference_mode (as ComfyUI's) cannot be saved for backward; copies can.
    return (latents.to(device=device, dtype=torch.float32, copy=True),
            {k: v.to(device=device, copy=True) for k, v in cond.items()})
