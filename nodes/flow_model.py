"""Wraps a plain velocity network as a ComfyUI FLOW model, so ComfyUI's own samplers and nodes can run it.

The network is called as ComfyUI calls any diffusion model, ``net(x, timestep, context=..., **extra)``, with
timestep = σ·multiplier, and must return ComfyUI's flow output, noise − data (= −u in the paper's convention).
Used for the toy model and for the analytic Gaussian model of the tests.
"""

from __future__ import annotations

import torch

import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.supported_models_base


class _PlainLatentFormat(comfy.latent_formats.LatentFormat):
    """Identity latent format (scale 1, no shift): the network's space is the latent space."""

    def __init__(self, channels: int = 4):
        self.latent_channels = channels


class _FlowConfig(comfy.supported_models_base.BASE):
    unet_config = {"disable_unet_model_creation": True}
    sampling_settings = {"shift": 1.0, "multiplier": 1.0}
    latent_format = _PlainLatentFormat
    memory_usage_factor = 1.0
    supported_inference_dtypes = [torch.float32]


class _PlainFlowModel(comfy.model_base.BaseModel):
    """BaseModel whose network is any nn.Module (ComfyUI's own networks carry a ``dtype`` attribute; plain ones don't)."""

    def get_dtype(self):
        return next(self.diffusion_model.parameters(), torch.empty(0)).dtype


def flow_model_patcher(net: torch.nn.Module, latent_channels: int, shift: float = 1.0,
                       multiplier: float = 1.0) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher of a FLOW model (ModelSamplingDiscreteFlow with ``shift``, ``multiplier``) around ``net``."""
    config = _FlowConfig(_FlowConfig.unet_config)
    config.sampling_settings = {"shift": shift, "multiplier": multiplier}
    config.latent_format = _PlainLatentFormat(latent_channels)
    model = _PlainFlowModel(config, model_type=comfy.model_base.ModelType.FLOW, device="cpu")
    model.diffusion_model = net
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())
