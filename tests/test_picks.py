"""The artist's picks (rfmi_core.picks): text round trip, order, validation, and the top-k fallback."""

import json
from pathlib import Path

import pytest
import torch

from rfmi_core.finetune.picks import chosen_indices, format_picks, parse_picks


CASES = json.loads((Path(__file__).parent / "data" / "picks_cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", [c for c in CASES if "picks" in c], ids=lambda c: repr(c["text"]))
def test_parse_picks_keeps_pick_order_and_drops_repeats(case):
    """The shared table (the gallery's JS tests read it too): 0-based indices of the 1-based picks."""
    assert parse_picks(case["text"], case["n"]) == [p - 1 for p in case["picks"]]


@pytest.mark.parametrize("case", [c for c in CASES if "refused" in c], ids=lambda c: repr(c["text"]))
def test_parse_picks_refuses_anything_but_candidate_numbers(case):
    with pytest.raises(ValueError) as refused:
        parse_picks(case["text"], case["n"])
    assert case["refused"] in str(refused.value) and "leave it empty for the top-k by MI" in str(refused.value)


def test_format_picks_is_the_inverse_of_parse_picks():
    assert parse_picks(format_picks([4, 0, 2]), 5) == [4, 0, 2]
    assert format_picks([2, 0]) == "3,1"


def test_chosen_indices_are_the_picks_else_the_top_k_by_mi():
    mi = torch.tensor([0.5, 2.0, -1.0, 2.0, 1.0])
    assert chosen_indices("", mi, 2) == ([1, 3], False)  # ties keep candidate order
    assert chosen_indices("", mi, 99) == ([1, 3, 4, 0, 2], False)
    assert chosen_indices("3,1", mi, 2) == ([2, 0], True)
