"""RFMI FT (paper Algorithm 1, Table 2): LoRA fine-tuning of a rectified-flow velocity model by flow matching.

For a data latent x1, noise ε ~ N(0, I) and a time t ∈ (0, 1) (paper time: 0 = noise, 1 = data):

    x_t = t·x1 + (1 − t)·ε,      u* = x1 − ε,      L(θ) = mean ‖u_θ(x_t, t, y) − u*‖²

with t ~ logit-normal (t = sigmoid(m + s·n), n ~ N(0, 1); SD3 practice, m = 0, s = 1) or uniform, and y replaced by
the empty prompt ∅ with probability p per sample (condition dropout; 0 by default when fine-tuning). Only LoRA
adapters train (``rfmi_core.lora``), with AdamW, a linear warm-up to a constant learning rate and gradient-norm
clipping; ``TrainConfig`` holds Table 2's values by default.

Model-agnostic: the trainer sees

- ``data``: any object with ``__len__`` and ``__getitem__(i) -> (latent [C, ...], cond, uncond)`` where ``cond`` and
  ``uncond`` are dicts of tensors with a leading batch dim of 1 (SD3: ``cross_attn`` [1, 154, 4096],
  ``pooled_output`` [1, 2048]; FLUX adds ``guidance`` [1]). A batch stacks the latents and concatenates each
  condition key along dim 0; a key missing from ``uncond`` (e.g. ``guidance``) is taken from ``cond`` when dropped.
- ``velocity_fn(model, x_t [B, ...], t [B], cond) -> u [B, ...]``: the paper velocity u = x1 − x0 at paper time t.
  x_t is float32 on the model's device; the function casts as its model needs.

Reproducible and resumable: all randomness of step s (its samples, t, ε, dropout) comes from generators seeded by
(seed, s) (samples are drawn epoch by epoch from permutations seeded by (seed, epoch)), so a run resumed at step k from
a checkpoint (LoRA weights, AdamW moments and step counts, global step, config; safetensors only) reproduces the
uninterrupted run.

    result = train_lora(model.diffusion_model, data, velocity_fn, TrainConfig(steps=2000),
                        checkpoint_dir="ckpt", on_step=lambda step, loss: ...)
    save_lora(result.lora_state_dict, "lora.safetensors")      # loads with ComfyUI's LoraLoaderModelOnly
"""

from __future__ import annotations

import json
import math
import re
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor, nn

from .checks import require_choice, require_same_shape
from .conventions import ModuleVelocity, straight_path
from .lora import (
    DEFAULT_TARGETS,
    has_lora,
    inject_lora,
    lora_parameters,
    lora_state_dict,
    remove_lora,
    resolve_targets,
    save_safetensors_atomic,
)
from .progress import progress_bar

__all__ = [
    "T_SAMPLINGS",
    "DEFAULT_CHECKPOINT_MODULES",
    "TrainConfig",
    "TrainResult",
    "TrainCheckpoint",
    "train_lora",
    "sample_t",
    "lr_at",
    "step_generator",
    "batch_indices",
    "collate",
    "gradient_checkpointing",
    "saved_activation_copies",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
]

T_SAMPLINGS = ("logit_normal", "uniform")
DEFAULT_CHECKPOINT_MODULES = r"(?:joint_blocks|double_blocks|single_blocks|transformer_blocks|blocks|layers)\.\d+"
CHECKPOINT_KIND = "rfmi-ft-checkpoint"

_STEP_STREAM, _EPOCH_STREAM = 0, 1


@dataclass
class TrainConfig:
    """Hyperparameters of RFMI FT; the defaults are the paper's Table 2 (rank, α, lr, warm-up, clipping, AdamW, steps).

    ``batch_size`` × ``grad_accum_steps`` samples make one optimizer step (effective batch 4 by default, the
    reference script's batch size, in micro-batches of 1 to fit a consumer GPU). ``target_modules``: a regex matched
    against whole module paths, or a list of module names (``lora.resolve_targets``). ``gradient_checkpointing``
    recomputes the forward of the modules matching ``checkpoint_modules`` (default: the numbered blocks, else the
    top-level children) in the backward pass. ``save_every`` = N writes a checkpoint every N steps (0: only at the
    end and on interrupt, when a checkpoint_dir is given).
    """

    rank: int = 32
    alpha: float = 32.0
    target_modules: str | tuple[str, ...] = DEFAULT_TARGETS
    lr: float = 5e-6
    warmup_steps: int = 400
    max_grad_norm: float | None = 0.005
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    eps: float = 1e-8
    steps: int = 2000
    batch_size: int = 1
    grad_accum_steps: int = 4
    bf16: bool = False
    gradient_checkpointing: bool = False
    checkpoint_modules: str | None = None
    seed: int = 0
    save_every: int = 0
    t_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    cond_dropout: float = 0.0
    key_prefix: str = "diffusion_model."

    def __post_init__(self) -> None:
        if not isinstance(self.target_modules, str):
            self.target_modules = tuple(self.target_modules)
        self.betas = tuple(self.betas)
        for name, minimum in [("rank", 1), ("steps", 1), ("batch_size", 1), ("grad_accum_steps", 1),
                              ("warmup_steps", 0), ("save_every", 0), ("seed", 0)]:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
        for name in ("alpha", "lr", "eps", "logit_std"):
            if not _finite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number; got {getattr(self, name)!r}")
        if self.max_grad_norm is not None and (not _finite(self.max_grad_norm) or self.max_grad_norm <= 0):
            raise ValueError(f"max_grad_norm must be positive, or None for no clipping; got {self.max_grad_norm!r}")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be ≥ 0; got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(_finite(b) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1); got {self.betas!r}")
        if not _finite(self.logit_mean):
            raise ValueError(f"logit_mean must be finite; got {self.logit_mean!r}")
        if not _finite(self.cond_dropout) or not 0 <= self.cond_dropout <= 1:
            raise ValueError(f"cond_dropout must lie in [0, 1]; got {self.cond_dropout!r}")
        require_choice("t_sampling", self.t_sampling, T_SAMPLINGS)
        if self.checkpoint_modules is not None and not isinstance(self.checkpoint_modules, str):
            raise ValueError(f"checkpoint_modules must be a regex or None; got {self.checkpoint_modules!r}")

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.grad_accum_steps

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        """The config of ``to_json``; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainResult:
    """``lora_state_dict``: ComfyUI-format LoRA (``lora.lora_state_dict``); ``losses``: one mean loss per step from
    step 1 (a resumed run includes the steps before the checkpoint); ``steps_done``: the global step reached;
    ``targets``: the adapted module paths."""

    lora_state_dict: dict[str, Tensor]
    losses: list[float]
    steps_done: int
    targets: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- the flow matching loss


def sample_t(n: int, generator: torch.Generator, config: TrainConfig) -> Tensor:
    """n float32 training times: sigmoid(m + s·N(0, 1)) ("logit_normal") or U(0, 1) ("uniform")."""
    if config.t_sampling == "uniform":
        return torch.rand(n, generator=generator)
    return torch.sigmoid(config.logit_mean + config.logit_std * torch.randn(n, generator=generator))


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of the update that completes step ``step`` + 1 (0-based ``step``): lr·min(1, (step + 1)/W).

    A linear warm-up over the first W = ``warmup_steps`` updates (the first one already non-zero), constant after.
    """
    if config.warmup_steps == 0:
        return config.lr
    return config.lr * min(1.0, (step + 1) / config.warmup_steps)


# --------------------------------------------------------------------------------------------------- randomness by step


def _seed(seed: int, stream: int, index: int) -> int:
    """A 64-bit seed for (seed, stream, index), well mixed (numpy's SeedSequence)."""
    low, high = np.random.SeedSequence([seed, stream, index]).generate_state(2, dtype=np.uint32)
    return int(high) << 32 | int(low)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator all of step ``step``'s t, ε and dropout draws come from."""
    return torch.Generator().manual_seed(_seed(seed, _STEP_STREAM, step))


def batch_indices(seed: int, step: int, n: int, count: int) -> Tensor:
    """The ``count`` dataset indices of step ``step``: positions step·count … of the stream that visits all n
    samples once per epoch, each epoch in its own order (a permutation seeded by (seed, epoch))."""
    positions = torch.arange(step * count, (step + 1) * count)
    epochs = positions // n
    indices = torch.empty(count, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(seed, _EPOCH_STREAM, epoch)))
        chosen = epochs == epoch
        indices[chosen] = order[positions[chosen] % n]
    return indices


# --------------------------------------------------------------------------------------------------------------- data


def _check_data(data: Any) -> None:
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError(f"data must have __len__ and __getitem__; got {type(data).__name__}")
    if len(data) < 1:
        raise ValueError("data is empty; expected at least one (latent, cond, uncond) sample")
    _check_item(data[0], 0)


def _check_item(item: Any, index: int) -> None:
    if not (isinstance(item, (tuple, list)) and len(item) == 3):
        raise ValueError(f"data[{index}] must be a (latent, cond, uncond) triple; got {type(item).__name__}")
    latent, cond, uncond = item
    if not isinstance(latent, Tensor) or latent.ndim < 1:
        raise ValueError(f"data[{index}] latent must be a tensor [C, ...]; got {type(latent).__name__}")
    for name, c in (("cond", cond), ("uncond", uncond)):
        if not isinstance(c, dict) or not all(isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == 1
                                              for v in c.values()):
            raise ValueError(f"data[{index}] {name} must be a dict of tensors with a leading batch dim of 1")


def collate(items: Sequence[tuple[Tensor, dict]]) -> tuple[Tensor, dict[str, Tensor]]:
    """Latents stacked to [B, C, ...]; each condition key concatenated along dim 0 to [B, ...]."""
    keys = set(items[0][1])
    if any(set(c) != keys for _, c in items):
        raise ValueError(f"data: the samples of a batch have different condition keys: "
                         f"{sorted({tuple(sorted(c)) for _, c in items})}")
    try:
        latents = torch.stack([x for x, _ in items])
        cond = {k: torch.cat([c[k] for _, c in items]) for k in sorted(keys)}
    except RuntimeError as error:
        raise ValueError(f"data: the samples of a batch do not stack ({error}); use batch_size=1 (and "
                         f"grad_accum_steps for a larger effective batch) when shapes differ") from None
    return latents, cond


def _micro_batch(data: Any, indices: Tensor, drop: Tensor, device: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
    """The collated batch of ``indices``, with ``uncond`` (over ``cond``) where ``drop``; copies on ``device``."""
    items = []
    for i, dropped in zip(indices.tolist(), drop.tolist()):
        latent, cond, uncond = data[i]
        items.append((latent, {**cond, **uncond} if dropped else cond))
    latents, cond = collate(items)
    # copies: tensors made under torch.inference_mode (as ComfyUI's) cannot be saved for backward; copies can.
    return (latents.to(device=device, dtype=torch.float32, copy=True),
            {k: v.to(device=device, copy=True) for k, v in cond.items()})


# --------------------------------------------------------------------------------------------- gradient checkpointing


def _checkpoint_targets(model: nn.Module, pattern: str | None) -> list[tuple[str, nn.Module]]:
    """The outermost modules matching ``pattern`` (default: numbered blocks, else the top-level children)."""
    regex = DEFAULT_CHECKPOINT_MODULES if pattern is None else pattern
    chosen: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if name and re.fullmatch(regex, name) and not any(name.startswith(c + ".") for c, _ in chosen):
            chosen.append((name, module))
    if not chosen and pattern is not None:
        raise ValueError(f"checkpoint_modules {pattern!r} matches no module of the model; top-level modules: "
                         f"{', '.join(n for n, _ in model.named_children()) or 'none'}")
    return chosen or list(model.named_children())


def _fresh(value: Any) -> Any:
    """A copy of a floating-point tensor, so that a block that updates its inputs in place (ComfyUI's FLUX blocks:
    ``txt += ...``, ``x += ...``) leaves them intact for the checkpoint's recomputation; anything else as it is."""
    return value.clone() if isinstance(value, Tensor) and value.is_floating_point() else value


@contextmanager
def _recompute_on_copies() -> Iterator[None]:
    """The recomputation of a checkpointed block: each activation it saves goes to the checkpoint as a copy, so a block
    that then updates it in place (ComfyUI's FLUX: ``pre_norm(x)``, then ``x += ...``) cannot corrupt it. The copies
    live for one block's backward. (Composes with the checkpoint's own hooks, the innermost of the stack.)"""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    outer = top(False) if top is not None else None
    if outer is None:  # pragma: no cover - a torch without the hook stack API: recompute as it is
        warnings.warn("this torch has no saved-tensor hook stack (torch._C._autograd._top_saved_tensors_default_hooks): "
                      "gradient checkpointing recomputes blocks as they are, which is wrong for a model that updates "
                      "its activations in place (ComfyUI's FLUX); turn gradient checkpointing off for such a model",
                      RuntimeWarning, stacklevel=2)
        yield
        return
    pack, unpack = outer
    with torch.autograd.graph.saved_tensors_hooks(lambda t: pack(_copy_if_activation(t)), unpack):
        yield


def _checkpoint_contexts() -> tuple[Any, Any]:
    return nullcontext(), _recompute_on_copies()


def _checkpointed(forward: Callable) -> Callable:
    def on_copies(*args: Any, **kwargs: Any) -> Any:
        return forward(*[_fresh(a) for a in args], **{k: _fresh(v) for k, v in kwargs.items()})

    def run(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(on_copies, *args, use_reentrant=False,
                                                     context_fn=_checkpoint_contexts, **kwargs)
        return forward(*args, **kwargs)

    return run


def _copy_if_activation(tensor: Tensor) -> Tensor:
    return tensor.clone() if tensor.grad_fn is not None else tensor


def _keep(tensor: Tensor) -> Tensor:
    return tensor


def saved_activation_copies(enabled: bool = True):
    """Within the block, autograd saves a copy of each activation it keeps for the backward pass (weights and inputs
    are kept as they are). A model that updates its residual stream in place after saving it (ComfyUI's FLUX single
    blocks: ``pre_norm(x)`` then ``x += ...``) can then be trained; it costs one copy of each saved activation."""
    if not enabled:
        return nullcontext()
    return torch.autograd.graph.saved_tensors_hooks(_copy_if_activation, _keep)


def _is_in_place_error(error: RuntimeError) -> bool:
    return "modified by an inplace operation" in str(error)


@contextmanager
def gradient_checkpointing(model: nn.Module, pattern: str | None = None, enabled: bool = True) -> Iterator[list[str]]:
    """Within the block, the forward of each module matching ``pattern`` runs under ``torch.utils.checkpoint``
    (non-reentrant): its activations are recomputed in the backward pass instead of stored. Yields the wrapped paths;
    the original forwards are restored on exit."""
    patched: list[tuple[nn.Module, Any]] = []
    try:
        for _, module in (_checkpoint_targets(model, pattern) if enabled else []):
            patched.append((module, module.__dict__.get("forward")))
            module.forward = _checkpointed(module.forward)
        yield [name for name, m in model.named_modules() if any(m is p for p, _ in patched)]
    finally:
        for module, previous in reversed(patched):
            if previous is None:
                del module.__dict__["forward"]
            else:
                module.forward = previous


# -------------------------------------------------------------------------------------------------------- checkpoints


@dataclass
class TrainCheckpoint:
    """A training state read back from disk: LoRA parameters and AdamW state by parameter name, the config, the global
    step (= scheduler step: one LR step per optimizer step), the loss history and the adapted module paths."""

    lora: dict[str, Tensor]
    adamw: dict[str, dict[str, Tensor]]
    config: TrainConfig
    global_step: int
    scheduler_step: int
    losses: list[float]
    targets: list[str]
    data_size: int | None = None


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                    step: int, losses: Sequence[float], targets: Sequence[str], data_size: int | None = None) -> Path:
    """Write the training state after ``step`` steps as safetensors (no pickle), atomically.

    Tensors: ``lora/<param>``, ``adamw/{exp_avg,exp_avg_sq,step}/<param>`` (a parameter that never had a gradient
    has no AdamW state), ``losses`` (float64 [step]); metadata: kind, config (JSON), global and scheduler step,
    targets (JSON), data size.
    """
    tensors: dict[str, Tensor] = {"losses": torch.tensor(list(losses), dtype=torch.float64)}
    for name, p in lora_parameters(model).items():
        tensors[f"lora/{name}"] = p.detach()
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"adamw/{key}/{name}"] = torch.as_tensor(value).detach()
    metadata = {"format": "pt", "rfmi.kind": CHECKPOINT_KIND, "rfmi.config": config.to_json(),
                "rfmi.global_step": str(step), "rfmi.scheduler_step": str(step),
                "rfmi.targets": json.dumps(list(targets)), "rfmi.data_size": str(data_size or "")}
    return save_safetensors_atomic(tensors, path, metadata)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``directory`` (``step_<n>.safetensors``), or None."""
    found = [(int(m.group(1)), p) for p in Path(directory).glob("step_*.safetensors")
             if (m := re.fullmatch(r"step_(\d+)\.safetensors", p.name))]
    return max(found)[1] if found else None


def load_checkpoint(path: str | Path) -> TrainCheckpoint:
    """Read a ``save_checkpoint`` file (or the latest in a folder) with safetensors' ``safe_open``."""
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise ValueError(f"resume_from: folder {path} holds no step_<n>.safetensors checkpoint")
        path = latest
    if not path.is_file():
        raise ValueError(f"resume_from: no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("rfmi.kind") != CHECKPOINT_KIND:
            raise ValueError(f"resume_from: {path} is not an RFMI FT checkpoint (metadata kind "
                             f"{meta.get('rfmi.kind')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    adamw: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("adamw/"):
            _, state_key, name = key.split("/", 2)
            adamw.setdefault(name, {})[state_key] = value
    return TrainCheckpoint(
        lora={k[len("lora/"):]: v for k, v in tensors.items() if k.startswith("lora/")}, adamw=adamw,
        config=TrainConfig.from_json(meta["rfmi.config"]), global_step=int(meta["rfmi.global_step"]),
        scheduler_step=int(meta["rfmi.scheduler_step"]), losses=tensors["losses"].tolist(),
        targets=json.loads(meta["rfmi.targets"]), data_size=int(meta["rfmi.data_size"] or 0) or None)


_TRAJECTORY_FIELDS = ("lr", "warmup_steps", "max_grad_norm", "betas", "weight_decay", "eps", "batch_size",
                      "grad_accum_steps", "bf16", "seed", "t_sampling", "logit_mean", "logit_std", "cond_dropout")


def _check_resume(state: TrainCheckpoint, config: TrainConfig, targets: list[str], data_size: int) -> None:
    """A ValueError when the checkpoint's adapters cannot load into this run; a warning when the run will differ."""
    if (state.config.rank, state.config.alpha, state.targets) != (config.rank, config.alpha, targets):
        raise ValueError(f"resume_from: the checkpoint's adapters (rank {state.config.rank}, alpha "
                         f"{state.config.alpha}, {len(state.targets)} modules) differ from this run's (rank "
                         f"{config.rank}, alpha {config.alpha}, {len(targets)} modules)")
    changed = [name for name in _TRAJECTORY_FIELDS if getattr(state.config, name) != getattr(config, name)]
    if state.data_size is not None and state.data_size != data_size:
        changed.append(f"data size {state.data_size} → {data_size}")
    if changed:
        warnings.warn(f"resuming with settings that differ from the checkpoint's ({', '.join(changed)}): the run "
                      f"will not reproduce an uninterrupted one", stacklevel=3)


def _restore(state: TrainCheckpoint, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
    """Load the checkpoint's LoRA weights into ``params`` and its AdamW state into ``optimizer``."""
    if set(state.lora) != set(params):
        raise ValueError("resume_from: the checkpoint's LoRA parameter names differ from this model's")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state.lora[name])
    saved = optimizer.state_dict()
    order = list(params)
    saved["state"] = {i: dict(state.adamw[name]) for i, name in enumerate(order) if name in state.adamw}
    optimizer.load_state_dict(saved)


# ---------------------------------------------------------------------------------------------------------- training


def _train_step(model: nn.Module, data: Any, velocity_fn: ModuleVelocity, params: dict[str, nn.Parameter],
                optimizer: torch.optim.Optimizer, config: TrainConfig, step: int, device: torch.device,
                copy_activations: bool = False) -> float:
    """One optimizer update (0-based ``step``): ``grad_accum_steps`` micro-batches, clipping, AdamW. Returns the mean
    micro-batch loss. Raises FloatingPointError, before updating anything, when the loss is not finite.

    All of the step's draws come first, one per sample in order (dropout, t, then each sample's ε), so that
    ``grad_accum_steps`` micro-batches of ``batch_size`` give the gradient of one batch of their product."""
    generator = step_generator(config.seed, step)
    indices = batch_indices(config.seed, step, len(data), config.samples_per_step)
    drops = torch.rand(len(indices), generator=generator) < config.cond_dropout
    times = sample_t(len(indices), generator, config)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else nullcontext()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro, drop, t in zip(indices.split(config.batch_size), drops.split(config.batch_size),
                              times.split(config.batch_size)):
        x1, cond = _micro_batch(data, micro, drop, device)
        eps = torch.stack([torch.randn(x.shape, generator=generator) for x in x1]).to(device)
        x_t, target = straight_path(x1, eps, t.to(device))
        with autocast, saved_activation_copies(copy_activations):
            u = velocity_fn(model, x_t, t.to(device), cond)
        require_same_shape("velocity_fn output", u, "x_t", x_t)
        loss = F.mse_loss(u.float(), target)
        (loss / config.grad_accum_steps).backward()
        total += loss.item() / config.grad_accum_steps
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
         on_step: Callable[[int, float], Any] | None, progress: bool) -> tuple[list[float], int]:
    """The training loop from the checkpoint's step (or 0) to ``config.steps``; returns (losses, global step)."""
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    start, losses = 0, []
    if state is not None:
        _restore(state, params, optimizer)
        start, losses = state.global_step, list(state.losses)
    saved_at = start

    def save(done: int) -> None:
        nonlocal saved_at
        if checkpoint_dir is not None and saved_at != done:
            save_checkpoint(checkpoint_dir / f"step_{done:06d}.safetensors", model, optimizer, config, done, losses,
                            targets, len(data))
            saved_at = done

    bar = progress_bar(range(start, config.steps), enabled=progress, desc="RFMI FT", initial=start,
                       total=config.steps)
    device = _device_of(params)
    copy_activations = False
    for step in bar:
        try:
            loss = _train_step(model, data, velocity_fn, params, optimizer, config, step, device, copy_activations)
        except RuntimeError as error:
            if copy_activations or not _is_in_place_error(error):
                raise
            warnings.warn("the model updates a saved activation in place (as ComfyUI's FLUX blocks do); training on "
                          "with a copy of each saved activation (more memory: gradient checkpointing avoids it)",
                          stacklevel=2)
            copy_activations = True  # the step is redone from its own draws: the run stays reproducible
            loss = _train_step(model, data, velocity_fn, params, optimizer, config, step, device, copy_activations)
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
) -> TrainResult:
    """Fine-tune LoRA adapters on ``model`` (in place) by flow matching; returns the LoRA and the loss history.

    ``model``: the velocity network (e.g. a ComfyUI model's ``diffusion_model``); the adapted module paths
    (``config.target_modules``) are relative to it and exported under ``config.key_prefix``. ``data`` and
    ``velocity_fn``: see the module docstring. ``checkpoint_dir``: where ``step_<n>.safetensors`` checkpoints go
    (every ``config.save_every`` steps, at the end, and when ``on_step`` raises). ``resume_from``: a checkpoint file,
    or a folder (its latest), to continue from; steps up to ``config.steps`` are run, so a longer ``steps`` extends a
    finished run. ``on_step(step, loss)`` runs after each completed step (1-based): check for interrupts and update
    progress there; what it raises propagates. ``keep_adapters``: leave the trained adapters in ``model`` (frozen,
    for side-by-side inference) until ``lora.remove_lora(model)``; otherwise, and always on an exception, they are
    removed and the model's module tree, state_dict and requires_grad flags are exactly as before. The model's
    train/eval mode is left as it is (the LoRA has no dropout). Runs with grad enabled even inside
    ``torch.inference_mode``.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig; got {type(config).__name__}")
    if not callable(velocity_fn):
        raise ValueError(f"velocity_fn must be callable as velocity_fn(model, x_t, t, cond); got {velocity_fn!r}")
    _check_data(data)
    if has_lora(model):
        raise ValueError("model already holds LoRA adapters (kept by an earlier keep_adapters=True run?); call "
                         "rfmi_core.lora.remove_lora(model) first")
    targets = resolve_targets(model, config.target_modules)
    state = load_checkpoint(resume_from) if resume_from is not None else None
    if state is not None:
        _check_resume(state, config, targets, len(data))
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    with torch.inference_mode(False), torch.enable_grad():
        params = inject_lora(model, targets, config.rank, config.alpha, config.seed)
        try:
            with gradient_checkpointing(model, config.checkpoint_modules, enabled=config.gradient_checkpointing):
                losses, steps_done = _run(model, data, velocity_fn, config, targets, params, state, folder, on_step,
                                          progress)
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


if __name__ == "__main__":  # python -m rfmi_core.train ...: the headless command (rfmi_core.train_cli)
    from .train_cli import main

    main()
