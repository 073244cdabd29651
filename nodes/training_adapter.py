"""The forward adapter that lets ``rfmi_core``'s trainer drive a ComfyUI model: paper time and velocity in, ComfyUI's
σ and conditioning machinery underneath."""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch

import comfy.model_base
import comfy.model_management
import comfy.samplers

from ..rfmi_core import sigma_from_t, velocity_from_denoised


def comfy_velocity_fn(base_model: comfy.model_base.BaseModel):
    """velocity(net, x_t, t, cond) → u for ``base_model`` (the MODEL's ``.model``), batched.

    ``cond`` holds the fine-tune set's tensors: cross_attn [B, L, D], pooled_output [B, P], guidance [B] (FLUX).
    The model is called as ComfyUI's sampler calls it, at σ = 1 − t, through ``extra_conds`` (so SD3, FLUX and other
    flow models each get their own inputs); u = (denoised − x_t)/σ, the paper velocity.
    """

    def velocity(net: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        sigma = sigma_from_t(t).to(x_t.dtype)
        device = x_t.device
        extras = base_model.extra_conds(cross_attn=cond["cross_attn"].to(device), noise=x_t, device=device,
                                        pooled_output=cond.get("pooled_output"),
                                        guidance=None)
        kwargs = {name: c.process_cond(batch_size=x_t.shape[0], device=device).cond for name, c in extras.items()}
        if "guidance" in cond:
            kwargs["guidance"] = cond["guidance"].to(device).reshape(-1)
        return velocity_from_denoised(x_t, base_model.apply_model(x_t, sigma, **kwargs), sigma)

    return velocity


@contextmanager
def comfy_training_mode():
    """ComfyUI's own training switch (``comfy.model_management.in_training``, as its TrainLoraNode sets it) for the
    duration of a training run: newer ComfyUI then takes its differentiable paths (e.g. FLUX's RoPE instead of
    comfy_kitchen's kernel, which has no backward). ComfyUI versions without the switch are left as they are."""
    if not hasattr(comfy.model_management, "in_training"):
        yield
        return
    previous = comfy.model_management.in_training
    comfy.model_management.in_training = True
    try:
        yield
    finally:
        comfy.model_management.in_training = previous


def training_copy(model):
    """The ModelPatcher Train LoRA trains, so that the node's input MODEL is never changed.

    ComfyUI's own deep copy (``clone(force_deepcopy=True)``, the weights re-read from the model's file, as ComfyUI's
    TrainLoraNode trains) where this ComfyUI has it and the model's loader can re-read it: newer ComfyUI may hand a
    dynamic-VRAM patcher whose weights do not stay in place. Otherwise a plain clone sharing the input's weights: the
    trainer adds its adapters there and removes them, leaving every weight bitwise as it was; a dynamic-VRAM model that
    cannot be re-read is refused."""
    with torch.inference_mode(False):
        if "force_deepcopy" in inspect.signature(model.clone).parameters and \
                getattr(model, "cached_patcher_init", None) is not None:
            return model.clone(force_deepcopy=True)
    if getattr(model, "is_dynamic", lambda: False)():
        raise ValueError("Train LoRA cannot copy this model (its loader gives ComfyUI no way to re-read it) and its "
                         "weights are managed dynamically: load it with a core loader (Load Diffusion Model, Load "
                         "Checkpoint), or start ComfyUI with --disable-dynamic-vram if this ComfyUI has that flag")
    return model.clone()


def sampling_sigmas(model, steps: int) -> torch.Tensor:
    """The σ grid ComfyUI's KSampler uses for ``model`` with the "simple" scheduler and ``steps`` steps."""
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", steps).cpu()
