"""Runs ComfyUI's own KSampler path with a ``TrajectoryTap`` attached, exactly as the stock KSampler node would."""

from __future__ import annotations

import inspect
from typing import Callable

import torch

import comfy.model_management
import comfy.sample
import comfy.sampler_helpers
import comfy.samplers
import comfy.utils

from ..rfmi_core import MIResult, sigma_from_t, velocity_from_denoised
from ..rfmi_core.mi.taps import PhraseTrajectoryTap, TrajectoryTap
from .model_checks import require_flow_model

StepCallback = Callable[[int, torch.Tensor, torch.Tensor, int], None]

# LATENT keys that newer ComfyUI's fix_empty_latent_channels reads (0.38: the empty latent's downscale ratios, so an
# empty latent made for another VAE is resized to the model's); common_ksampler passes them and drops them from its
# output. ComfyUI 0.3.64's takes (model, latent_image) only: there the tuple is empty and the keys pass through.
SIZING_KEYS = tuple(p for p in ("downscale_ratio_spacial", "downscale_ratio_temporal")
                    if p in inspect.signature(comfy.sample.fix_empty_latent_channels).parameters)


def model_latent(model, latent: dict) -> torch.Tensor:
    """The LATENT's samples as the stock KSampler prepares them (``fix_empty_latent_channels``); call it once."""
    return comfy.sample.fix_empty_latent_channels(model, latent["samples"], **{k: latent.get(k) for k in SIZING_KEYS})


def output_latent(latent: dict, samples: torch.Tensor, drop: tuple[str, ...] = ()) -> dict:
    """The LATENT the stock KSampler returns: the input dict with new samples, less the sizing keys it consumed."""
    return {**{k: v for k, v in latent.items() if k not in SIZING_KEYS + drop}, "samples": samples}


def sample_scored(
    model,
    noise: torch.Tensor,
    latent_image: torch.Tensor,
    *,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive,
    negative,
    denoise: float = 1.0,
    noise_mask: torch.Tensor | None = None,
    velocity: str = "cfg",
    score: str = "rfmi",
    callback: StepCallback | None = None,
    tap: TrajectoryTap | None = None,
) -> tuple[torch.Tensor, MIResult]:
    """(samples in VAE space, per-image MI) for one batch; the body of the stock ``common_ksampler`` plus the tap.

    ``latent_image`` is the prepared latent (``model_latent``), ``noise`` the initial noise the stock KSampler would draw
    for it (``comfy.sample.prepare_noise``). ``callback`` receives ComfyUI's (step, x0, x, total_steps) after the tap.
    ``tap``: a tap of the caller's (e.g. ``phrase_tap``'s, read after the call), else a TrajectoryTap(velocity, score).
    """
    require_flow_model(model)
    tap = tap or TrajectoryTap(velocity=velocity, score=score)

    def on_step(step: int, x0: torch.Tensor, x: torch.Tensor, total_steps: int) -> None:
        tap.on_step(step)
        if callback is not None:
            callback(step, x0, x, total_steps)

    samples = comfy.sample.sample(
        tap.attach(model), noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
        denoise=denoise, noise_mask=noise_mask, callback=on_step,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed,
    )
    return samples, tap.finish()


def phrase_tap(ablated: list, velocity: str = "cfg") -> PhraseTrajectoryTap:
    """A tap that also reads each phrase's MI: at every evaluation of the sampler, the y∖p CONDITIONINGs are prepared
    as ComfyUI's PerpNeg node prepares its extra prompt (``encode_model_conds``) and run in one ``calc_cond_batch``
    (ComfyUI's own cond batching), apart from y and ∅, so the sampler's own result stays bitwise the stock one."""
    converted = [comfy.sampler_helpers.convert_cond(c) for c in ablated]

    def ablated_velocities(args: dict) -> list[torch.Tensor]:
        model, x, sigma = args["model"], args["input"], args["sigma"]
        conds = [comfy.samplers.encode_model_conds(model.extra_conds, c, x, x.device, "positive") for c in converted]
        out = comfy.samplers.calc_cond_batch(model, conds, x, sigma, args["model_options"])
        return [velocity_from_denoised(x.detach(), d.detach(), sigma.detach()) for d in out]

    return PhraseTrajectoryTap(ablated_velocities, len(ablated), velocity=velocity)


def scoring_sampler(read_velocities: Callable, estimate: Callable, *, seed: int, n_t: int, draws_per_call: int,
                    result: dict) -> comfy.samplers.KSAMPLER:
    """A sampler that scores the latent it is given instead of denoising it (Prop. 3.3 for existing latents).

    Inside ComfyUI's own sampling path (conditioning, model loading, latent format, cond batching) it calls the model
    at σ = 1 − t for every draw; ``read_velocities()`` returns what the attached tap or guider captured of that call,
    and ``estimate(velocities, x1, generator)`` (x1: the latent in the model's space; generator seeded with ``seed``)
    is stored as ``result["value"]``. Progress over the n_t draws; ComfyUI's interrupt is honoured between calls.
    """
    progress = comfy.utils.ProgressBar(n_t)

    def sampler(model_k, noise, sigmas, extra_args=None, callback=None, disable=None):
        x1 = model_k.latent_image  # in the model's latent space (process_in applied by the guider)
        calls = 0

        def velocities(x_t, t):
            nonlocal calls
            comfy.model_management.throw_exception_if_processing_interrupted()
            model_k(x_t, sigma_from_t(t).to(x_t.device), **extra_args)
            calls += 1
            progress.update_absolute(min(calls * draws_per_call, n_t), n_t)
            return read_velocities()

        result["value"] = estimate(velocities, x1, torch.Generator().manual_seed(seed))
        return x1

    return comfy.samplers.KSAMPLER(sampler)
