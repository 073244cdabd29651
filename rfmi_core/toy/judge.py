"""The toy world's exact judge: is an image a valid scene, and does it show what the prompt asks? From pixels alone.

1. Pixel colours: each pixel goes to the nearest of the four palette colours (RGB distance) or to the background,
   whose distance is the pixel's distance to the grey diagonal (its chroma), so any grey level and any achromatic
   texture is background. A pixel farther than FOREIGN_DISTANCE from all five is "foreign" (magenta, cyan, ...).
2. Connected components of equal class, 4-connected (objects keep a 1-px gap, so no object touches another).
   Components of at most SPECK_PIXELS pixels are noise specks: ignored, but their pixels are counted as strays.
3. Shape: each component is compared with every placement of every shape (the symmetric difference in pixels, one
   matrix product); the best placement within SHAPE_TOLERANCE pixels names the shape and its footprint. Shapes differ
   in ≥ 7 pixels at any placement, so a match within 3 is unique.
4. Valid unless: a foreign-coloured component, a component that matches no shape (unknown blob, wrong size, merged
   objects, an object split between colours), no object, more than MAX_OBJECTS objects, or more than
   MAX_STRAY_PIXELS stray pixels (colour mush).
5. Correct = valid and the perceived scene satisfies the prompt under the world's own rule (``world.satisfies``):
   binding exactly the two named objects, spatial exactly the two in the named relation of their centres,
   numeracy exactly the named number of each named colour–shape and nothing else.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import Tensor

from .prompts import COLOURS, SHAPES, PromptSpec, parse_prompt
from .world import CANVAS, MAX_OBJECTS, PALETTE, Scene, SceneObject, _shape_masks, satisfies

__all__ = ["FOREIGN_DISTANCE", "SPECK_PIXELS", "SHAPE_TOLERANCE", "MAX_STRAY_PIXELS", "Verdict", "Perception",
           "classify_pixels", "connected_components", "perceive", "judge"]

FOREIGN_DISTANCE = 1.1
SPECK_PIXELS = 2
SHAPE_TOLERANCE = 3
MAX_STRAY_PIXELS = 8
FOREIGN = len(COLOURS) + 1  # pixel classes: 0 background, 1..4 COLOURS, 5 foreign


@dataclass(frozen=True)
class Perception:
    """What the judge sees in one image: ``scene`` holds the shapes it recognised (also when invalid)."""

    valid: bool
    scene: Scene
    reasons: tuple[str, ...]
    strays: int


@dataclass(frozen=True)
class Verdict:
    """``details``: "scene" (perceived Scene), "reasons" (why invalid; empty when valid), "strays" (speck pixels)."""

    valid: bool
    correct: bool
    details: dict = field(default_factory=dict)


def classify_pixels(images: Tensor) -> Tensor:
    """[B, 3, H, W] in [-1, 1] → long [B, H, W]: 0 background, 1..4 the COLOURS, FOREIGN for none of them."""
    pixels = images.float()
    square = (pixels * pixels).sum(1)  # ‖p‖², [B, H, W]
    chroma2 = square - pixels.sum(1) ** 2 / 3  # squared distance to the grey diagonal
    palette = PALETTE.to(pixels.device)
    to_palette2 = square[:, None] - 2 * torch.einsum("bchw,kc->bkhw", pixels, palette) + (palette**2).sum(1)[:, None, None]
    nearest2, classes = torch.cat([chroma2[:, None], to_palette2], dim=1).min(dim=1)
    classes[nearest2 > FOREIGN_DISTANCE**2] = FOREIGN
    return classes


def connected_components(classes: Tensor) -> Tensor:
    """long [B, H, W] → component ids [B, H, W] (4-connected, same class; 0 for background), unique per image.

    Each pixel starts with its own id and takes the largest id among its same-class neighbours until nothing changes.
    """
    batch, height, width = classes.shape
    foreground = classes > 0
    labels = torch.arange(1, height * width + 1, dtype=torch.int32).reshape(1, height, width) * foreground
    down = ((classes[:, 1:] == classes[:, :-1]) & foreground[:, 1:]).int()  # [B, H-1, W]: pixel and the one above
    right = ((classes[:, :, 1:] == classes[:, :, :-1]) & foreground[:, :, 1:]).int()  # [B, H, W-1]
    while True:
        grown = labels.clone()
        grown[:, 1:] = torch.maximum(grown[:, 1:], labels[:, :-1] * down)
        grown[:, :-1] = torch.maximum(grown[:, :-1], labels[:, 1:] * down)
        grown[:, :, 1:] = torch.maximum(grown[:, :, 1:], labels[:, :, :-1] * right)
        grown[:, :, :-1] = torch.maximum(grown[:, :, :-1], labels[:, :, 1:] * right)
        if torch.equal(grown, labels):
            return labels.long()
        labels = grown


@lru_cache(maxsize=None)
def _placements() -> tuple[Tensor, list[int], list[int], list[int]]:
    """Every in-canvas placement of every shape: masks float [CANVAS², P], and shape index, row, col per placement."""
    masks, shape_ids, rows, cols = [], [], [], []
    for s, shape in enumerate(SHAPES):
        mask = _shape_masks()[shape]
        size = mask.shape[0]
        for r in range(CANVAS - size + 1):
            for c in range(CANVAS - size + 1):
                canvas = torch.zeros(CANVAS, CANVAS)
                canvas[r:r + size, c:c + size] = mask.float()
                masks.append(canvas.flatten())
                shape_ids.append(s)
                rows.append(r)
                cols.append(c)
    return torch.stack(masks, 1), shape_ids, rows, cols


def _components(labels: Tensor, classes: Tensor) -> tuple[list[int], list[int], list[int], Tensor]:
    """Per component: image index, class, size, and its mask float [K, CANVAS²] (background excluded)."""
    batch = labels.shape[0]
    flat = labels.flatten(1)
    key = torch.arange(batch, device=labels.device)[:, None] * (flat.shape[1] + 1) + flat
    foreground = flat > 0
    keys, inverse, sizes = torch.unique(key[foreground], return_inverse=True, return_counts=True)
    masks = torch.zeros(keys.numel(), flat.shape[1])
    pixel = torch.arange(flat.shape[1]).expand(batch, -1)[foreground]
    masks[inverse, pixel] = 1.0
    first = torch.zeros(keys.numel(), dtype=torch.long).scatter_(0, inverse, pixel)
    image_of = (keys // (flat.shape[1] + 1)).tolist()
    class_of = classes.flatten(1)[torch.tensor(image_of, dtype=torch.long), first].tolist() if keys.numel() else []
    return image_of, class_of, sizes.tolist(), masks


def _best_placements(masks: Tensor) -> tuple[list[float], list[int]]:
    """Per component mask [K, CANVAS²]: the smallest symmetric difference to any placed shape, and that placement."""
    if masks.shape[0] == 0:
        return [], []
    bank = _placements()[0]
    mismatch = masks.sum(1, keepdim=True) + bank.sum(0) - 2 * masks @ bank  # [K, P]
    values, index = mismatch.min(dim=1)
    return values.tolist(), index.tolist()


@contextmanager
def _one_thread():
    """The judge's tensors are tiny (B × 256): one intra-op thread runs them many times faster than a contended pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def perceive(images: Tensor) -> list[Perception]:
    """What each image of a batch [B, 3, CANVAS, CANVAS] shows (see the module docstring for the rules)."""
    with _one_thread():
        classes = classify_pixels(images)
        image_of, class_of, sizes, masks = _components(connected_components(classes), classes)
        blobs = [k for k, size in enumerate(sizes) if size > SPECK_PIXELS]  # specks need no shape
        best_mismatch, best = _best_placements(masks[blobs])
    _, shape_ids, rows, cols = _placements()
    match = {k: (best_mismatch[i], best[i]) for i, k in enumerate(blobs)}
    found: list[list] = [[] for _ in range(images.shape[0])]
    for k, b in enumerate(image_of):
        found[b].append((class_of[k], sizes[k], *match.get(k, (None, None))))
    out = []
    for items in found:
        reasons, objects, strays = [], [], 0
        for cls, size, miss, p in items:
            if size <= SPECK_PIXELS:
                strays += size
            elif cls == FOREIGN:
                reasons.append(f"{size}-px blob of a colour outside the palette")
            elif miss > SHAPE_TOLERANCE:
                reasons.append(f"{size}-px {COLOURS[cls - 1]} blob of no known shape ({miss:.0f} px off the nearest)")
            else:
                objects.append(SceneObject(COLOURS[cls - 1], SHAPES[shape_ids[p]], rows[p], cols[p]))
        if not objects and not reasons:
            reasons.append("no object")
        if len(objects) > MAX_OBJECTS:
            reasons.append(f"{len(objects)} objects (at most {MAX_OBJECTS})")
        if strays > MAX_STRAY_PIXELS:
            reasons.append(f"{strays} stray coloured pixels (at most {MAX_STRAY_PIXELS})")
        out.append(Perception(not reasons, Scene(tuple(objects)), tuple(reasons), strays))
    return out


def _batch(image: Tensor) -> Tensor:
    image = torch.as_tensor(image)
    if image.ndim not in (3, 4) or tuple(image.shape[-3:]) != (3, CANVAS, CANVAS):
        raise ValueError(f"image must be [3, {CANVAS}, {CANVAS}] or [B, 3, {CANVAS}, {CANVAS}]; got {tuple(image.shape)}")
    if not bool(torch.isfinite(image).all()):
        raise ValueError("image holds NaN/Inf values; expected finite pixels in [-1, 1]")
    return image.detach().cpu().reshape(-1, 3, CANVAS, CANVAS)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> PromptSpec:
    return parse_prompt(text)


def judge(image: Tensor, prompt: str | PromptSpec | list) -> Verdict | list[Verdict]:
    """Verdict(s) for one image [3, 16, 16] or a batch [B, 3, 16, 16] (one prompt for all, or a list of B prompts)."""
    batch = _batch(image)
    prompt_list = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * batch.shape[0]
    if len(prompt_list) != batch.shape[0]:
        raise ValueError(f"prompt must be one prompt or one per image ({batch.shape[0]}); got {len(prompt_list)}")
    specs = [p if isinstance(p, PromptSpec) else _parse_cached(p) for p in prompt_list]
    verdicts = [Verdict(seen.valid, seen.valid and satisfies(seen.scene, spec),
                        {"scene": seen.scene, "reasons": seen.reasons, "strays": seen.strays})
                for seen, spec in zip(perceive(batch), specs)]
    return verdicts[0] if image.ndim == 3 else verdicts
