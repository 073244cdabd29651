"""Runs ComfyUI's own KSampler path with a ``TrajectoryTap`` attached, exactly as the stock KSampler node would."""

from __future__ import annotations

from typing import Callable

import torch

import comfy.sample
import comfy.utils

from ..rfmi_core import MIResult
from .model_checks import require_flow_model
from .tap import TrajectoryTap

StepCallback = Callable[[int, torch.Tensor, torch.Tensor, int], None]


def sample_scored(
    model,
    noise: torch.Tensor,
    latent: dict,
    *,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive,
    negative,
    denoise: float = 1.0,
    velocity: str = "cfg",
    score: str = "rfmi",
    callback: StepCallback | None = None,
) -> tuple[torch.Tensor, MIResult]:
    """(samples in VAE space, per-image MI) for one batch; the body of the stock ``common_ksampler`` plus the tap.

    ``noise`` is the initial noise the stock KSampler would draw (``comfy.sample.prepare_noise``); ``latent`` the LATENT
    dict (its noise_mask is honoured). ``callback`` receives ComfyUI's (step, x0, x, total_steps) after the tap.
    """
    require_flow_model(model)
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    tap = TrajectoryTap(velocity=velocity, score=score)

    def on_step(step: int, x0: torch.Tensor, x: torch.Tensor, total_steps: int) -> None:
        tap.on_step(step)
        if callback is not None:
            callback(step, x0, x, total_steps)

    samples = comfy.sample.sample(
        tap.attach(model), noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
        denoise=denoise, noise_mask=latent.get("noise_mask"), callback=on_step,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed,
    )
    return samples, tap.finish()
