"""The RFMI FT training loop (paper Algorithm 1): LoRA adapters on a velocity model, trained by flow matching.

Model-agnostic: the trainer sees ``data`` (``rfmi_core.train.data``) and ``velocity_fn(model, x_t [B, ...], t [B],
cond) -> u [B, ...]``, the paper velocity u = x1 − x0 at paper time t (``conventions.ModuleVelocity``); x_t is float32
on the model's device and the function casts as its model needs. Only LoRA adapters train (``rfmi_core.lora``), with
AdamW, a linear warm-up to a constant learning rate and gradient-norm clipping.
"""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..mi.conventions import ModuleVelocity
from ..util.folder_lock import folder_lock
from .lora import has_lora, inject_lora, load_lora_weights, lora_state_dict, remove_lora, resolve_targets
from ..util.progress import progress_bar
from .checkpointing import gradient_checkpointing, is_in_place_error, saved_activation_copies
from .config import TrainConfig
from .data import batch_indices, check_data, micro_batch, step_generator
from .distributed import (World, broadcast_from_main, broadcast_parameters, current_world, quiet_unless_main,
                          sum_gradients_and_loss)
from .loss import flow_matching_loss, lr_at, sample_t
from .state import TrainCheckpoint, check_resume, load_checkpoint, restore, save_checkpoint

__all__ = ["TrainResult", "train_lora"]


@dataclass
class TrainResult:
    """``lora_state_dict``: ComfyUI-format LoRA (``lora.lora_state_dict``); ``losses``: one mean loss per step from
    step 1 (a resumed run includes the steps before the checkpoint); ``steps_done``: the global step reached;
    ``targets``: the adapted module paths."""

    lora_state_dict: dict[str, Tensor]
    losses: list[float]
    steps_done: int
    targets: list[str] = field(default_factory=list)


def _train_step(model: nn.Module, data: Any, velocity_fn: ModuleVelocity, params: dict[str, nn.Parameter],
                optimizer: torch.optim.Optimizer, config: TrainConfig, step: int, device: torch.device,
                copy_activations: bool = False, world: World = World(),
                shapes: dict[int, torch.Size] | None = None) -> float:
    """One optimizer update (0-based ``step``): this rank's micro-batches, the gradients summed over the ranks,
    clipping, AdamW. Returns the step's mean loss over the global batch. Raises FloatingPointError, before updating
    anything, when the loss is not finite.

    All of the step's draws come first, one per sample of the global batch in order (dropout, t, then each sample's
    ε), so that ``grad_accum_steps`` micro-batches of ``batch_size``, or ranks each taking a shard of the global
    batch (``World.shard``), give the gradient of one batch of their product: each micro-batch's mean loss is
    weighted by its share of the global batch. A rank draws (and discards) the ε of the samples before its shard,
    whose shapes it reads once (``shapes`` caches them)."""
    generator = step_generator(config.seed, step)
    indices = batch_indices(config.seed, step, len(data), config.samples_per_step)
    drops = torch.rand(len(indices), generator=generator) < config.cond_dropout
    times = sample_t(len(indices), generator, config)
    shard = world.shard(len(indices))
    known = {} if shapes is None else shapes
    for i in indices[:shard.start].tolist():  # the earlier ranks' ε, drawn to stay on the global batch's stream
        if i not in known:
            known[i] = data[i][0].shape
        torch.randn(known[i], generator=generator)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else nullcontext()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro, drop, t in zip(indices[shard].split(config.batch_size), drops[shard].split(config.batch_size),
                              times[shard].split(config.batch_size)):
        x1, cond = micro_batch(data, micro, drop, device)
        eps = torch.stack([torch.randn(x.shape, generator=generator) for x in x1]).to(device)
        loss = flow_matching_loss(velocity_fn, model, x1, t.to(device), eps, cond,
                                  forward=(autocast, saved_activation_copies(copy_activations)))
        share = len(indices) / len(micro)  # grad_accum_steps in one process
        (loss / share).backward()
        total += loss.item() / share
    if world.size > 1:
        total = sum_gradients_and_loss(list(params.values()), total)
    if not math.isfinite(total):
        raise FloatingPointError(f"the loss is {total} at step {step + 1}; the LoRA was not updated (try bf16=False "
                                 f"or a lower lr)")
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(list(params.values()), config.max_grad_norm)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, config)
    optimizer.step()
    return total


def _device_of(params: dict[str, nn.Parameter]) -> torch.device:
    return next(iter(params.values())).device


def _run(model: nn.Module, data: Any, velocity_fn: ModuleVelocity, config: TrainConfig, targets: list[str],
         params: dict[str, nn.Parameter], state: TrainCheckpoint | None, checkpoint_dir: Path | None,
         on_step: Callable[[int, float], Any] | None, progress: bool,
         world: World = World()) -> tuple[list[float], int]:
    """The training loop from the checkpoint's step (or 0) to ``config.steps``; returns (losses, global step).
    Under torch.distributed every rank runs it on its shard of each step; rank 0 alone writes checkpoints."""
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    start, losses = 0, []
    if state is not None:
        restore(state, params, optimizer)
        start, losses = state.global_step, list(state.losses)
    if world.size > 1:
        broadcast_parameters(list(params.values()))
    saved_at = start

    def save(done: int) -> None:
        nonlocal saved_at
        if checkpoint_dir is not None and saved_at != done and world.is_main:
            save_checkpoint(checkpoint_dir / f"step_{done:06d}.safetensors", model, optimizer, config, done, losses,
                            targets, len(data))
            saved_at = done

    bar = progress_bar(range(start, config.steps), enabled=progress and world.is_main, desc="RFMI FT", initial=start,
                       total=config.steps)
    device = _device_of(params)
    copy_activations = False
    shapes: dict[int, torch.Size] = {}
    for step in bar:
        try:
            loss = _train_step(model, data, velocity_fn, params, optimizer, config, step, device, copy_activations,
                               world, shapes)
        except RuntimeError as error:
            if copy_activations or not is_in_place_error(error):
                raise
            warnings.warn("the model updates a saved activation in place (as ComfyUI's FLUX blocks do); training on "
                          "with a copy of each saved activation (more memory: gradient checkpointing avoids it)",
                          stacklevel=2)
            copy_activations = True  # the step is redone from its own draws: the run stays reproducible
            loss = _train_step(model, data, velocity_fn, params, optimizer, config, step, device, copy_activations,
                               world, shapes)
        losses.append(loss)
        done = step + 1
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if config.save_every and done % config.save_every == 0:
            save(done)
        if on_step is not None:
            try:
                on_step(done, loss)
            except BaseException:
                save(done)  # an interrupt keeps the completed steps: resume_from=checkpoint_dir continues here
                raise
    save(max(start, config.steps))
    return losses, max(start, config.steps)


def train_lora(
    model: nn.Module,
    data: Any,
    velocity_fn: ModuleVelocity,
    config: TrainConfig | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    on_step: Callable[[int, float], Any] | None = None,
    keep_adapters: bool = False,
    progress: bool = False,
    init_lora: dict[str, Tensor] | None = None,
) -> TrainResult:
    """Fine-tune LoRA adapters on ``model`` (in place) by flow matching; returns the LoRA and the loss history.

    ``model``: the velocity network (e.g. a ComfyUI model's ``diffusion_model``); the adapted module paths
    (``config.target_modules``) are relative to it and exported under ``config.key_prefix``. ``data`` and
    ``velocity_fn``: see the module docstring. ``checkpoint_dir``: where ``step_<n>.safetensors`` checkpoints go
    (every ``config.save_every`` steps, at the end, and when ``on_step`` raises); the run holds the folder's lock
    (``folder_lock``), so a second run given the same folder at once is refused rather than interleaving its steps. ``resume_from``: a checkpoint file,
    or a folder (its latest), to continue from; steps up to ``config.steps`` are run, so a longer ``steps`` extends a
    finished run. ``on_step(step, loss)`` runs after each completed step (1-based): check for interrupts and update
    progress there; what it raises propagates. ``keep_adapters``: leave the trained adapters in ``model`` (frozen,
    for side-by-side inference) until ``lora.remove_lora(model)``; otherwise, and always on an exception, they are
    removed and the model's module tree, state_dict and requires_grad flags are exactly as before. The model's
    train/eval mode is left as it is (the LoRA has no dropout). Runs with grad enabled even inside
    ``torch.inference_mode``.

    Under torch.distributed (a default process group, e.g. ``distributed.init_from_env`` under torchrun) every rank
    calls it with the same model, data and config: ``batch_size`` × ``grad_accum_steps`` is then the global batch,
    each rank trains on its shard of it and the gradients are summed over the ranks, so the run equals the
    one-process run (up to float summation order); rank 0 alone writes checkpoints, and a resumed checkpoint is read
    on rank 0 and broadcast. Every rank returns the same result.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig; got {type(config).__name__}")
    if not callable(velocity_fn):
        raise ValueError(f"velocity_fn must be callable as velocity_fn(model, x_t, t, cond); got {velocity_fn!r}")
    check_data(data)
    if has_lora(model):
        raise ValueError("model already holds LoRA adapters (kept by an earlier keep_adapters=True run?); call "
                         "rfmi_core.train.lora.remove_lora(model) first")
    targets = resolve_targets(model, config.target_modules)
    world = current_world()
    if config.samples_per_step < world.size:
        raise ValueError(f"batch_size × grad_accum_steps ({config.samples_per_step}) is the global batch, shared by "
                         f"the {world.size} processes: it must be at least {world.size}")
    state = None
    if resume_from is not None:
        state = (load_checkpoint(resume_from) if world.size == 1 else
                 broadcast_from_main(lambda: load_checkpoint(resume_from)))
        with quiet_unless_main():
            check_resume(state, config, targets, len(data))
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    owner = folder_lock(folder, "a training run") if folder is not None and world.is_main else nullcontext()
    with owner, torch.inference_mode(False), torch.enable_grad():
        params = inject_lora(model, targets, config.rank, config.alpha, config.seed)
        try:
            if init_lora is not None:
                load_lora_weights(model, init_lora, config.key_prefix)
            with gradient_checkpointing(model, config.checkpoint_modules, enabled=config.gradient_checkpointing):
                losses, steps_done = _run(model, data, velocity_fn, config, targets, params, state, folder, on_step,
                                          progress, world)
            lora = lora_state_dict(model, config.key_prefix)
        except BaseException:
            remove_lora(model)
            raise
        if keep_adapters:
            for p in params.values():
                p.requires_grad_(False)
        else:
            remove_lora(model)
    return TrainResult(lora, losses, steps_done, targets)
