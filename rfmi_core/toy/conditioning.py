"""The toy model's CONDITIONING: its prompt's word ids as a float tensor [1, MAX_TOKENS, 1] (the embedding lives in
the network), and back. ComfyUI's RFMI Toy Text Encode writes it, the toy model and the trainer read it."""

from __future__ import annotations

import torch
from torch import Tensor

from .prompts import tokenize

__all__ = ["conditioning_from_text", "tokens_from_conditioning"]


def conditioning_from_text(text: str) -> Tensor:
    """The word ids of a toy prompt as float32 [1, MAX_TOKENS, 1]; "" is ∅ (all padding)."""
    return tokenize(text).to(torch.float32)[None, :, None]


def tokens_from_conditioning(cross_attn: Tensor) -> Tensor:
    """Word ids [B, L] (long) from a toy CONDITIONING tensor [B, L, 1] of float word ids."""
    return cross_attn[..., 0].round().long()
