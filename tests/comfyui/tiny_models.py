"""Small real ComfyUI models for the tests: a tiny SD3 MMDiT through ComfyUI's own loader, a tiny FLUX built from
ComfyUI's classes, and an analytic Gaussian flow model whose MI is known in closed form."""

from __future__ import annotations

import dataclasses

import torch

import comfy.ldm.flux.model
import comfy.model_base
import comfy.model_patcher
import comfy.ops
import comfy.sd
import comfy.supported_models
from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

from rfmi_core import GaussianChannel


def tiny_sd3_state_dict(seed: int = 0, pooled_width: int = 32, context_width: int = 64) -> dict:
    """The weights of a ~1 M-parameter MMDiT (SD3 family): ComfyUI's detection reads it as SD3 (shift 3, 16 channels).
    ``pooled_width`` / ``context_width``: the widths of the pooled and per-token text conditioning it takes."""
    net = OpenAISignatureMMDITWrapper(
        input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=2, adm_in_channels=pooled_width,
        context_embedder_config={"target": "torch.nn.Linear",
                                 "params": {"in_features": context_width, "out_features": 128}},
        num_patches=256, pos_embed_max_size=16, qk_norm="rms", operations=comfy.ops.disable_weight_init,
        device="cpu", dtype=torch.float32,
    )
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) * 0.05).contiguous() for k, v in net.state_dict().items()}


def tiny_sd3(seed: int = 0):
    """The tiny MMDiT loaded by ComfyUI's own loader (comfy.sd.load_diffusion_model_state_dict)."""
    return comfy.sd.load_diffusion_model_state_dict(tiny_sd3_state_dict(seed))


def sd3_conditioning(seed: int = 0, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, 7, 64, generator=g), {"pooled_output": torch.randn(batch, 32, generator=g)}]]


def flux1_params_required_by(params_class) -> dict:
    """The FLUX.1 values of the required ``FluxParams`` fields that newer ComfyUI added, chosen by the signature of the
    ComfyUI at hand (not its version number): ``txt_ids_dims`` (required since ComfyUI 0.4; FLUX.1 detection sets [])."""
    fields = {f.name: f for f in dataclasses.fields(params_class)}
    flux1_values = {"txt_ids_dims": []}
    missing = [name for name, f in fields.items()
               if name in flux1_values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {name: flux1_values[name] for name in missing}


def tiny_flux(seed: int = 0):
    """A 2-block FLUX (guidance-embedded, like FLUX-dev) from ComfyUI's own classes: ModelSamplingFlux, shift 1.15."""
    unet_config = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32, "context_in_dim": 64,
                   "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
                   "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True, "guidance_embed": True}
    unet_config.update(flux1_params_required_by(comfy.ldm.flux.model.FluxParams))
    config = comfy.supported_models.Flux(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, device="cpu")
    g = torch.Generator().manual_seed(seed)
    for p in model.diffusion_model.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.05
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def flux_conditioning(seed: int = 0, guidance: float = 3.5):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 7, 64, generator=g), {"pooled_output": torch.randn(1, 32, generator=g), "guidance": guidance}]]


class GaussianFlowNet(torch.nn.Module):
    """The exact velocity of a Gaussian channel X|Y, in ComfyUI's convention: output = noise − data = −u.

    Latents are [N, 4, 1, 1]; the conditioning tensor is [N, 1, dim_y + 1] whose last entry is 1 for y and 0 for ∅.
    The timestep is σ (multiplier 1), so t = 1 − σ.
    """

    def __init__(self, channel: GaussianChannel):
        super().__init__()
        self.channel = channel
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a dtype and a device

    def forward(self, x, timestep, context=None, **kwargs):
        flat = x.reshape(x.shape[0], -1)
        t = 1 - timestep.float().reshape(-1).expand(x.shape[0])
        y, is_cond = context[:, 0, :-1], context[:, 0, -1] > 0.5
        u = torch.empty_like(flat)
        if bool(is_cond.any()):
            u[is_cond] = self.channel.velocity(flat[is_cond], t[is_cond], y[is_cond])
        if bool((~is_cond).any()):
            u[~is_cond] = self.channel.velocity(flat[~is_cond], t[~is_cond], None)
        return (-u).reshape(x.shape)


def gaussian_conditioning(y: torch.Tensor):
    """(positive, negative) CONDITIONING carrying per-image y, and the ∅ flag."""
    n = y.shape[0]
    cond = torch.cat([y, torch.ones(n, 1)], dim=1)[:, None, :]
    uncond = torch.zeros(n, 1, y.shape[1] + 1)
    return [[cond, {}]], [[uncond, {}]]


def tiny_vae(seed: int = 0):
    """A real ComfyUI VAE (TAESD, 16 latent channels, ≈2.5 M random weights) built by comfy.sd.VAE from its keys:
    decodes a [B, 16, h, w] latent to a [B, 8h, 8w, 3] image."""
    from comfy.taesd.taesd import TAESD

    g = torch.Generator().manual_seed(seed)
    shapes = TAESD(latent_channels=16).state_dict()
    return comfy.sd.VAE(sd={k: torch.randn(v.shape, generator=g) * 0.05 for k, v in shapes.items()})
