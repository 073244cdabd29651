import pytest
import torch

from rfmi_core import top_k


def test_top_k_orders_highest_first():
    assert top_k(torch.tensor([0.1, 3.0, -2.0, 2.5]), 3).tolist() == [1, 3, 0]


def test_top_k_breaks_ties_by_index():
    assert top_k([1.0, 2.0, 2.0, 1.0, 2.0], 4).tolist() == [1, 2, 4, 0]


@pytest.mark.parametrize("k, message", [(0, "between 1 and"), (6, "between 1 and the number of candidates \\(5\\)"), (1.5, "integer")])
def test_top_k_rejects_bad_k(k, message):
    with pytest.raises(ValueError, match=message):
        top_k(torch.arange(5.0), k)


def test_top_k_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        top_k(torch.tensor([1.0, float("nan")]), 1)
