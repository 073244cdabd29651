"""Can the toy model learn the layout a spatial prompt implies at high noise? A short probe. Not a test: it prints
figures.

    python -m research.toy.train_recipe --work runs/recipe   # its first stage writes runs/recipe/base.safetensors,
                                                             # the model before the layout stage (stop it there)
    python -m research.toy_layout_probe --arm slots-from-file --weights runs/recipe/base.safetensors --steps 300

Trains on spatial train prompts only, at t uniform in [0, --t-max) (or exactly --t-max with --fixed-t), with stable
targets (``stable_target``, K = 16 scenes per prompt), batch 32, lr 1e-3 (warm-up 50); every 100 steps it prints the
column displacement of the mean x̂1 at t = 0.02 over 16 train and 16 held-out left/right prompts
(``toy_spatial_direction.mean_displacement``; the data's own E[x1 | y] gives about +6.75 px). Arms:

- ``mean``: a fresh width-64 model as shipped (adaLN from the mean prompt embedding);
- ``slots``: the same with ``prompt_slots`` (adaLN also reads the token embeddings in their slots);
- ``slots-from-file``: ``--weights`` (default: the shipped file) with zero-initialised prompt slots added if it
  has none. From the model as it was before the layout stage (step 14000): +6.32 px on training pairs
  and +6.44 px on held-out ones at step 300 (+0.07 / +0.08 at step 200).
"""

from __future__ import annotations

import argparse
import time

import torch

from rfmi_core.toy.model import ToyFlowTransformer
from rfmi_core.toy.prompts import parse_prompt, prompt_specs, prompts, tokenize_batch
from research.toy.stable_target import stf_velocity_target
from research.toy.train_model import load_toy_model, toy_config
from rfmi_core.toy.world import sample_scenes
from benchmarks.toy_spatial_direction import mean_displacement  # noqa: E402  (namespace package, repo root)

ARMS = ("mean", "slots", "slots-from-file")


def horizontal(split: str) -> list[str]:
    return [t for t in prompts("spatial", split) if parse_prompt(t).relation in ("left", "right")][:16]


def layout_share_of_loss(prompt_count: int = 12, per_prompt: int = 400) -> tuple[float, float, float]:
    """Per-value MSE of clean images around (their prompt's mean image, the mean of the prompt and its mirror (no
    direction), a spatially flat mean): how much of the t → 0 loss the layout a prompt implies accounts for."""
    g = torch.Generator().manual_seed(0)
    specs = [s for s in prompt_specs("spatial", "train") if s.relation in ("left", "right")][:prompt_count]
    sums = [0.0, 0.0, 0.0]
    for spec in specs:
        mirror = type(spec)("spatial", spec.objects, relation={"left": "right", "right": "left"}[spec.relation])
        images, mirrored = sample_scenes(spec, per_prompt, g), sample_scenes(mirror, per_prompt, g)
        pooled = torch.cat([images, mirrored]).mean(0)
        for i, centre in enumerate((images.mean(0), pooled, pooled.mean((1, 2), keepdim=True))):
            sums[i] += float((images - centre).square().mean()) / len(specs)
    return tuple(sums)


def probe_model(arm: str, weights: str | None = None) -> ToyFlowTransformer:
    torch.manual_seed(0)
    if arm == "slots-from-file":
        return load_toy_model(weights, toy_config(prompt_slots=True)).train()
    return ToyFlowTransformer(toy_config(width=64, prompt_slots=arm == "slots"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=ARMS, required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--t-max", type=float, default=0.1)
    parser.add_argument("--fixed-t", action="store_true", help="train at t = --t-max only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", default=None, help="slots-from-file: the model to start from (default: shipped)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    specs = prompt_specs("spatial", "train")
    model = probe_model(args.arm, args.weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    batch, k, began = 32, 16, time.time()
    own, no_direction, flat = layout_share_of_loss()
    print(f"MSE of clean images around their prompt's mean image {own:.4f}, around the prompt-and-mirror mean (no "
          f"direction) {no_direction:.4f}, around a flat mean {flat:.4f}: the direction is "
          f"{100 * (no_direction - own) / no_direction:.1f} % of the t → 0 loss")
    print("| step | loss | mean-x̂1 displacement at t = 0.02, train | held-out | seconds |\n|---|---|---|---|---|")
    for step in range(args.steps):
        g = torch.Generator().manual_seed(step)
        picked = torch.randint(0, len(specs), (batch,), generator=g).tolist()
        references = torch.stack([sample_scenes(specs[i], k, g) for i in picked])
        x1 = references[:, 0]
        t = torch.full((batch,), args.t_max) if args.fixed_t else args.t_max * torch.rand(batch, generator=g)
        x_t = t.view(-1, 1, 1, 1) * x1 + (1 - t.view(-1, 1, 1, 1)) * torch.randn(x1.shape, generator=g)
        prediction = model(x_t, t, tokenize_batch([specs[i].text for i in picked]))
        loss = (prediction - stf_velocity_target(x_t, t, references)).square().mean()
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 50)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 100 == 0:
            model.eval()
            with torch.no_grad():
                shown = [mean_displacement(model, horizontal(split), 0.02, 32)[0] for split in ("train", "heldout")]
            model.train()
            print(f"| {step + 1} | {loss.item():.4f} | {shown[0]:+.2f} | {shown[1]:+.2f} | {time.time() - began:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
