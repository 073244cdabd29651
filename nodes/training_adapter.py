"""The forward adapter that lets ``rfmi_core``'s trainer drive a ComfyUI model: paper time and velocity in, ComfyUI's
σ and conditioning machinery underneath."""

from __future__ import annotations

from contextlib import contextmanager

import torch

import comfy.model_base
import comfy.model_management

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
