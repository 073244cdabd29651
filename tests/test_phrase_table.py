"""The phrase MI table and the phrase masks (rfmi_core.phrase_table), headless."""

from __future__ import annotations

import pytest
import torch

from rfmi_core.present.phrase_table import phrase_masks, phrase_table


def test_the_table_has_a_row_per_candidate_and_names_the_weakest_phrase():
    mi = torch.tensor([[1.0, 0.25, 2.0], [0.5, 3.0, 4.0]])
    se = torch.full_like(mi, 0.125)
    table = phrase_table(["a red square", "left of", "a blue disk"], mi, se, torch.tensor([5.0, 6.0]))
    lines = table.splitlines()
    assert "p1 = a red square" in lines and "p3 = a blue disk" in lines
    header, first, second = lines[-3].split(), lines[-2].split(), lines[-1].split()
    assert header == ["#", "p1", "p2", "p3", "weakest", "MI(y)"]
    assert first[:4] == ["0", "1.000", "±", "0.125"] and first[-2:] == ["p2", "5.000"]
    assert second[-2:] == ["p1", "6.000"]
    plain = phrase_table(["one phrase"], torch.tensor([[0.5]]))
    assert plain.splitlines()[-1].split() == ["0", "0.500", "p1"]
    with pytest.raises(ValueError, match="3 phrases"):
        phrase_table(["a", "b", "c"], torch.zeros(2, 2))


def test_masks_share_each_candidates_peak_across_phrases_and_upsample():
    maps = torch.zeros(2, 2, 4, 4)
    maps[0, 0, 1, 1], maps[0, 1, 2, 2] = 4.0, 1.0  # candidate 0: phrase 2 shaped a quarter as much
    maps[1, 1, 0, 0] = 0.5  # candidate 1: only phrase 2
    masks = phrase_masks(maps)
    assert len(masks) == 2 and masks[0].shape == (2, 4, 4)
    assert float(masks[0][0].max()) == 1.0 and float(masks[1][0].max()) == 0.25
    assert float(masks[0][1].max()) == 0.0 and float(masks[1][1].max()) == 1.0
    big = phrase_masks(maps, 16, 16)
    assert big[0].shape == (2, 16, 16) and float(big[0].min()) >= 0 and float(big[0].max()) <= 1
    assert float(phrase_masks(torch.zeros(1, 2, 3, 3))[0].max()) == 0.0  # all-zero maps stay zero
    with pytest.raises(ValueError, match="candidates, phrases"):
        phrase_masks(torch.zeros(2, 4, 4))
