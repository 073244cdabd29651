"""ComfyUI CONDITIONING ⇄ plain tensors (what a fine-tune set stores and the trainer feeds back to the model)."""

from __future__ import annotations

import torch

from ..rfmi_core.finetune.candidates import module_identity

CONDITIONING_KEYS = ("cross_attn", "pooled_output", "guidance")


def conditioning_tensors(conditioning: list) -> dict[str, torch.Tensor]:
    """The first entry of a CONDITIONING as {"cross_attn": [1, L, D], "pooled_output": [1, P], "guidance": [1]}.

    SD3 gives cross_attn [1, 154, 4096] + pooled [1, 2048]; FLUX adds guidance. Other keys (areas, masks, control) are
    not part of a fine-tune set: a multi-entry conditioning is refused rather than silently cut.
    """
    if not conditioning:
        raise ValueError("the conditioning is empty: connect a text encoder's output")
    if len(conditioning) > 1:
        raise ValueError(f"the conditioning combines {len(conditioning)} entries (areas, concat, ...); a fine-tune set "
                         "stores one prompt encoding: connect the text encoder's output directly")
    tensor, extras = conditioning[0]
    out = {"cross_attn": tensor[:1].detach().cpu()}
    if extras.get("pooled_output") is not None:
        out["pooled_output"] = extras["pooled_output"][:1].detach().cpu()
    if extras.get("guidance") is not None:
        out["guidance"] = torch.tensor([float(extras["guidance"])])
    return out


def model_identity(model) -> str:
    """A short, stable name for the weights of a MODEL: class, parameter count and a hash of a few tensors' bytes."""
    return module_identity(model.model.diffusion_model, type(model.model).__name__)
