"""Training checkpoints of RFMI FT: LoRA weights, AdamW moments and step counts, global step, config and loss history,
as safetensors (no pickle), written atomically; and the checks that make a resumed run reproduce the uninterrupted
one."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open
from torch import Tensor, nn

from .lora import lora_parameters
from ..util.atomic import save_safetensors_atomic
from .config import TrainConfig

__all__ = ["CHECKPOINT_KIND", "TrainCheckpoint", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
           "check_resume", "restore"]

CHECKPOINT_KIND = "rfmi-ft-checkpoint"


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


def check_resume(state: TrainCheckpoint, config: TrainConfig, targets: list[str], data_size: int) -> None:
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


def restore(state: TrainCheckpoint, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
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
