"""Where the toy model's spatial relations go wrong: the axis (horizontal / vertical) or the direction. Not a test:
it prints figures.

    python benchmarks/toy_spatial_direction.py [--weights W] [--split train] [--n 200]

(1) Relation confusion: spatial prompts of ``--split`` sampled as the demo samples them (CFG 3, 20 Euler steps); for
each image whose judge sees a valid scene with exactly the two named objects, the relation that holds between their
centres (``world.relation_holds``; "none" when no relation holds), per prompted relation.

(2) The posterior mean at high noise: for left / right prompts, images of the world x1 noised to x_t = t·x1 + (1−t)·ε,
the model's x̂1 = x_t + (1 − t)·u(x_t | y) (paper convention), averaged over the noise draws, and the column
displacement of the second named object's colour from the first's in that average, signed along the prompted relation
(positive = the relation's direction); beside it the same on the clean images (per image, averaged) and on their mean.
The average of x̂1 over draws of x_t estimates E[x1 | y] at every t (E over x_t of E[x1 | x_t, y]), so a calibrated
model matches the mean clean image's column at every t; one that never learnt the layout a prompt implies shows a flat
average (≈ 0 px) at small t, where x_t has too little of x1 to read the layout from. (Centroids of single noisy x̂1,
this script's first version, shrink toward the canvas centre with the leftover noise: averaging first removes it.)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: research/ beside rfmi_core/

import argparse
import collections

import torch

from rfmi_core.toy.evaluate import generate, pick_prompts
from rfmi_core.toy.judge import perceive
from rfmi_core.toy.prompts import COLOURS, RELATIONS, parse_prompt, prompts, tokenize_batch
from research.toy.train_model import load_toy_model
from rfmi_core.toy.world import PALETTE, relation_holds, render, sample_scene


def observed_relation(text: str, perception) -> str:
    """The relation between the prompt's two objects as the judge perceives them, or why there is none to read."""
    spec = parse_prompt(text)
    objects = perception.scene.objects
    first = [o for o in objects if (o.colour, o.shape) == spec.objects[0]]
    second = [o for o in objects if (o.colour, o.shape) == spec.objects[1]]
    if not (perception.valid and len(first) == len(second) == 1 and len(objects) == 2):
        return "not the two objects"
    held = [r for r in RELATIONS if relation_holds(first[0].centre, second[0].centre, r)]
    return held[0] if held else "none"


def colour_column(images: torch.Tensor, colour: str) -> torch.Tensor:
    """[N] column centroid of each image's ink of ``colour`` (pixels weighted by their positive match to it)."""
    rgb = PALETTE[COLOURS.index(colour)]
    weight = ((images * rgb[None, :, None, None]).sum(1) / 3).clamp(min=0)  # [N, H, W]
    columns = torch.arange(images.shape[-1], dtype=torch.float32)
    return (weight.sum(1) * columns).sum(-1) / weight.sum((1, 2)).clamp(min=1e-6)


@torch.no_grad()
def mean_displacement(model, texts: list[str], t: float, per_prompt: int = 64) -> tuple[float, float, float]:
    """(mean of the model's x̂1 over noise draws, clean x1 per image, the mean clean image): column displacement of the
    second object's colour from the first's, signed along the prompted relation. Both means estimate E[x1 | y]."""
    model_d, data_d, mean_d = [], [], []
    for text in texts:
        spec = parse_prompt(text)
        (c1, _), (c2, _) = spec.objects
        sign = 1.0 if spec.relation == "left" else -1.0
        g = torch.Generator().manual_seed(0)
        x1 = torch.stack([render(sample_scene(spec, g), g) for _ in range(per_prompt)])
        x_t = t * x1 + (1 - t) * torch.randn(x1.shape, generator=g)
        x1_hat = x_t + (1 - t) * model(x_t, torch.full((per_prompt,), t), tokenize_batch([text] * per_prompt))
        data_d.append(sign * float((colour_column(x1, c2) - colour_column(x1, c1)).mean()))
        for store, images in ((model_d, x1_hat), (mean_d, x1)):
            mean_image = images.mean(0, keepdim=True)
            store.append(sign * float(colour_column(mean_image, c2) - colour_column(mean_image, c1)))
    return tuple(sum(d) / len(d) for d in (model_d, data_d, mean_d))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="toy weights (default: the shipped file)")
    parser.add_argument("--split", default="train", help="prompt split: train, heldout, finetune or evaluation")
    parser.add_argument("--n", type=int, default=200, help="images for the confusion table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_toy_model(args.weights)
    texts = pick_prompts(prompts("spatial", args.split), args.n, 1)
    images, _ = generate(model, texts, list(range(5000, 5000 + len(texts))))
    table = collections.defaultdict(collections.Counter)
    for text, perception in zip(texts, perceive(images)):
        table[parse_prompt(text).relation][observed_relation(text, perception)] += 1
    columns = [*RELATIONS, "none", "not the two objects"]
    print(f"(1) {args.split} spatial prompts, {len(texts)} images: prompted relation (rows) against the one seen")
    print("| prompted | " + " | ".join(columns) + " | as prompted |")
    print("|---" * (len(columns) + 2) + "|")
    for relation in RELATIONS:
        row = table[relation]
        print(f"| {relation} | " + " | ".join(str(row[c]) for c in columns)
              + f" | {row[relation] / max(1, sum(row.values())):.0%} |")
    horizontal = [t for t in prompts("spatial", args.split) if parse_prompt(t).relation in ("left", "right")][:16]
    print(f"\n(2) mean column displacement along the prompted relation, px ({len(horizontal)} left/right prompts × 64)")
    print("| t | mean of model x̂1 | clean x1 | mean clean image (E[x1 | y]) |\n|---|---|---|---|")
    for t in (0.02, 0.1, 0.2, 0.35):
        got, data, mean = mean_displacement(model, horizontal, t)
        print(f"| {t} | {got:+.2f} | {data:+.2f} | {mean:+.2f} |")


if __name__ == "__main__":
    main()
