"""Images that are not scenes of the toy world, to check that the judge rejects them (valid = False).

Kinds: "unknown_shape" (a blob of no known shape or size), "merged" (two same-coloured shapes touching or
overlapping), "too_many" (5 objects), "foreign_colour" (a shape in magenta or cyan), "two_colours" (a shape split
between two palette colours), "mush" (12 scattered pixels of palette colours), "empty" (background only). All kinds
but "too_many" and "empty" add 0–2 ordinary objects elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rfmi_core.toy.prompts import COLOURS, SHAPES
from rfmi_core.toy.world import CANVAS, PALETTE, _shape_masks, background, sample_positions

__all__ = ["INVALID_KINDS", "FOREIGN_COLOURS", "unknown_shapes", "render_invalid"]

INVALID_KINDS = ("unknown_shape", "merged", "too_many", "foreign_colour", "two_colours", "mush", "empty")
FOREIGN_COLOURS = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]])  # magenta, cyan: 1.63 from grey, 2 from the palette
MUSH_PIXELS = 12
MERGED_PIXELS = 25  # a merged blob this large is more than SHAPE_TOLERANCE px from every shape by its size alone


def _box(h: int, w: int) -> Tensor:
    return torch.ones(h, w, dtype=torch.bool)


def unknown_shapes() -> list[Tensor]:
    """Masks that are no square, disk or cross: wrong sizes (3×3, 5×5, 6×6 squares; a 7×7 disk), bars, a thin plus,
    a ring, a triangle, an L (each ≥ 4 px from every shape at every placement: the tests check it)."""
    thin_plus = torch.zeros(5, 5, dtype=torch.bool)
    thin_plus[2, :] = thin_plus[:, 2] = True
    ring = _box(5, 5)
    ring[1:4, 1:4] = False
    ell = torch.zeros(5, 4, dtype=torch.bool)
    ell[:, :2] = ell[3:, :] = True
    big_disk = _box(7, 7)
    big_disk[[0, 0, 0, 0, 1, 1, 5, 5, 6, 6, 6, 6], [0, 1, 5, 6, 0, 6, 0, 6, 0, 1, 5, 6]] = False
    return [_box(3, 3), _box(5, 5), _box(6, 6), _box(2, 6), _box(3, 6), _box(6, 3), thin_plus, ring,
            _box(5, 5).tril(), ell, big_disk]


def _pick(n: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, n, (), generator=generator))


def _solid(mask: Tensor, rgb: Tensor) -> Tensor:
    """An RGB patch [3, h, w] of one colour (painted only where its mask is set)."""
    return rgb[:, None, None].expand(3, *mask.shape).clone()


def _ordinary(generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    mask = _shape_masks()[SHAPES[_pick(len(SHAPES), generator)]]
    return mask, _solid(mask, PALETTE[_pick(len(COLOURS), generator)])


def _compose(items: list[tuple[Tensor, Tensor]], generator: torch.Generator | None,
             extras: bool = True) -> tuple[Tensor, Tensor]:
    """Background + each (mask [h, w], patch [3, h, w]) + 0–2 ordinary objects, footprints GAP apart.
    Returns the image and the bool [CANVAS, CANVAS] map of painted pixels."""
    extra = [_ordinary(generator) for _ in range(_pick(3, generator) if extras else 0)]
    while True:
        try:
            layout = sample_positions([tuple(m.shape) for m, _ in items + extra], generator, max_batches=8)
            break
        except RuntimeError:  # no room for this many extras next to a large blob: drop one
            extra.pop()
    items = items + extra
    image, painted = background(generator), torch.zeros(CANVAS, CANVAS, dtype=torch.bool)
    for (mask, patch), (r, c) in zip(items, layout):
        h, w = mask.shape
        image[:, r:r + h, c:c + w][:, mask] = patch[:, mask]
        painted[r:r + h, c:c + w] |= mask
    return image, painted


def _one_blob(mask: Tensor) -> bool:
    """Whether the mask's pixels form a single 4-connected component (flood fill)."""
    pixels = {tuple(p) for p in torch.nonzero(mask).tolist()}
    stack, seen = [next(iter(pixels))], set()
    while stack:
        p = stack.pop()
        if p in seen or p not in pixels:
            continue
        seen.add(p)
        stack += [(p[0] + 1, p[1]), (p[0] - 1, p[1]), (p[0], p[1] + 1), (p[0], p[1] - 1)]
    return len(seen) == len(pixels)


def _merged_mask(generator: torch.Generator | None) -> Tensor:
    """The union of two shapes whose footprints overlap or touch, one 4-connected blob of ≥ MERGED_PIXELS pixels."""
    a, b = (_shape_masks()[SHAPES[_pick(len(SHAPES), generator)]] for _ in range(2))
    while True:
        dr, dc = (int(v) for v in torch.randint(-b.shape[0], a.shape[0] + 1, (2,), generator=generator))
        top, left = min(0, dr), min(0, dc)
        union = torch.zeros(max(a.shape[0], dr + b.shape[0]) - top, max(a.shape[1], dc + b.shape[1]) - left,
                            dtype=torch.bool)
        union[-top:-top + a.shape[0], -left:-left + a.shape[1]] |= a
        union[dr - top:dr - top + b.shape[0], dc - left:dc - left + b.shape[1]] |= b
        if max(union.shape) <= CANVAS - 2 and int(union.sum()) >= MERGED_PIXELS and _one_blob(union):
            return union


def _two_colour_patch(generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """A shape whose pixels above (or left of) its middle take one palette colour and the rest another."""
    mask = _shape_masks()[SHAPES[_pick(len(SHAPES), generator)]]
    first, second = torch.randperm(len(COLOURS), generator=generator)[:2].tolist()
    half = torch.zeros_like(mask)
    if _pick(2, generator):
        half[: mask.shape[0] // 2] = True
    else:
        half[:, : mask.shape[1] // 2] = True
    patch = torch.where(half, PALETTE[first][:, None, None], PALETTE[second][:, None, None])
    return mask, patch


def _add_mush(image: Tensor, painted: Tensor, generator: torch.Generator | None) -> Tensor:
    """MUSH_PIXELS single pixels of random palette colours, each at least one pixel away from painted pixels."""
    near = F.max_pool2d(painted[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    free = torch.nonzero(~near)
    for r, c in free[torch.randperm(len(free), generator=generator)[:MUSH_PIXELS]].tolist():
        image[:, r, c] = PALETTE[_pick(len(COLOURS), generator)]
    return image


def render_invalid(kind: str, generator: torch.Generator | None = None) -> Tensor:
    """An image of one of the INVALID_KINDS, float [3, CANVAS, CANVAS] in [-1, 1]."""
    if kind not in INVALID_KINDS:
        raise ValueError(f"kind must be one of {INVALID_KINDS}; got {kind!r}")
    if kind == "empty":
        return background(generator)
    if kind == "too_many":
        masks = [_shape_masks()["square"]] * 3 + [_shape_masks()[SHAPES[_pick(2, generator)]] for _ in range(2)]
        items = [(m, _solid(m, PALETTE[_pick(len(COLOURS), generator)])) for m in masks]
        return _compose(items, generator, extras=False)[0]
    if kind == "mush":
        return _add_mush(*_compose([], generator), generator)
    if kind == "two_colours":
        return _compose([_two_colour_patch(generator)], generator)[0]
    if kind == "unknown_shape":
        shapes = unknown_shapes()
        mask = shapes[_pick(len(shapes), generator)]
        rgb = PALETTE[_pick(len(COLOURS), generator)]
    elif kind == "merged":
        mask, rgb = _merged_mask(generator), PALETTE[_pick(len(COLOURS), generator)]
    else:  # foreign_colour
        mask = _shape_masks()[SHAPES[_pick(len(SHAPES), generator)]]
        rgb = FOREIGN_COLOURS[_pick(len(FOREIGN_COLOURS), generator)]
    return _compose([(mask, _solid(mask, rgb))], generator)[0]
