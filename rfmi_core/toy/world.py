"""The toy compositional world: scenes of 1–4 coloured shapes on a flat grey 16×16 background, in [-1, 1].

Design (each choice removes a shortcut the MI ranking could take instead of prompt alignment, or makes the world
learnable by a small CPU-trained model without making it less compositional):

- Shapes: square = 4×4 filled (16 px), disk = 5×5 without its 4 corner pixels (21 px), cross = 6×6 plus with 2-px
  arms (20 px). Filled shapes with the 4-fold symmetry of a square, disk or plus cannot all have the same pixel count
  at these sizes (about a pixel centre a symmetric shape has 1 mod 4 pixels, about a pixel corner 0 mod 4; the equal
  counts that exist, 9, 12, 16 and 21, make two of the shapes identical), so the ink differs by at most 5 px
  (max/min 1.31). Every pair of shapes differs in at least 7 pixels at any placement, so the judge can tell them apart
  with a 3-pixel tolerance.
- Colours: saturated corners of the RGB cube, red (1,-1,-1), green (-1,1,-1), blue (-1,-1,1), yellow (1,1,-1); each
  lies 1.63 or more from every grey and 2.0 or more from the others.
- Background: one flat grey level per image, uniform in [-0.5, 0.5] and drawn independently of the prompt, so
  lightness carries no prompt information (a scene's only prompt-dependent pixels are its shapes' ink). The earlier
  world added a smooth achromatic texture and a faint tint; both were equally prompt-independent and only made the
  background harder to draw (its models drew stray specks), so they are gone: the shortcut control is the
  independence of the background from the prompt, which the flat level keeps.
- Layout: every footprint inside the canvas with its top-left pixel on the even grid (row, col ∈ {0, 2, 4, …}; GRID),
  footprints at least one empty pixel apart; positions uniform among the layouts that satisfy the prompt (vectorised
  rejection sampling). The grid is the toy model's 2×2 patch grid: each shape then has one pixel pattern per patch
  (its phase against the patches never varies), which makes shapes learnable by a small model; composition is
  untouched (any object may still go anywhere on a 6×6 (disk, cross) or 7×7 (square) grid of positions, in any relation). The judge does
  not rely on the grid: it matches shapes at every pixel offset.
- Spatial relations compare footprint centres: "A left of B" when B's centre is at least SPATIAL_MARGIN px to the
  right of A's and that horizontal distance exceeds the vertical one (so the four relations exclude each other).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from .prompts import CATEGORIES, COLOURS, MAX_COUNT, SHAPES, PromptSpec, parse_prompt, prompt_specs

__all__ = [
    "CANVAS", "PALETTE", "MAX_OBJECTS", "GAP", "GRID", "SPATIAL_MARGIN", "BACKGROUND_LEVELS", "shape_mask", "SHAPE_PIXELS", "SceneObject", "Scene", "relation_holds", "background",
    "paint", "render", "sample_positions", "sample_many_positions", "sample_layout", "sample_scene", "sample_scenes", "random_scene", "satisfies",
    "random_training_pair", "random_training_batch",
]

CANVAS = 16
PALETTE = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])  # COLOURS order
MAX_OBJECTS = MAX_COUNT
GAP = 1
GRID = 2  # sampled footprints start on multiples of GRID (the toy model's patch size)
SPATIAL_MARGIN = 3.0
BACKGROUND_LEVELS = (-0.5, 0.5)


@lru_cache(maxsize=None)
def _shape_masks() -> dict[str, Tensor]:
    square = torch.ones(4, 4, dtype=torch.bool)
    disk = torch.ones(5, 5, dtype=torch.bool)
    disk[0, 0] = disk[0, 4] = disk[4, 0] = disk[4, 4] = False
    cross = torch.zeros(6, 6, dtype=torch.bool)
    cross[2:4, :] = cross[:, 2:4] = True
    return {"square": square, "disk": disk, "cross": cross}


def shape_mask(shape: str) -> Tensor:
    """The shape's pixels in its footprint, bool [h, w] (a copy)."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}; got {shape!r}")
    return _shape_masks()[shape].clone()


SHAPE_PIXELS = {shape: int(shape_mask(shape).sum()) for shape in SHAPES}


@dataclass(frozen=True)
class SceneObject:
    """One object: its colour, shape and the top-left pixel (row, col) of its footprint."""

    colour: str
    shape: str
    row: int
    col: int

    def __post_init__(self):
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}; got {self.colour!r}")
        size = shape_mask(self.shape).shape[0]
        if not (0 <= self.row <= CANVAS - size and 0 <= self.col <= CANVAS - size):
            raise ValueError(f"row, col must keep the {size}×{size} {self.shape} inside the {CANVAS}×{CANVAS} canvas; "
                             f"got ({self.row}, {self.col})")

    @property
    def size(self) -> int:
        return _shape_masks()[self.shape].shape[0]

    @property
    def centre(self) -> tuple[float, float]:
        """(row, col) of the footprint centre, which is also the centroid of the shape's pixels."""
        half = (self.size - 1) / 2
        return self.row + half, self.col + half


@dataclass(frozen=True)
class Scene:
    """The objects of one image. The GAP rule is the samplers' job, not checked here: the judge's perceived scenes
    may break it."""

    objects: tuple[SceneObject, ...]


def relation_holds(first: tuple, second: tuple, relation: str):
    """Whether ``first`` (row, col) centre is <relation> ``second``; works on floats or on tensors element-wise."""
    d_row, d_col = second[0] - first[0], second[1] - first[1]
    along, across = {"left": (d_col, d_row), "right": (-d_col, d_row),
                     "above": (d_row, d_col), "below": (-d_row, d_col)}[relation]
    return (along >= SPATIAL_MARGIN) & (along > abs(across))


def background(generator: torch.Generator | None = None) -> Tensor:
    """A flat grey image at a level uniform in BACKGROUND_LEVELS: float [3, CANVAS, CANVAS]."""
    low, high = BACKGROUND_LEVELS
    level = low + (high - low) * torch.rand((), generator=generator)
    return torch.full((3, CANVAS, CANVAS), float(level))


def paint(image: Tensor, mask: Tensor, row: int, col: int, rgb: Tensor) -> Tensor:
    """Sets the pixels of ``mask`` [h, w] placed at (row, col) to ``rgb`` [3], in place; returns ``image``."""
    h, w = mask.shape
    region = image[:, row:row + h, col:col + w]
    region[:, mask] = rgb[:, None].to(image.dtype)
    return image


def render(scene: Scene, generator: torch.Generator | None = None) -> Tensor:
    """The scene's image, float [3, CANVAS, CANVAS] in [-1, 1]; ``generator`` draws the background."""
    image = background(generator)
    for obj in scene.objects:
        paint(image, _shape_masks()[obj.shape], obj.row, obj.col, PALETTE[COLOURS.index(obj.colour)])
    return image


def _layout_ok(rows: Tensor, cols: Tensor, sizes: list[tuple[int, int]]) -> Tensor:
    """[R] bool: whether each of R candidate layouts keeps every pair of (h, w) footprints GAP pixels apart."""
    ok = torch.ones(rows.shape[0], dtype=torch.bool)
    for i, (hi, wi) in enumerate(sizes):
        for j, (hj, wj) in enumerate(sizes[:i]):
            ok &= ((rows[:, i] + hi + GAP <= rows[:, j]) | (rows[:, j] + hj + GAP <= rows[:, i])
                   | (cols[:, i] + wi + GAP <= cols[:, j]) | (cols[:, j] + wj + GAP <= cols[:, i]))
    return ok


def sample_positions(sizes: list[tuple[int, int]], generator: torch.Generator | None = None,
                     relation: str | None = None, batch: int = 512, max_batches: int = 200) -> list[tuple[int, int]]:
    """Top-left (row, col) per (h, w) footprint, on multiples of GRID, uniform among the layouts that keep GAP pixels
    between footprints (and, with ``relation``, put footprint 0 <relation> footprint 1). Raises RuntimeError if none
    is found."""
    if not sizes:
        return []
    return sample_many_positions(sizes, 1, generator, relation, batch, max_batches)[0]


def sample_many_positions(sizes: list[tuple[int, int]], k: int, generator: torch.Generator | None = None,
                          relation: str | None = None, batch: int = 512,
                          max_batches: int = 200) -> list[list[tuple[int, int]]]:
    """``k`` independent layouts of ``sample_positions`` (each uniform among the valid ones), taken from as few
    rejection batches as hold k hits: the first k accepted candidates, in draw order."""
    found: list[list[tuple[int, int]]] = []
    for _ in range(max_batches):
        rows = torch.stack([GRID * torch.randint(0, (CANVAS - h) // GRID + 1, (batch,), generator=generator)
                            for h, _ in sizes], 1)
        cols = torch.stack([GRID * torch.randint(0, (CANVAS - w) // GRID + 1, (batch,), generator=generator)
                            for _, w in sizes], 1)
        ok = _layout_ok(rows, cols, sizes)
        if relation is not None:
            centre_r = rows[:, :2] + torch.tensor([(h - 1) / 2 for h, _ in sizes[:2]])
            centre_c = cols[:, :2] + torch.tensor([(w - 1) / 2 for _, w in sizes[:2]])
            ok &= relation_holds((centre_r[:, 0], centre_c[:, 0]), (centre_r[:, 1], centre_c[:, 1]), relation)
        for i in torch.nonzero(ok).flatten()[: k - len(found)].tolist():
            found.append(list(zip(rows[i].tolist(), cols[i].tolist())))
        if len(found) == k:
            return found
    raise RuntimeError(f"no layout found for footprints {sizes} (relation {relation!r}) in {batch * max_batches} draws")


def sample_layout(shapes: list[str], generator: torch.Generator | None = None,
                  relation: str | None = None) -> list[tuple[int, int]]:
    """Top-left (row, col) per shape: ``sample_positions`` of the shapes' footprints."""
    return sample_positions([tuple(_shape_masks()[s].shape) for s in shapes], generator, relation)


def _as_spec(prompt: PromptSpec | str) -> PromptSpec:
    return prompt if isinstance(prompt, PromptSpec) else parse_prompt(prompt)


def sample_scene(prompt: PromptSpec | str, generator: torch.Generator | None = None) -> Scene:
    """A random scene that satisfies ``prompt``: exactly the named objects, nothing else, placed at random."""
    spec = _as_spec(prompt)
    named = _named_objects(spec)
    return _placed(named, sample_layout([shape for _, shape in named], generator, spec.relation))


def _named_objects(spec: PromptSpec) -> list[tuple[str, str]]:
    """The (colour, shape) of every object a prompt asks for: its objects, each ``counts`` times for numeracy."""
    return [obj for obj, n in zip(spec.objects, spec.counts or (1,) * len(spec.objects)) for _ in range(n)]


def _placed(named: list[tuple[str, str]], layout: list[tuple[int, int]]) -> Scene:
    return Scene(tuple(SceneObject(c, s, r, k) for (c, s), (r, k) in zip(named, layout)))


def sample_scenes(prompt: PromptSpec | str, k: int, generator: torch.Generator | None = None) -> Tensor:
    """The images of ``k`` independent ``sample_scene`` draws for one prompt, [k, 3, CANVAS, CANVAS], from one
    vectorised rejection batch (the reference images of the stable-target trainer: many per prompt per step)."""
    spec = _as_spec(prompt)
    named = _named_objects(spec)
    layouts = sample_many_positions([tuple(_shape_masks()[s].shape) for _, s in named], k, generator, spec.relation)
    return torch.stack([render(_placed(named, layout), generator) for layout in layouts])


def random_scene(generator: torch.Generator | None = None, num_objects: int | None = None) -> Scene:
    """1–MAX_OBJECTS objects (or ``num_objects``) of random colours and shapes, placed at random."""
    n = num_objects or int(torch.randint(1, MAX_OBJECTS + 1, (), generator=generator))
    colours = torch.randint(0, len(COLOURS), (n,), generator=generator).tolist()
    shapes = [SHAPES[i] for i in torch.randint(0, len(SHAPES), (n,), generator=generator).tolist()]
    layout = sample_layout(shapes, generator)
    return Scene(tuple(SceneObject(COLOURS[c], s, r, k) for c, s, (r, k) in zip(colours, shapes, layout)))


def satisfies(scene: Scene, prompt: PromptSpec | str) -> bool:
    """Ground truth. binding: exactly the two named objects; spatial: exactly the two, in the named relation;
    numeracy: exactly the named count of each named colour–shape, nothing else."""
    spec = _as_spec(prompt)
    found = sorted((o.colour, o.shape) for o in scene.objects)
    if found != sorted(_named_objects(spec)):
        return False
    if spec.category != "spatial":
        return True
    objs = scene.objects
    return any(bool(relation_holds(a.centre, b.centre, spec.relation))
               for a in objs for b in objs if a is not b
               and (a.colour, a.shape) == spec.objects[0] and (b.colour, b.shape) == spec.objects[1])


def _training_specs(category: str, numeracy_groups: int) -> list[PromptSpec]:
    return [s for s in prompt_specs(category, "train") if len(s.objects) <= numeracy_groups or category != "numeracy"]


def random_training_pair(generator: torch.Generator | None = None, categories: tuple[str, ...] = CATEGORIES,
                         numeracy_groups: int = 2) -> tuple[Tensor, str]:
    """(image [3, CANVAS, CANVAS], prompt text): a category of ``categories`` uniformly, a train-split prompt
    uniformly (numeracy: of at most ``numeracy_groups`` counted groups), a scene for it."""
    category = categories[int(torch.randint(0, len(categories), (), generator=generator))]
    specs = _training_specs(category, numeracy_groups)
    spec = specs[int(torch.randint(0, len(specs), (), generator=generator))]
    return render(sample_scene(spec, generator), generator), spec.text


def random_training_batch(n: int, generator: torch.Generator | None = None, categories: tuple[str, ...] = CATEGORIES,
                          numeracy_groups: int = 2) -> tuple[Tensor, list[str]]:
    """``n`` draws of ``random_training_pair``: images [n, 3, CANVAS, CANVAS] and their prompt texts."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown or not categories:
        raise ValueError(f"categories must be a non-empty subset of {CATEGORIES}; got {tuple(categories)}")
    if numeracy_groups not in (1, 2):
        raise ValueError(f"numeracy_groups must be 1 (one counted group, the first shipped stages' world) or 2; "
                         f"got {numeracy_groups!r}")
    pairs = [random_training_pair(generator, tuple(categories), numeracy_groups) for _ in range(n)]
    return torch.stack([image for image, _ in pairs]), [text for _, text in pairs]
