"""RFMI FT (paper Algorithm 1, Table 2): LoRA fine-tuning of a rectified-flow velocity model by flow matching.

For a data latent x1, noise ε ~ N(0, I) and a time t ∈ (0, 1) (paper time: 0 = noise, 1 = data):

    x_t = t·x1 + (1 − t)·ε,      u* = x1 − ε,      L(θ) = mean ‖u_θ(x_t, t, y) − u*‖²

with t ~ logit-normal (t = sigmoid(m + s·n), n ~ N(0, 1); SD3 practice, m = 0, s = 1) or uniform, and y replaced by
the empty prompt ∅ with probability p per sample (condition dropout; 0 by default when fine-tuning). Only LoRA
adapters train (``rfmi_core.lora``), with AdamW, a linear warm-up to a constant learning rate and gradient-norm
clipping; ``TrainConfig`` holds Table 2's values by default.

The parts: ``config`` (``TrainConfig``, each setting with its help and source), ``loss`` (the loss, t-sampling, the
learning-rate schedule), ``data`` (datasets, batches, per-step randomness), ``checkpointing`` (gradient
checkpointing safe for in-place models), ``state`` (checkpoints and resume), ``loop`` (``train_lora``),
``distributed`` (data-parallel training under torchrun: shards of each global batch, gradients summed over the
ranks), ``cli`` (the command ``python -m rfmi_core.train``, also under ``torchrun``).

Reproducible and resumable: all randomness of step s (its samples, t, ε, dropout) comes from generators seeded by
(seed, s), so a run resumed at step k from a checkpoint (LoRA weights, AdamW moments and step counts, global step,
config; safetensors only) reproduces the uninterrupted run.

    result = train_lora(model.diffusion_model, data, velocity_fn, TrainConfig(steps=2000),
                        checkpoint_dir="ckpt", on_step=lambda step, loss: ...)
    save_lora(result.lora_state_dict, "lora.safetensors")      # loads with ComfyUI's LoraLoaderModelOnly
"""

from .checkpointing import DEFAULT_CHECKPOINT_MODULES, gradient_checkpointing, saved_activation_copies
from .config import LOW_MEMORY, T_SAMPLINGS, Setting, TrainConfig, config_from_settings, low_memory, setting, settings
from .data import LatentSpaceData, affine_latent_map, batch_indices, collate, step_generator
from .loop import TrainResult, train_lora
from .loss import flow_matching_loss, lr_at, sample_t
from .state import TrainCheckpoint, latest_checkpoint, load_checkpoint, save_checkpoint

__all__ = [
    "T_SAMPLINGS",
    "LOW_MEMORY",
    "low_memory",
    "DEFAULT_CHECKPOINT_MODULES",
    "TrainConfig",
    "Setting",
    "setting",
    "settings",
    "config_from_settings",
    "TrainResult",
    "TrainCheckpoint",
    "train_lora",
    "flow_matching_loss",
    "sample_t",
    "lr_at",
    "step_generator",
    "batch_indices",
    "collate",
    "LatentSpaceData",
    "affine_latent_map",
    "gradient_checkpointing",
    "saved_activation_copies",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
]
