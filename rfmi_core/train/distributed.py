"""Data-parallel RFMI FT under ``torch.distributed``, as launched by ``torchrun``.

    torchrun --nproc_per_node G -m rfmi_core.train SET --model ... --out lora.safetensors

``init_from_env`` starts the process group from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT`` or the rendezvous): NCCL when the rank trains on a GPU (``cuda:LOCAL_RANK``), gloo on
CPU. Without those variables nothing is started and the trainer runs in one process, as before.

The global batch (``batch_size`` × ``grad_accum_steps`` samples a step) and the seed define the run, whatever the
number of processes: every rank draws the step's samples, times, dropout and noise for the whole global batch from the
same generators and trains on its own contiguous shard of it (``World.shard``), in micro-batches of ``batch_size``;
each micro-batch's loss is weighted by its share of the global batch, the LoRA gradients are summed over the ranks
(``all_reduce``), then clipped and applied once per step on every rank, so the ranks' LoRAs stay equal and equal the
one-process run's up to float summation order. Only rank 0 writes checkpoints and the LoRA; a resumed run reads the
checkpoint on rank 0 and broadcasts it.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

__all__ = ["World", "launched_by_torchrun", "init_from_env", "shutdown", "current_world", "any_rank"]

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes (rank 0 of 1 without a process group)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of n samples: [rank·n // size, (rank + 1)·n // size)."""
        return slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)


def launched_by_torchrun() -> bool:
    """Whether torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK) are set."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def current_world() -> World:
    """The rank and size of the initialised default process group, or rank 0 of 1."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(device: str | None = None) -> torch.device | None:
    """Start the default process group from torchrun's environment; returns this rank's device, or None (and starts
    nothing) when not launched by torchrun.

    ``device``: None picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; ``"cuda"`` (no index) means
    ``cuda:LOCAL_RANK``; anything else is taken as it is. The backend follows the device: NCCL on CUDA, gloo
    otherwise."""
    if not launched_by_torchrun():
        return None
    dist = _dist()
    local_rank = int(os.environ["LOCAL_RANK"])
    if device is None:
        chosen = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        chosen = torch.device(device)
        if chosen.type == "cuda" and chosen.index is None:
            chosen = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return chosen


def shutdown(together: bool = False) -> None:
    """Destroy the default process group, if there is one. ``together`` (every rank finished its work): first a
    barrier, so no rank tears its connections down and exits while another still holds them (a rank that went
    first, as non-main ranks do while rank 0 writes its files, was seen to abort at exit with "terminate called
    without an active exception" in about 1 run in 40 under load). Without it (a rank failed) no collective is
    waited for: torchrun stops the others."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        if together and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where the tensors of a collective must be: the current GPU under NCCL, else the CPU."""
    dist = _dist()
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (a collective: every rank must call it); ``flag`` without a group."""
    if current_world().size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    _dist().all_reduce(value, op=_dist().ReduceOp.MAX)
    return bool(value.item() > 0)


def sum_gradients_and_loss(params: list[nn.Parameter], loss: float) -> float:
    """Sum the LoRA gradients and the weighted loss over the ranks, in one ``all_reduce`` (every rank calls it).

    A parameter without a gradient on every rank keeps none (AdamW then skips it, as in one process); one with a
    gradient on some rank gets the sum, missing gradients counting as zeros."""
    device = _collective_device()
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(device, torch.float32)
             for p in params]
    has_grad = torch.tensor([float(p.grad is not None) for p in params] + [loss], dtype=torch.float64)
    flat = torch.cat(parts) if parts else torch.zeros(0, device=device)
    summed_extra = has_grad.to(device)
    _dist().all_reduce(flat)
    _dist().all_reduce(summed_extra)
    extra = summed_extra.cpu()
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if extra[i] > 0:
            grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = grad.to(p.device).clone()
            else:
                p.grad.copy_(grad)
        offset += n
    return float(extra[-1])


def broadcast_parameters(params: list[nn.Parameter]) -> None:
    """Give every rank rank 0's values of ``params`` (they are seeded alike; this makes it so)."""
    dist = _dist()
    device = _collective_device()
    with torch.no_grad():
        for p in params:
            value = p.detach().to(device).clone()
            dist.broadcast(value, src=0)
            p.copy_(value.to(p.device))


def broadcast_from_main(compute: Any) -> Any:
    """``compute()`` run on rank 0, its result (or the exception it raised) given to every rank; every rank calls it.

    The object travels pickled between the run's own processes (``broadcast_object_list``)."""
    dist = _dist()
    box: list[Any] = [None]
    if current_world().is_main:
        try:
            box[0] = ("value", compute())
        except Exception as error:  # the other ranks must raise it too, rather than wait for a broadcast
            box[0] = ("error", error)
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


@contextmanager
def quiet_unless_main() -> Iterator[None]:
    """Within the block, the warnings of ranks other than 0 are dropped (rank 0 shows them once)."""
    with warnings.catch_warnings():
        if not current_world().is_main:
            warnings.simplefilter("ignore")
        yield
