"""Figures by matplotlib, headless (the Agg canvas, never a GUI backend and never pyplot's global state): loss curves,
histograms, and the conversions to a PNG file or to ComfyUI's IMAGE tensor.

matplotlib is imported when a figure is made, not when this module is imported, so the ComfyUI nodes still load in an
environment without it. There ``loss_curve_image`` alone falls back to a bare curve (no axes, no text) and warns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # only for annotations: the import itself is deferred
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

from ..util.atomic import write_atomically

__all__ = ["new_figure", "figure_to_image", "save_figure", "save_png", "png_pixels", "write_atomically", "moving_average", "loss_curve_figure", "loss_curve_image",
           "histogram_axes", "LOSS_LABEL"]

LOSS_LABEL = "flow-matching loss (velocity MSE)"
DPI = 100


def _figure_class():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - exercised only where matplotlib is missing
        raise ImportError("the figures need matplotlib: pip install matplotlib (it is in the pack's "
                          "requirements.txt)") from error
    return Figure, FigureCanvasAgg


def new_figure(width: float, height: float, dpi: int = DPI, layout: str | None = "constrained") -> Figure:
    """An empty figure of ``width`` × ``height`` inches on an Agg canvas (no window, no pyplot)."""
    figure_cls, canvas_cls = _figure_class()
    figure = figure_cls(figsize=(width, height), dpi=dpi, layout=layout)
    canvas_cls(figure)
    return figure


def figure_to_image(figure: Figure) -> Tensor:
    """The rendered figure as float [H, W, 3] in [0, 1] (H, W = inches × dpi)."""
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].astype(np.float32) / 255.0)


def png_pixels(image: Tensor) -> np.ndarray:
    """An image float [H, W, C] in [0, 1] as uint8 [H, W, 3], as ComfyUI's SaveImage rounds it (clip(255·x))."""
    return np.clip(255.0 * image[..., :3].detach().cpu().float().numpy(), 0, 255).astype(np.uint8)


def save_png(image: Tensor, path: str, compress_level: int = 1) -> str:
    """The one PNG writer of the pack: ``image`` [H, W, C] in [0, 1] (``png_pixels``) written atomically."""
    from PIL import Image  # pillow comes with matplotlib and with ComfyUI

    pixels = png_pixels(image)
    return write_atomically(path, lambda handle: Image.fromarray(pixels).save(handle, format="PNG",
                                                                              compress_level=compress_level))


def save_figure(figure: Figure, path: str, dpi: int | None = None) -> str:
    """Writes the figure as a PNG cropped to what it draws (nothing cut off), atomically; returns the path."""
    return write_atomically(path, lambda handle: figure.savefig(
        handle, format="png", dpi=dpi or figure.dpi, facecolor="white", bbox_inches="tight", pad_inches=0.1))


def moving_average(values: Tensor, window: int) -> Tensor:
    """Trailing mean over ``window`` values (shorter at the start)."""
    cumulative = torch.cat([torch.zeros(1, dtype=values.dtype), values.cumsum(0)])
    index = torch.arange(1, len(values) + 1)
    start = (index - window).clamp(min=0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def _series(losses: Sequence[float] | Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    series = dict(losses) if isinstance(losses, Mapping) else {"": list(losses)}
    series = {name: [float(v) for v in values] for name, values in series.items()}
    if not series or not any(series.values()):
        raise ValueError("losses is empty: train at least one step to draw a curve")
    return series


def loss_curve_figure(losses: Sequence[float] | Mapping[str, Sequence[float]], title: str = "LoRA training loss",
                      width: float = 7.68, height: float = 3.84, dpi: int = DPI) -> Figure:
    """Loss against step: each run's raw per-step loss (thin, light) under its trailing moving average (window = 1/20
    of the run, thick; a run shorter than 40 steps is drawn raw only); several runs as a mapping name → losses, one
    colour each, the legend naming the runs."""
    series = _series(losses)
    figure = new_figure(width, height, dpi)  # first: it says how to install matplotlib where it is missing
    from matplotlib.ticker import MaxNLocator

    ax = figure.add_subplot()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    smoothed = False
    for i, (name, values) in enumerate(series.items()):
        if not values:
            continue
        colour = colours[i % len(colours)]
        steps = np.arange(1, len(values) + 1)
        window = max(1, len(values) // 20)
        if window == 1:
            ax.plot(steps, values, color=colour, linewidth=1.5, marker="o" if len(values) <= 20 else None,
                    markersize=3, label=name or "per step")
            continue
        smoothed = True
        average = moving_average(torch.tensor(values, dtype=torch.float64), window).numpy()
        ax.plot(steps, values, color=colour, alpha=0.3, linewidth=0.8, label="_nolegend_" if name else "per step")
        ax.plot(steps, average, color=colour, linewidth=2.0, label=name or f"moving average ({window} steps)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    named = len(series) > 1 or "" not in series
    ax.legend(fontsize="small", loc="best", title_fontsize="small",
              title="thin: per step; thick: moving average over 1/20 of the run" if named and smoothed else None)
    return figure


def loss_curve_image(losses: Sequence[float] | Mapping[str, Sequence[float]], width: int = 768, height: int = 384,
                     title: str | None = None) -> Tensor:
    """ComfyUI's IMAGE of the loss curve (``loss_curve_figure``): float [1, height, width, 3] in [0, 1]."""
    series = _series(losses)
    if title is None:
        steps = max(len(v) for v in series.values())
        last = [v[-1] for v in series.values() if v]
        title = f"LoRA training loss: {steps} steps, final {last[0]:.4f}" if len(last) == 1 else "LoRA training loss"
    return figure_to_image(loss_curve_figure(series, title, width / DPI, height / DPI, DPI))[None]


def histogram_axes(ax: Axes, groups: Mapping[str, Tensor | np.ndarray | Sequence[float]],
                   colours: Mapping[str, str] | None = None, bins: int = 30, title: str = "",
                   xlabel: str = "MI (nats)", ylabel: str = "count") -> np.ndarray:
    """Count histograms of 1-D groups on shared bin edges (returned), the groups' bars side by side in each bin: one
    BarContainer per group (in ``ax.containers``, labelled "name (n = …, mean …)"), and a legend of those labels."""
    data = {name: np.asarray(torch.as_tensor(v).detach().float().flatten().cpu()) for name, v in groups.items()}
    values = np.concatenate([v for v in data.values()]) if data else np.zeros(0)
    edges = np.histogram_bin_edges(values if values.size else np.zeros(1), bins=bins)
    names = list(data)
    default = [f"C{i}" for i in range(len(names))]
    palette = [(colours or {}).get(name, default[i]) for i, name in enumerate(names)]
    labels = [f"{name} (n = {v.size}, mean {v.mean():.1f})" if v.size else f"{name} (n = 0)"
              for name, v in data.items()]
    if names:  # the groups' bars side by side within each bin, so no group hides another
        _, _, containers = ax.hist([data[name] for name in names], bins=edges, color=palette, alpha=0.8,
                                   edgecolor="white", linewidth=0.3)
        for container, label in zip(containers, labels):
            container.set_label(label)  # on the BarContainer (as ax.bar does): one legend entry per group
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return edges
