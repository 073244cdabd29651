"""A loss curve drawn straight into an image tensor (no plotting library): for ComfyUI's IMAGE outputs."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["loss_curve_image", "moving_average"]


def moving_average(values: Tensor, window: int) -> Tensor:
    """Trailing mean over ``window`` values (shorter at the start)."""
    cumulative = torch.cat([torch.zeros(1, dtype=values.dtype), values.cumsum(0)])
    index = torch.arange(1, len(values) + 1)
    start = (index - window).clamp(min=0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def loss_curve_image(losses: list[float], width: int = 512, height: int = 256, margin: int = 16) -> Tensor:
    """[1, H, W, 3] in [0, 1]: raw losses in light blue, their moving average in dark blue, on a light grid."""
    if not losses:
        raise ValueError("losses is empty: train at least one step to draw a curve")
    image = torch.ones(height, width, 3)
    for frac in (0.25, 0.5, 0.75):
        image[margin + int(frac * (height - 2 * margin)), margin : width - margin] = 0.9
    values = torch.tensor(losses, dtype=torch.float64)
    low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0

    def draw(series: Tensor, colour: tuple[float, float, float]) -> None:
        xs = torch.linspace(margin, width - margin - 1, len(series)) if len(series) > 1 else torch.tensor([width / 2])
        ys = (height - margin - 1) - (series - low) / span * (height - 2 * margin - 1)
        for i in range(max(len(series) - 1, 1)):  # a line segment per pair of points
            j = min(i + 1, len(series) - 1)
            n = int(max(abs(xs[j] - xs[i]), abs(ys[j] - ys[i])).item()) + 1
            px = torch.linspace(float(xs[i]), float(xs[j]), n).round().long().clamp(0, width - 1)
            py = torch.linspace(float(ys[i]), float(ys[j]), n).round().long().clamp(0, height - 1)
            image[py, px] = torch.tensor(colour, dtype=image.dtype)

    draw(values, (0.65, 0.8, 1.0))
    draw(moving_average(values, max(1, len(values) // 20)), (0.05, 0.2, 0.6))
    return image[None]
