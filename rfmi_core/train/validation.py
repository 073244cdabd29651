"""Validation samples during RFMI FT: the same prompts and seeds sampled every N steps (and at step 0, the base model),
so the progress of a fine-tune can be seen.

    plan = ValidationPlan.from_data(data, every=100, prompts=4, seed=0, sigmas=sigmas, cfg=4.5)
    on_step = plan.hook(model, velocity_fn, device)      # samples at step 0 and every 100 steps
    ... train_lora(model, data, velocity_fn, config, on_step=lambda step, loss: on_step(step)) ...
    plan.samples      # {step: latents [prompts·seeds, C, ...] in the model's space}

Sampling is ``sampler.sample_with_mi``'s Euler on the given σ grid (ComfyUI's own schedule for a ComfyUI model) with
CFG against each prompt's own negative; the noise of seed s is ``torch.randn`` from a CPU generator seeded with s.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..mi.conventions import ModuleVelocity
from ..mi.sampler import check_sigma_grid, sample_with_mi

__all__ = ["ValidationPlan", "distinct_prompts", "validation_noise", "sample_validation", "image_grid"]


def _same_condition(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def distinct_prompts(data: Any, count: int) -> list[tuple[dict[str, Tensor], dict[str, Tensor]]]:
    """The (cond, uncond) of the first ``count`` distinct prompts of ``data``, in the data's order."""
    chosen: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []
    for i in range(len(data)):
        if len(chosen) == count:
            break
        _, cond, uncond = data[i]
        if not any(_same_condition(cond, c) for c, _ in chosen):
            chosen.append((cond, uncond))
    return chosen


def validation_noise(seeds: list[int], shape: tuple[int, ...]) -> Tensor:
    """[len(seeds), *shape] float32: the noise of each seed, from a CPU generator seeded with it."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])


def _repeat(condition: dict[str, Tensor], n: int, device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device).expand(n, *v.shape[1:]) for k, v in condition.items()}


@torch.no_grad()
def sample_validation(model: nn.Module, velocity_fn: ModuleVelocity, prompts: list[tuple[dict, dict]],
                      noise: Tensor, sigmas: Tensor, cfg: float, bf16: bool = False) -> Tensor:
    """Each prompt sampled from every noise (Euler, CFG ``cfg`` against its own uncond); [P·S, ...], prompt-major."""
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    n = noise.shape[0]
    out = []
    for cond, uncond in prompts:
        def velocity(x: Tensor, t: Tensor, c: dict[str, Tensor]) -> Tensor:
            with autocast:
                return velocity_fn(model, x, t, c).float()

        x, _ = sample_with_mi(velocity, noise.to(device), sigmas, _repeat(cond, n, device),
                              _repeat({**cond, **uncond}, n, device), cfg=cfg, keep_map=False)
        out.append(x.cpu())
    return torch.cat(out)


@dataclass
class ValidationPlan:
    """What to sample and when: ``prompts`` (cond, uncond) pairs, ``seeds``, the latent ``shape`` of one sample, the
    σ grid and CFG scale; ``every`` N steps (and step 0). ``samples`` collects {step: latents} as the hook runs."""

    every: int
    prompts: list[tuple[dict[str, Tensor], dict[str, Tensor]]]
    seeds: list[int]
    shape: tuple[int, ...]
    sigmas: Tensor
    cfg: float
    bf16: bool = False
    samples: dict[int, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"validation every must be an integer ≥ 1 (steps); got {self.every!r}")
        if not self.prompts or not self.seeds:
            raise ValueError("validation needs at least one prompt and one seed")
        if not math.isfinite(self.cfg) or self.cfg < 0:
            raise ValueError(f"validation cfg must be ≥ 0; got {self.cfg!r}")
        self.sigmas = check_sigma_grid(self.sigmas)

    @classmethod
    def from_data(cls, data: Any, every: int, prompts: int, seed: int, sigmas: Tensor, cfg: float,
                  images_per_prompt: int = 1, bf16: bool = False) -> "ValidationPlan":
        """The first ``prompts`` distinct prompts of the training data, seeds seed … seed + images_per_prompt − 1."""
        if prompts < 1 or images_per_prompt < 1:
            raise ValueError(f"validation needs ≥ 1 prompt and ≥ 1 image per prompt; got {prompts}, {images_per_prompt}")
        return cls(every, distinct_prompts(data, prompts), list(range(seed, seed + images_per_prompt)),
                   tuple(data[0][0].shape), torch.as_tensor(sigmas), cfg, bf16)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def hook(self, model: nn.Module, velocity_fn: ModuleVelocity) -> Callable[[int], None]:
        """``hook(step)``: samples the plan into ``samples[step]`` when the step is due (step 0 is the base model)."""

        def run(step: int) -> None:
            if self.due(step) and step not in self.samples:
                noise = validation_noise(self.seeds, self.shape)
                self.samples[step] = sample_validation(model, velocity_fn, self.prompts, noise, self.sigmas,
                                                       self.cfg, self.bf16)

        return run


def image_grid(images: Tensor, columns: int, pad: int = 2) -> Tensor:
    """Images [N, H, W, C] in [0, 1] tiled row-major into one [H', W', C] image, ``columns`` wide, white padding."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = torch.ones(rows * (h + pad) + pad, columns * (w + pad) + pad, c, dtype=images.dtype)
    for i, image in enumerate(images):
        top, left = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        grid[top:top + h, left:left + w] = image
    return grid
