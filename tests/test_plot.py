"""The matplotlib figures: the loss curve (and ComfyUI's IMAGE of it), count histograms, the toy sample grid, PNG files."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.image import imread

from rfmi_core.present.plot import (LOSS_LABEL, figure_to_image, histogram_axes, loss_curve_figure, loss_curve_image,
                            moving_average, new_figure, save_figure)
from rfmi_core.toy.pictures import VERDICTS, Sample, mi_histogram_figure, sample_grid_figure, tile, write_png


def test_loss_curve_image_is_a_comfyui_image():
    losses = [1.0 / (1 + 0.1 * i) for i in range(200)]
    image = loss_curve_image(losses)
    assert image.shape == (1, 384, 768, 3) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(image.max()) == 1.0 and float(image.min()) < 0.3  # a white page with dark ink on it
    assert loss_curve_image(losses, width=300, height=200).shape == (1, 200, 300, 3)
    with pytest.raises(ValueError, match="empty"):
        loss_curve_image([])


def test_loss_curve_figure_draws_the_losses_and_their_moving_average():
    losses = [float(v) for v in torch.rand(100, generator=torch.Generator().manual_seed(0))]
    figure = loss_curve_figure(losses, title="run 1")
    ax = figure.axes[0]
    raw, average = ax.get_lines()
    assert np.allclose(raw.get_ydata(), losses) and list(raw.get_xdata()) == list(range(1, 101))
    assert np.allclose(average.get_ydata(), moving_average(torch.tensor(losses, dtype=torch.float64), 5).numpy())
    assert ax.get_xlabel() == "optimiser step" and ax.get_ylabel() == LOSS_LABEL and ax.get_title() == "run 1"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["per step", "moving average (5 steps)"]


def test_loss_curve_figure_takes_several_runs():
    figure = loss_curve_figure({"a": [3.0, 2.0, 1.0], "b": [1.0] * 40})
    ax = figure.axes[0]
    assert [len(line.get_ydata()) for line in ax.get_lines()] == [3, 40, 40]  # a raw (short run); b raw + average
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_legend().get_title().get_text().startswith("thin: per step; thick: moving average")


def test_the_png_writer_rounds_as_comfyui_and_leaves_no_temporary_file(tmp_path):
    """save_png writes [H, W, C] in [0, 1] as ComfyUI's SaveImage rounds it (clip(255·x)), atomically."""
    from PIL import Image

    from rfmi_core.present.plot import save_png

    image = torch.tensor([[[0.0, 0.5, 1.0], [1.2, -0.1, 0.25]]])  # [1, 2, 3]
    path = save_png(image, str(tmp_path / "sub" / "x.png"))
    pixels = np.asarray(Image.open(path))
    assert pixels.tolist() == [[[0, 127, 255], [255, 0, 63]]]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]


def test_histogram_bars_are_the_data_counts():
    g = torch.Generator().manual_seed(1)
    groups = {"correct": torch.randn(37, generator=g) + 2, "wrong": torch.randn(150, generator=g)}
    figure = new_figure(4, 3)
    ax = figure.add_subplot()
    edges = histogram_axes(ax, groups, {"correct": "green", "wrong": "red"}, bins=12, title="binding")
    assert len(edges) == 13
    assert edges[0] == float(torch.cat(list(groups.values())).min())
    assert np.isclose(edges[-1], float(torch.cat(list(groups.values())).max()))
    assert [c.get_label().split(" (")[0] for c in ax.containers] == ["correct", "wrong"]
    for container, values in zip(ax.containers, groups.values()):
        heights = [bar.get_height() for bar in container]
        counts, _ = np.histogram(values.numpy(), bins=edges)
        assert heights == counts.tolist() and sum(heights) == values.numel()
        for bar, low, high in zip(container, edges[:-1], edges[1:]):  # each bar inside its bin
            assert low <= bar.get_x() and bar.get_x() + bar.get_width() <= high + 1e-9
    assert to_rgba(ax.containers[0][0].get_facecolor()[:3]) == to_rgba("green")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == [f"correct (n = 37, mean {groups['correct'].mean():.1f})",
                     f"wrong (n = 150, mean {groups['wrong'].mean():.1f})"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("MI (nats)", "count", "binding")


def test_mi_histogram_figure_has_a_panel_per_category_and_survives_an_empty_group(tmp_path):
    panels = {"binding": {"correct": torch.tensor([]), "wrong": torch.tensor([1.0, 2.0, 2.5])},
              "spatial": {"correct": torch.tensor([5.0]), "wrong": torch.tensor([4.0, 6.0])}}
    figure = mi_histogram_figure(panels, "MI of the candidates")
    assert [ax.get_title() for ax in figure.axes] == ["binding", "spatial"]
    assert [ax.get_ylabel() for ax in figure.axes] == ["candidates", "candidates"]
    assert [sum(b.get_height() for b in c) for ax in figure.axes for c in ax.containers] == [0, 3, 1, 2]
    assert figure.axes[0].get_legend().get_texts()[0].get_text() == "correct (n = 0)"
    path = save_figure(figure, str(tmp_path / "h.png"))
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[1] > pixels.shape[0] > 200
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]  # no temporary file left behind


def _sample(value: float, mi: float, verdict: str) -> Sample:
    image = torch.full((3, 16, 16), value)
    image[0, 0, 0] = -1.0
    return Sample(image, mi, verdict)


def test_sample_grid_shows_each_image_with_its_mi_and_verdict(tmp_path):
    rows = [("a red square", {"base": [_sample(0.5, 12.34, "correct"), _sample(0.0, -3.0, "invalid")],
                              "FT": [_sample(-0.5, 7.0, "wrong")]}),
            ("two blue disks", {"base": [_sample(1.0, 1.0, "wrong")], "FT": [_sample(0.2, 2.0, "correct")]})]
    figure = sample_grid_figure(rows, "binding: held-out prompts")
    assert figure.get_suptitle() == "binding: held-out prompts"
    assert [f.get_suptitle() for f in figure.subfigs] == ["“a red square”", "“two blue disks”"]
    shown = [ax for ax in figure.get_axes() if ax.images]
    assert len(shown) == 5  # every sample once; the empty slots are switched off
    expected = [s for _, by_model in rows for samples in by_model.values() for s in samples]
    for ax, sample in zip(shown, expected):
        assert np.allclose(ax.images[0].get_array(), ((sample.image + 1) / 2).permute(1, 2, 0).numpy())
        assert ax.get_xlabel() == f"MI {sample.mi:.1f}"
        assert to_rgba(ax.spines["left"].get_edgecolor()) == to_rgba(VERDICTS[sample.verdict][0])
    assert shown[0].get_xlabel() == "MI 12.3"
    legend = figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [label for _, label in VERDICTS.values()]
    image = figure_to_image(figure)
    assert image.shape[-1] == 3 and image.shape[:2] == (round(figure.get_figheight() * figure.dpi),
                                                         round(figure.get_figwidth() * figure.dpi))
    pixels = imread(save_figure(figure, str(tmp_path / "grid.png")))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500


def test_png_round_trip(tmp_path):
    image = torch.rand(3, 7, 5)
    pixels = imread(write_png(str(tmp_path / "x.png"), image))
    assert pixels.shape[:2] == (7, 5)
    assert np.allclose(pixels[..., :3], image.permute(1, 2, 0).numpy(), atol=1 / 255 + 1e-6)  # floored, as ComfyUI
    framed = tile(torch.zeros(3, 2, 2), 3, (1.0, 0.0, 0.0))
    assert framed.shape == (3, 10, 10) and framed[:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert torch.allclose(framed[:, 2:-2, 2:-2], torch.full((3, 6, 6), 0.5))
