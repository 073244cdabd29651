"""The toy demo's pictures, as matplotlib figures (``rfmi_core.plot``): sample grids of held-out prompts (base vs each
fine-tuned model, MI under each sample, a frame coloured by the judge's verdict) and MI histograms of correct vs wrong
candidates per category. Plus plain pixel mosaics (``tile``, ``grid``, ``write_png``) for quick looks at samples.
Images are float [3, H, W]: the world's samples in [-1, 1], mosaics in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..present.plot import histogram_axes, new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Sample", "VERDICTS", "sample_grid_figure", "mi_histogram_figure", "tile", "grid", "stack_rows",
           "write_png"]

# verdict → (frame colour, legend text)
VERDICTS = {"correct": ("#2ca02c", "correct"), "wrong": ("#ff9f0e", "valid scene, wrong for the prompt"),
            "invalid": ("#d62728", "invalid scene")}


@dataclass
class Sample:
    """One generated image [3, h, w] in [-1, 1], its point-wise MI (nats) and the judge's verdict (``VERDICTS``)."""

    image: Tensor
    mi: float
    verdict: str


def _rgb(image: Tensor) -> np.ndarray:
    return ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def sample_grid_figure(rows: Sequence[tuple[str, Mapping[str, Sequence[Sample]]]], title: str,
                       tile_inches: float = 1.0) -> Figure:
    """One row per prompt (its text above the row); in each row, for each model (name above its block) the samples
    side by side, MI in nats under each, framed in the verdict's colour; a legend of the frame colours below."""
    if not rows:
        raise ValueError("no rows to draw")
    models = list(rows[0][1])
    columns = max(len(samples) for _, by_model in rows for samples in by_model.values())
    blocks = len(models) * columns
    width = max(6.0, tile_inches * (blocks + 0.4 * (len(models) - 1)) + 0.6)
    height = 1.0 + len(rows) * (tile_inches + 0.75)
    figure = new_figure(width, height)
    figure.suptitle(title, fontsize="large")
    row_figures = figure.subfigures(len(rows), 1, hspace=0.02)
    row_figures = [row_figures] if len(rows) == 1 else list(row_figures)
    for row_figure, (prompt, by_model) in zip(row_figures, rows):
        row_figure.suptitle(f"“{prompt}”", fontsize="medium", x=0.0, ha="left", fontweight="bold")
        model_figures = row_figure.subfigures(1, len(models), wspace=0.03)
        model_figures = [model_figures] if len(models) == 1 else list(model_figures)
        for model_figure, model in zip(model_figures, models):
            samples = list(by_model.get(model, []))
            model_figure.suptitle(model, fontsize="small", color="0.3")
            axes = model_figure.subplots(1, columns, squeeze=False)[0]
            for ax, sample in zip(axes, samples + [None] * (columns - len(samples))):
                ax.set_xticks([])
                ax.set_yticks([])
                if sample is None:
                    ax.set_axis_off()
                    continue
                ax.imshow(_rgb(sample.image), interpolation="nearest")
                colour = VERDICTS[sample.verdict][0]
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(3.5)
                ax.set_xlabel(f"MI {sample.mi:.1f}", fontsize="small", labelpad=5)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="white", edgecolor=colour, linewidth=3, label=label)
               for colour, label in VERDICTS.values()]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small",
                  title="frame: the judge's verdict; MI under each sample, in nats", title_fontsize="small",
                  frameon=False)
    return figure


def mi_histogram_figure(panels: Mapping[str, Mapping[str, Tensor]], title: str = "", bins: int = 30,
                        colours: Mapping[str, str] | None = None, score: str = "MI") -> Figure:
    """Side-by-side panels (title → {group name → 1-D score values}) of overlaid count histograms
    (``histogram_axes``), the score in nats on the x axis, number of candidates on the y axis, each group's n and mean
    in the legend."""
    colours = colours or {"correct": VERDICTS["correct"][0], "wrong": VERDICTS["invalid"][0]}
    figure = new_figure(4.2 * max(1, len(panels)), 3.6)
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (name, groups) in zip(axes, panels.items()):
        histogram_axes(ax, groups, colours, bins=bins, title=name, xlabel=f"{score} (nats)", ylabel="candidates")
    if title:
        figure.suptitle(title)
    return figure


def tile(image: Tensor, scale: int, frame: tuple[float, float, float] | None = None) -> Tensor:
    """A [-1, 1] image [3, h, w] as [0, 1], upscaled ``scale``× (nearest), framed 2 px in ``frame`` colour."""
    big = ((image.clamp(-1, 1) + 1) / 2).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    if frame is not None:
        pad = torch.tensor(frame)[:, None, None].expand(3, big.shape[1] + 4, big.shape[2] + 4).clone()
        pad[:, 2:-2, 2:-2] = big
        big = pad
    return big


def stack_rows(rows: list[Tensor], gap: int = 2, axis: int = 1) -> Tensor:
    """Images [3, h, w] joined along ``axis`` (1: one below the other, 2: side by side), zero-padded to fit."""
    other = 2 if axis == 1 else 1
    size = max(r.shape[other] for r in rows)
    parts = []
    for r in rows:
        shape = list(r.shape)
        shape[other] = size
        padded = torch.zeros(shape)
        padded[tuple(slice(0, s) for s in r.shape)] = r
        parts += [padded, torch.zeros([3, gap, size] if axis == 1 else [3, size, gap])]
    return torch.cat(parts[:-1], axis)


def grid(tiles: list[list[Tensor]], gap: int = 2) -> Tensor:
    """Rows of tiles [3, h, w] into one image."""
    return stack_rows([stack_rows(row, gap, axis=2) for row in tiles], gap, axis=1)


def write_png(path: str, image: Tensor) -> str:
    """Writes a float image [3, H, W] in [0, 1] as an 8-bit PNG (``present.plot.save_png``), atomically."""
    return save_png(image.permute(1, 2, 0), path)