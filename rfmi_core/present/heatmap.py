"""Where the prompt shaped the image: the per-position map of t/(1 − t)·‖u_y − u_∅‖² as a mask and a colour overlay."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["normalise_map", "upsample_map", "colourise", "overlay"]

# A perceptually ordered dark-to-bright ramp (inferno-like anchors), interpolated linearly.
_RAMP = torch.tensor([
    [0.001, 0.000, 0.014], [0.258, 0.039, 0.406], [0.578, 0.148, 0.404],
    [0.865, 0.317, 0.226], [0.988, 0.645, 0.040], [0.988, 0.998, 0.645],
])


def normalise_map(mi_map: Tensor) -> Tensor:
    """[B, h, w] ≥ 0 → [B, h, w] in [0, 1], each image divided by its own maximum (an all-zero map stays zero)."""
    if mi_map.ndim != 3:
        raise ValueError(f"mi_map must be [B, h, w] (one map per image); got shape {tuple(mi_map.shape)}")
    peak = mi_map.flatten(1).amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
    return (mi_map.float().clamp(min=0) / peak[:, None, None]).clamp(0, 1)


def upsample_map(mask: Tensor, height: int, width: int) -> Tensor:
    """[B, h, w] → [B, height, width], bilinear (a latent map to image resolution)."""
    return F.interpolate(mask[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)


def colourise(mask: Tensor) -> Tensor:
    """[B, H, W] in [0, 1] → [B, H, W, 3] RGB in [0, 1] along the ramp."""
    ramp = _RAMP.to(mask.device)
    position = mask.clamp(0, 1) * (len(ramp) - 1)
    low = position.floor().long().clamp(max=len(ramp) - 2)
    frac = (position - low)[..., None]
    return ramp[low] * (1 - frac) + ramp[low + 1] * frac


def overlay(image: Tensor, mask: Tensor, strength: float = 0.6) -> Tensor:
    """Blends the colourised mask over ``image`` [B, H, W, 3] (ComfyUI IMAGE layout): more colour where the map is high."""
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"image must be [B, H, W, 3]; got shape {tuple(image.shape)}")
    if mask.shape != image.shape[:3]:
        raise ValueError(f"mask must be [B, H, W] matching the image {tuple(image.shape[:3])}; got {tuple(mask.shape)}")
    alpha = (strength * mask.clamp(0, 1))[..., None]
    return image * (1 - alpha) + colourise(mask) * alpha
