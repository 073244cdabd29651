"""The LoRA recipe that suits the toy model: Table 2's shape (AdamW, linear warm-up, constant lr, clipping) scaled to
a 0.7 M-parameter model trained for minutes. Table 2's own values (lr 5e-6, 400 warm-up steps, clip 0.005) are for
SD3.5 and barely move the toy model in hundreds of steps; these are the ones whose judge-selected (oracle) fine-tune
gains on held-out prompts (docs/results.md, the toy loop). The trainer's ``--model toy`` takes them by default
(``--preset toy``); the toy demo fine-tunes with them."""

from __future__ import annotations

__all__ = ["TOY_LORA_TARGETS", "TOY_PRESET"]

TOY_LORA_TARGETS = r"joint_blocks\.\d+\.(?:context_block|x_block)\.(?:attn\.(?:qkv|proj)|mlp\.[02])"
"""Attention and MLP layers of every joint block of the toy transformer."""

TOY_PRESET = {"rank": 16, "alpha": 16.0, "lr": 1e-3, "warmup_steps": 60, "max_grad_norm": 1.0, "steps": 600,
              "batch_size": 32, "grad_accum_steps": 1, "target_modules": TOY_LORA_TARGETS}
"""TrainConfig values of the toy recipe (the demo's: rank 16, lr 1e-3, 600 steps of batch 32, warm-up a tenth)."""
