"""LoRA adapters for the RFMI FT trainer, through peft, injected into a model in place and fully removable.

A LoRA adapter adds a trainable low-rank update to a frozen Linear layer (Hu et al. 2021):

    y = W·x + b + (α/r)·B·A·x,      A ∈ R^{r×in} ~ N(0, 1/r²) ("gaussian", as the reference mitune script), B = 0

so training starts from the base model exactly. The adapters are peft's ``lora.Linear`` wrappers, put in place with
``peft.inject_adapter_in_model``: the caller keeps calling its own module object. ``remove_lora`` puts every original
Linear back, so the module tree, the state_dict keys and values and the ``requires_grad`` flags are as before.

The exported state dict follows the generic key format ComfyUI's stock ``LoraLoaderModelOnly`` reads
(``<prefix><module path>.lora_A.weight`` [r, in], ``.lora_B.weight`` [out, r], ``.alpha`` = α; ComfyUI applies
W + (α/r)·B·A).
"""

from __future__ import annotations

import json
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from ..util.atomic import save_safetensors_atomic

__all__ = [
    "DEFAULT_TARGETS",
    "parse_target_modules",
    "resolve_targets",
    "inject_lora",
    "remove_lora",
    "has_lora",
    "lora_parameters",
    "lora_state_dict",
    "save_lora",
    "load_lora_file",
    "load_lora_weights",
    "merge_lora_weights",
    "save_safetensors_atomic",
    "make_weights_trainable",
]

ADAPTER = "default"

DEFAULT_TARGETS = (
    r"joint_blocks\.\d+\.(?:context_block|x_block)\.attn\.(?:qkv|proj)"  # SD3 / SD3.5 MMDiT
    r"|double_blocks\.\d+\.(?:img_attn|txt_attn)\.(?:qkv|proj)"  # FLUX
)
"""Attention qkv and output projection of every joint (MMDiT) / double (FLUX) block, matched against the whole
module path (``re.fullmatch``); ``x_embedder.proj`` (a Conv2d), MLPs and FLUX single blocks are left out."""


@dataclass
class _Injection:
    """What ``remove_lora`` needs to restore: the base parameters' requires_grad flags and whether peft added
    the model's ``peft_config`` attribute."""

    requires_grad: dict[str, bool]
    added_peft_config: bool


_INJECTIONS: "weakref.WeakKeyDictionary[nn.Module, _Injection]" = weakref.WeakKeyDictionary()


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _matches(name: str, target_modules: str | Sequence[str]) -> bool:
    """A regex matches the whole path; a list entry matches the path itself or its dotted suffix (peft's rule)."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == entry or name.endswith("." + entry) for entry in target_modules)


def parse_target_modules(text: str) -> str | list[str]:
    """``target_modules`` from a line of text: empty gives ``DEFAULT_TARGETS``; text with regex characters is a regex;
    otherwise module names separated by commas or new lines."""
    text = text.strip()
    if not text:
        return DEFAULT_TARGETS
    if any(ch in text for ch in "\\()[]|*+?^$"):
        return text
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def resolve_targets(model: nn.Module, target_modules: str | Sequence[str] = DEFAULT_TARGETS) -> list[str]:
    """The sorted paths of the Linear modules of ``model`` that ``target_modules`` selects.

    ``target_modules`` is a regex (matched against the whole path) or a list of module names (a name matches a path
    equal to it or ending in ``.<name>``). Raises a ValueError naming ``target_modules`` when nothing matches (and
    names a few Linear modules the model has) or when a match is not an ``nn.Linear``.
    """
    if isinstance(target_modules, str):
        try:
            re.compile(target_modules)
        except re.error as error:
            raise ValueError(f"target_modules is not a valid regex ({error}): {target_modules!r}") from None
    elif not target_modules or not all(isinstance(entry, str) for entry in target_modules):
        raise ValueError(f"target_modules must be a regex or a non-empty list of module names; got {target_modules!r}")
    matched = [(name, module) for name, module in model.named_modules() if name and _matches(name, target_modules)]
    not_linear = [f"{name} ({type(module).__name__})" for name, module in matched if not isinstance(module, nn.Linear)]
    if not_linear:
        raise ValueError(f"target_modules selects modules that are not nn.Linear: {', '.join(not_linear[:5])}; "
                         f"LoRA here adapts Linear layers only")
    if not matched:
        linears = _linear_names(model)
        shown = ", ".join(linears[:6]) + (f", … ({len(linears)} in all)" if len(linears) > 6 else "")
        raise ValueError(f"target_modules {target_modules!r} matches no module of the model; "
                         f"its Linear modules include: {shown or 'none'}")
    return sorted(name for name, _ in matched)


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` holds peft tuner layers (adapters injected and not yet removed)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(module, BaseTunerLayer) for module in model.modules())


def inject_lora(model: nn.Module, targets: Sequence[str], rank: int, alpha: float,
                seed: int = 0) -> dict[str, nn.Parameter]:
    """Wrap each Linear at the paths ``targets`` in a peft LoRA layer, in place; returns the LoRA parameters by name.

    A is drawn N(0, 1/r²) from a CPU generator seeded with ``seed`` (the global RNG is left as it was), B = 0. The
    LoRA parameters are float32 (trained in full precision whatever the base dtype), on the base layer's device; all
    other parameters are frozen until ``remove_lora`` restores their flags.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be an integer ≥ 1; got {rank!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive; got {alpha!r}")
    if not targets:
        raise ValueError("targets must name at least one Linear module (see resolve_targets)")
    if has_lora(model):
        raise ValueError("model already holds LoRA adapters; call remove_lora(model) first")
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    had_peft_config = "peft_config" in model.__dict__
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", init_lora_weights="gaussian",
                        target_modules="|".join(re.escape(name) for name in targets))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    _INJECTIONS[model] = _Injection(flags, added_peft_config=not had_peft_config)
    params = lora_parameters(model)
    for p in params.values():
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


def _tuner_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]


def remove_lora(model: nn.Module) -> int:
    """Put every original Linear back in place of its peft wrapper; returns how many adapters were removed.

    Restores the ``requires_grad`` flags from before ``inject_lora`` and drops the ``peft_config`` attribute peft
    added, so the module tree and state_dict are exactly those of the model before injection. Safe to call twice.
    """
    layers = _tuner_layers(model)
    for name, module in layers:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, module.get_base_layer())
    record = _INJECTIONS.pop(model, None)
    if record is not None:
        for name, p in model.named_parameters():
            if name in record.requires_grad:
                p.requires_grad_(record.requires_grad[name])
        if record.added_peft_config:
            model.__dict__.pop("peft_config", None)
    return len(layers)


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA parameters of ``model`` by their names in ``model.named_parameters()``, sorted by name."""
    names = {f"{path}.{kind}.{ADAPTER}.weight" for path, _ in _tuner_layers(model) for kind in ("lora_A", "lora_B")}
    return {name: p for name, p in sorted(model.named_parameters()) if name in names}


def lora_state_dict(model: nn.Module, key_prefix: str = "diffusion_model.") -> dict[str, Tensor]:
    """The adapters of ``model`` in ComfyUI's generic LoRA format, float32 CPU copies.

    For each adapted module at path P: ``<key_prefix>P.lora_A.weight`` [r, in], ``<key_prefix>P.lora_B.weight``
    [out, r] and ``<key_prefix>P.alpha`` (0-d, = α), so that the patched weight is W + (α/r)·B·A.
    """
    state: dict[str, Tensor] = {}
    for path, module in _tuner_layers(model):
        key = f"{key_prefix}{path}"
        state[f"{key}.lora_A.weight"] = module.lora_A[ADAPTER].weight.detach().float().cpu().clone()
        state[f"{key}.lora_B.weight"] = module.lora_B[ADAPTER].weight.detach().float().cpu().clone()
        state[f"{key}.alpha"] = torch.tensor(float(module.lora_alpha[ADAPTER]))
    return state


def save_lora(state_dict: dict[str, Tensor], path: str | os.PathLike, metadata: dict | None = None,
              dtype: torch.dtype | None = None) -> Path:
    """Save a ``lora_state_dict`` (optionally cast to ``dtype``; α stays float32) atomically as safetensors.

    ``metadata`` values that are not strings are stored as JSON.
    """
    tensors = {k: (v.to(dtype) if dtype is not None and not k.endswith(".alpha") else v) for k, v in state_dict.items()}
    text = {"format": "pt"}
    text.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    return save_safetensors_atomic(tensors, path, text)


def load_lora_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a LoRA ``.safetensors`` file (no pickle: other formats are refused), float32 on the CPU."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"init_lora: {path.name} is not a .safetensors file; only safetensors LoRAs are loaded "
                         "(convert it, or export it again with this pack)")
    if not path.is_file():
        raise ValueError(f"init_lora: no file at {path}")
    return {k: v.float() for k, v in load_file(str(path)).items()}


_LORA_KEY = re.compile(r"(.+)\.(lora_A|lora_B|lora_down|lora_up)\.weight|(.+)\.alpha")
_KIND = {"lora_A": "lora_A", "lora_down": "lora_A", "lora_B": "lora_B", "lora_up": "lora_B"}


def _adapters_in(state_dict: dict[str, Tensor], key_prefix: str) -> dict[str, dict[str, Tensor]]:
    """The file's adapters by module path (relative to the model): {"lora_A", "lora_B", "alpha"} each; keys are
    ComfyUI's generic LoRA keys, ``<key_prefix><path>.lora_A.weight`` (or ``lora_down``), ``.lora_B.weight``
    (``lora_up``), ``.alpha``."""
    adapters: dict[str, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        match = _LORA_KEY.fullmatch(key)
        if match is None or not key.startswith(key_prefix):
            raise ValueError(f"init_lora: key {key!r} is not a LoRA key under {key_prefix!r} (expected "
                             f"{key_prefix}<module>.lora_A.weight, .lora_B.weight, .alpha, as this pack exports)")
        path = (match.group(1) or match.group(3))[len(key_prefix):]
        adapters.setdefault(path, {})[_KIND.get(match.group(2), "alpha")] = value
    return adapters


def load_lora_weights(model: nn.Module, state_dict: dict[str, Tensor], key_prefix: str = "diffusion_model.") -> int:
    """Start the injected adapters of ``model`` from a saved LoRA (``lora_state_dict``'s keys); returns how many.

    Each adapted module of the file must be adapted in ``model`` with the same rank; adapters the file lacks keep their
    fresh start (B = 0). A file alpha α_f other than the model's α scales B by α_f/α, so the update (α/r)·B·A is the
    file's exactly."""
    adapters = _adapters_in(state_dict, key_prefix)
    layers = dict(_tuner_layers(model))
    missing = sorted(set(adapters) - set(layers))
    if missing:
        raise ValueError(f"init_lora adapts {len(missing)} module(s) this run does not, e.g. {missing[0]}; set "
                         f"target_modules to the file's modules ({len(adapters)} in all)")
    with torch.no_grad():
        for path, tensors in adapters.items():
            if set(tensors) != {"lora_A", "lora_B", "alpha"}:
                raise ValueError(f"init_lora: {path} lacks {sorted({'lora_A', 'lora_B', 'alpha'} - set(tensors))}")
            layer = layers[path]
            a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            if tensors["lora_A"].shape != a.shape or tensors["lora_B"].shape != b.shape:
                raise ValueError(f"init_lora: {path} has rank {tensors['lora_A'].shape[0]} (A {list(tensors['lora_A'].shape)}), "
                                 f"this run rank {a.shape[0]} (A {list(a.shape)}): set rank to the file's")
            scale = float(tensors["alpha"]) / float(layer.lora_alpha[ADAPTER])
            a.copy_(tensors["lora_A"])
            b.copy_(tensors["lora_B"] * scale)
    return len(adapters)


def make_weights_trainable(net: nn.Module) -> int:
    """Replaces inference-mode parameters (ComfyUI loads weights inside torch.inference_mode, and autograd may not save
    those) by ordinary tensors with the same values, one at a time; returns how many. The weights stay bitwise equal."""
    count = 0
    with torch.inference_mode(False):
        for module in net.modules():
            for name, param in list(module._parameters.items()):
                if param is not None and param.is_inference():
                    module._parameters[name] = nn.Parameter(param.clone(), requires_grad=param.requires_grad)
                    count += 1
    return count


def merge_lora_weights(model: nn.Module, state_dict: dict[str, Tensor], key_prefix: str = "diffusion_model.") -> int:
    """Adds a saved LoRA (``lora_state_dict``'s keys) into ``model``'s Linear weights, W ← W + (α/r)·B·A, as ComfyUI's
    LoraLoader applies it; returns the number of modules changed. Every adapted module must exist in ``model``."""
    adapters = _adapters_in(state_dict, key_prefix)
    with torch.no_grad():
        for path, tensors in adapters.items():
            try:
                module = model.get_submodule(path)
            except AttributeError:
                raise ValueError(f"the LoRA adapts {path}, which this model does not have") from None
            a, b = tensors["lora_A"].float(), tensors["lora_B"].float()
            scale = float(tensors.get("alpha", torch.tensor(a.shape[0]))) / a.shape[0]
            module.weight += (scale * b @ a).to(module.weight.dtype)
    return len(adapters)
