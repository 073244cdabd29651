"""The artist's picks (rfmi_core.picks): text round trip, order, validation, and the top-k fallback."""

import pytest
import torch

from rfmi_core.picks import chosen_indices, format_picks, parse_picks


def test_parse_picks_keeps_pick_order_and_drops_repeats():
    assert parse_picks("3, 1", 5) == [2, 0]
    assert parse_picks(" 5;2 5\n4 ", 5) == [4, 1, 3]
    assert parse_picks("", 5) == [] and parse_picks("  ", 5) == []
    assert parse_picks(format_picks([4, 0, 2]), 5) == [4, 0, 2]
    assert format_picks([2, 0]) == "3,1"


@pytest.mark.parametrize("text", ["0", "6", "-1", "2.5", "two", "1,x"])
def test_parse_picks_refuses_anything_but_candidate_numbers(text):
    with pytest.raises(ValueError, match="not a candidate number between 1 and 5"):
        parse_picks(text, 5)


def test_chosen_indices_are_the_picks_else_the_top_k_by_mi():
    mi = torch.tensor([0.5, 2.0, -1.0, 2.0, 1.0])
    assert chosen_indices("", mi, 2) == ([1, 3], False)  # ties keep candidate order
    assert chosen_indices("", mi, 99) == ([1, 3, 4, 0, 2], False)
    assert chosen_indices("3,1", mi, 2) == ([2, 0], True)
