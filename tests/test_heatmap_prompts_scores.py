"""Heatmap maths, prompt lists, safe paths and the scored-candidates container."""

import os

import pytest
import torch

from rfmi_core import ScoredCandidates, TrajectoryMI
from rfmi_core.present.heatmap import colourise, normalise_map, overlay, upsample_map
from rfmi_core.text.prompts import parse_prompt_lines, resolve_inside


def test_normalise_map_scales_each_image_to_its_own_peak():
    m = torch.tensor([[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    n = normalise_map(m)
    torch.testing.assert_close(n[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.equal(n[1], torch.zeros(2, 2))


def test_upsample_and_overlay_keep_shapes_and_range():
    mask = upsample_map(normalise_map(torch.rand(2, 4, 4) + 0.1), 32, 32)
    assert mask.shape == (2, 32, 32) and float(mask.min()) >= 0 and float(mask.max()) <= 1
    image = torch.rand(2, 32, 32, 3)
    out = overlay(image, mask, strength=0.0)
    assert torch.equal(out, image)  # strength 0 leaves the image untouched
    full = overlay(image, torch.ones(2, 32, 32), strength=1.0)
    torch.testing.assert_close(full, colourise(torch.ones(2, 32, 32)))


def test_colour_ramp_runs_dark_to_bright():
    ramp = colourise(torch.linspace(0, 1, 11)[None, None])[0, 0]
    brightness = ramp.sum(dim=-1)
    assert bool((brightness[1:] >= brightness[:-1] - 1e-6).all())


def test_heatmap_errors_name_the_shapes():
    with pytest.raises(ValueError, match="mi_map must be"):
        normalise_map(torch.rand(4, 4))
    with pytest.raises(ValueError, match="mask must be"):
        overlay(torch.rand(1, 8, 8, 3), torch.rand(1, 4, 4))


def test_prompt_lines_skip_blanks_and_comments():
    assert parse_prompt_lines("a cat\n\n  # note\n a dog  \r\n") == ["a cat", "a dog"]


def test_t2i_compbench_lists_parse_to_their_line_count():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "t2i-compbench")
    path = os.path.join(root, "spatial_train.txt")
    if not os.path.exists(path):
        pytest.skip("../shared/data/t2i-compbench is not beside this checkout")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert len(parse_prompt_lines(text)) == sum(1 for line in text.splitlines() if line.strip())


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "a/../../b.txt", "", "."])
def test_names_that_leave_the_folder_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="leave the folder|non-empty relative path"):
        resolve_inside(str(tmp_path), name)


def test_symlinks_out_of_the_folder_are_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "root" / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ValueError, match="leave the folder"):
        resolve_inside(str(tmp_path / "root"), "link.txt")
    assert resolve_inside(str(tmp_path), "root/sub/file.txt") == str(tmp_path / "root" / "sub" / "file.txt")


def _result(values):
    acc = TrajectoryMI(velocity="cond")
    u = torch.tensor(values)[:, None]
    acc.add_step(0.5, 0.0, torch.zeros(len(values), 1), u, torch.zeros(len(values), 1))
    return acc.result()


def test_scored_candidates_select_and_concat_keep_rows_together():
    a = ScoredCandidates(mi=torch.tensor([1.0, 3.0]), seeds=[10, 11], batch_index=[0, 0], result=_result([1.0, 2.0]),
                         latents=torch.arange(2.0)[:, None])
    b = ScoredCandidates(mi=torch.tensor([2.0]), seeds=[12], batch_index=[0], result=_result([3.0]),
                         latents=torch.tensor([[2.0]]))
    both = ScoredCandidates.concat([a, b])
    assert both.ranking().tolist() == [1, 2, 0]
    best = both.select(both.ranking()[:2])
    assert best.seeds == [11, 12] and best.latents.flatten().tolist() == [1.0, 2.0]
    torch.testing.assert_close(best.result.mi, torch.tensor([2.0, 4.5]))  # u²·Δt of candidates 11 and 12


def test_scored_candidates_refuse_ragged_fields():
    with pytest.raises(ValueError, match="seeds must hold one entry per candidate"):
        ScoredCandidates(mi=torch.zeros(2), seeds=[1], batch_index=[0, 0])
