"""The artist's picks among N ranked candidates: a text value any client can set, and what it selects.

Picks are candidate numbers, 1-based as the gallery shows them (candidate j = Best-of-N's seed + j − 1), separated
by commas, semicolons or spaces, in the order they were picked. No picks means the top-k by MI (paper Algorithm 1).
The gallery (web/rfmi_gallery_logic.js, ``readPicks``) reads a text exactly as ``parse_picks`` does and shows the
same refusal; tests/data/picks_cases.json drives both sides' tests.
"""

from __future__ import annotations

import re

from torch import Tensor

from .select import top_k

__all__ = ["parse_picks", "format_picks", "chosen_indices"]


def parse_picks(text: str, n: int) -> list[int]:
    """0-based candidate indices of ``text`` ("3, 1" → [2, 0]), in pick order; repeats dropped. Raises a ValueError
    naming the bad entry for anything but whole numbers in 1..n."""
    if not isinstance(text, str):
        raise ValueError(f"picks must be text like '3, 1'; got {text!r}")
    out: list[int] = []
    for part in (p for p in re.split(r"[\s,;]+", text.strip()) if p):
        if not re.fullmatch(r"[0-9]+", part) or not 1 <= int(part) <= n:
            raise ValueError(f"picks {text!r}: {part!r} is not a candidate number between 1 and {n}; give the "
                             "numbers shown on the thumbnails, comma-separated, or leave it empty for the top-k by MI")
        if int(part) - 1 not in out:
            out.append(int(part) - 1)
    return out


def format_picks(indices: list[int]) -> str:
    """The inverse of ``parse_picks``: [2, 0] → "3,1"."""
    return ",".join(str(int(i) + 1) for i in indices)


def chosen_indices(picks: str, mi: Tensor, k: int) -> tuple[list[int], bool]:
    """(0-based indices to output, whether they are the artist's picks): the picks in pick order, else the top
    min(k, N) by MI, highest first."""
    n = int(mi.shape[0])
    picked = parse_picks(picks, n)
    if picked:
        return picked, True
    return top_k(mi, min(k, n)).tolist(), False
