"""Gradient checkpointing that is safe for models which update their activations in place (ComfyUI's FLUX blocks).

``gradient_checkpointing`` runs the forward of the chosen blocks under ``torch.utils.checkpoint`` (non-reentrant):
their activations are recomputed in the backward pass instead of stored. A FLUX block adds to its inputs and to its
residual stream in place (``txt += ...``, ``pre_norm(x)`` then ``x += ...``), which would corrupt what the
recomputation saved; so each block gets copies of its floating-point inputs, and each activation the recomputation
saves goes to the checkpoint as a copy. Without checkpointing, ``saved_activation_copies`` does the same for a whole
forward (the trainer switches it on when autograd reports an in-place update).
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_CHECKPOINT_MODULES", "gradient_checkpointing", "saved_activation_copies", "is_in_place_error"]

DEFAULT_CHECKPOINT_MODULES = r"(?:joint_blocks|double_blocks|single_blocks|transformer_blocks|blocks|layers)\.\d+"


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


def _innermost_saved_tensor_hooks() -> tuple[Callable, Callable] | None:
    """The (pack, unpack) pair of the innermost ``saved_tensors_hooks`` now active, or None.

    Why a private torch API: inside ``torch.utils.checkpoint``'s recomputation the innermost hooks are the
    checkpoint's own, which store each saved activation for the backward pass. Only the innermost pair of hooks runs,
    so a context that wants to copy activations before the checkpoint keeps them must call the checkpoint's pack
    itself, and torch exposes the active pair only as ``torch._C._autograd._top_saved_tensors_default_hooks``
    (no public equivalent). Checked on torch 2.11, 2.13 and 2.14: it takes one bool (``ignore_is_tracing``) and
    returns the innermost pair, or None when no hooks are active. None too on a torch without it.
    """
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top(False) if top is not None else None


def _copy_if_activation(tensor: Tensor) -> Tensor:
    return tensor.clone() if tensor.grad_fn is not None else tensor


def _keep(tensor: Tensor) -> Tensor:
    return tensor


@contextmanager
def _recompute_on_copies() -> Iterator[None]:
    """The recomputation of a checkpointed block: each activation it saves goes to the checkpoint as a copy, so a block
    that then updates it in place (ComfyUI's FLUX: ``pre_norm(x)``, then ``x += ...``) cannot corrupt it. The copies
    live for one block's backward. (Composes with the checkpoint's own hooks, the innermost of the stack.)"""
    outer = _innermost_saved_tensor_hooks()
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


def saved_activation_copies(enabled: bool = True):
    """Within the block, autograd saves a copy of each activation it keeps for the backward pass (weights and inputs
    are kept as they are). A model that updates its residual stream in place after saving it (ComfyUI's FLUX single
    blocks: ``pre_norm(x)`` then ``x += ...``) can then be trained; it costs one copy of each saved activation."""
    if not enabled:
        return nullcontext()
    return torch.autograd.graph.saved_tensors_hooks(_copy_if_activation, _keep)


def is_in_place_error(error: RuntimeError) -> bool:
    """Whether autograd refused a backward because a saved tensor was modified in place."""
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
