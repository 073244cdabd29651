"""Tiny model files in ComfyUI's folders, for commands that load models by name with ComfyUI's own loaders: a tiny SD3
checkpoint (MMDiT only, ~1.2 M weights, context 4096 and pooled 2048 as SD3's text encoders give) and a CLIP-L text
encoder of the real shape (ComfyUI builds CLIP-L from a fixed config) with random weights, fp16 (250 MB)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

import comfy.sd1_clip
from tiny_models import tiny_sd3_state_dict

CHECKPOINT = "tiny_sd3.safetensors"
CLIP_L = "clip_l.safetensors"


def tiny_sd3_checkpoint_state_dict(seed: int = 0) -> dict:
    """A 2-block MMDiT that ComfyUI detects as SD3 (CLIP-L's pooled 2048 and per-token 4096 widths), under a
    checkpoint's "model.diffusion_model." prefix."""
    weights = tiny_sd3_state_dict(seed, pooled_width=2048, context_width=4096)
    return {f"model.diffusion_model.{k}": v for k, v in weights.items()}


def clip_l_state_dict(seed: int = 0) -> dict:
    """CLIP-L's keys and shapes (ComfyUI's own config), random fp16 weights."""
    shapes = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float16).transformer.state_dict()
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) * 0.02).to(torch.float16) for k, v in shapes.items()}


def write_model_folders(base: Path) -> Path:
    """base/checkpoints/CHECKPOINT, base/text_encoders/CLIP_L and base/extra_model_paths.yaml naming them; returns
    the yaml (ComfyUI's --extra-model-paths-config)."""
    (base / "checkpoints").mkdir(parents=True, exist_ok=True)
    (base / "text_encoders").mkdir(exist_ok=True)
    save_file(tiny_sd3_checkpoint_state_dict(), str(base / "checkpoints" / CHECKPOINT))
    save_file(clip_l_state_dict(), str(base / "text_encoders" / CLIP_L))
    config = base / "extra_model_paths.yaml"
    config.write_text(f"rfmi_test:\n  base_path: {base}\n  checkpoints: checkpoints\n  text_encoders: text_encoders\n")
    return config
