"""The settings of RFMI FT, declared once: each ``TrainConfig`` field carries its meaning and, where the value comes from
the paper or the reference code, its source (dataclass field metadata). The command line (``rfmi_core.train.cli``)
and the RFMI Train LoRA node read their flags, inputs, defaults and help from here (``setting`` / ``settings``).
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from ..mi.checks import require_choice
from .lora import DEFAULT_TARGETS

__all__ = ["T_SAMPLINGS", "LOW_MEMORY", "TrainConfig", "Setting", "setting", "settings", "config_from_settings",
           "low_memory"]

T_SAMPLINGS = ("logit_normal", "uniform")

PAPER = "the paper's Table 2"


def _field(default: Any, help: str, *, source: str | None = None, node: dict | None = None) -> Any:
    """A dataclass field whose metadata holds its help text, its source and what the ComfyUI node needs to show it
    (``node``: ``name`` if the input is named otherwise, ``default`` if the node's differs, min, max, step, round)."""
    return field(default=default, metadata={"help": help, "source": source, "node": node})


@dataclass
class TrainConfig:
    """Hyperparameters of RFMI FT; the defaults are the paper's Table 2 (rank, α, lr, warm-up, clipping, AdamW, steps).

    ``batch_size`` × ``grad_accum_steps`` samples make one optimizer step (effective batch 4 by default, the
    reference script's batch size, in micro-batches of 1 to fit a consumer GPU). ``target_modules``: a regex matched
    against whole module paths, or a list of module names (``lora.resolve_targets``). ``gradient_checkpointing``
    recomputes the forward of the modules matching ``checkpoint_modules`` (default: the numbered blocks, else the
    top-level children) in the backward pass. ``save_every`` = N writes a checkpoint every N steps (0: only at the
    end and on interrupt, when a checkpoint_dir is given). Each field's metadata holds its help text and source.
    """

    rank: int = _field(32, "LoRA rank r", source=PAPER, node=dict(min=1, max=512))
    alpha: float = _field(32.0, "LoRA alpha: the update B·A is scaled by alpha/r", source=PAPER,
                          node=dict(min=0.0, max=1024.0, step=1.0))
    target_modules: str | tuple[str, ...] = _field(
        DEFAULT_TARGETS, "the Linear modules to adapt: a regex over whole module paths, or a list of module names "
        "(a path or a dotted suffix of one); default: attention qkv/proj of every joint (SD3) / double (FLUX) block")
    lr: float = _field(5e-6, "AdamW learning rate, constant after the warm-up", source=PAPER,
                       node=dict(name="learning_rate", min=0.0, max=1.0, step=1e-6, round=1e-8))
    warmup_steps: int = _field(400, "optimizer steps of linear learning-rate warm-up", source=PAPER,
                               node=dict(min=0, max=1_000_000))
    max_grad_norm: float | None = _field(0.005, "gradient-norm clipping threshold (0: no clipping)", source=PAPER,
                                         node=dict(min=0.0, max=1000.0, step=0.001, round=1e-6))
    betas: tuple[float, float] = _field((0.9, 0.999), "AdamW betas beta1 beta2", source=PAPER)
    weight_decay: float = _field(1e-4, "AdamW weight decay", source=PAPER)
    eps: float = _field(1e-8, "AdamW epsilon", source="torch's AdamW default")
    steps: int = _field(2000, "optimizer steps to train (a resumed run continues up to this step)", source=PAPER,
                        node=dict(min=1, max=1_000_000))
    batch_size: int = _field(1, "samples per micro-batch (samples of different shapes need 1)",
                             node=dict(min=1, max=256))
    grad_accum_steps: int = _field(4, "micro-batches per optimizer step: batch_size × grad_accum_steps samples "
                                   "make one step", source="the reference code's batch size of 4",
                                   node=dict(name="grad_accumulation", min=1, max=1024))
    bf16: bool = _field(False, "bf16 autocast on the model's device type (the LoRA stays float32)",
                        node=dict(default=True))
    gradient_checkpointing: bool = _field(False, "recompute the checkpointed blocks' forward in the backward pass "
                                          "(less memory, more compute)", node=dict(default=True))
    checkpoint_modules: str | None = _field(None, "regex of the modules gradient checkpointing recomputes; None: "
                                            "the numbered blocks, else the top-level children")
    seed: int = _field(0, "seeds the LoRA's initialisation and every step's samples, times, noise and dropout",
                       node=dict(min=0, max=0xFFFFFFFF))
    save_every: int = _field(0, "write a checkpoint every N steps (0: only at the end and on interrupt)",
                             node=dict(default=250, min=0, max=1_000_000))
    t_sampling: str = _field("logit_normal", "law of the training times: logit_normal, t = sigmoid(m + s·n), "
                             "n ~ N(0, 1); or uniform", source=PAPER)
    logit_mean: float = _field(0.0, "m of the logit-normal times", source="SD3 practice (Esser et al. 2024)")
    logit_std: float = _field(1.0, "s of the logit-normal times", source="SD3 practice (Esser et al. 2024)")
    cond_dropout: float = _field(0.0, "probability of training a sample on the empty prompt instead of its own")
    key_prefix: str = _field("diffusion_model.", "prefix of the exported LoRA keys (ComfyUI's "
                             "LoraLoaderModelOnly reads diffusion_model.)")

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


LOW_MEMORY = {"bf16": True, "gradient_checkpointing": True, "batch_size": 1}
"""The low-memory preset: bf16 autocast, gradient checkpointing, micro-batches of one sample (``low_memory`` multiplies
grad_accum_steps by the batch size it replaces, so each optimiser step still averages batch_size × grad_accum_steps
samples). The conditioning is always the set's cached tensors: no text encoder is loaded to train."""


def low_memory(config: TrainConfig) -> TrainConfig:
    """``config`` with the low-memory preset's settings (``LOW_MEMORY``) at the same effective batch: micro-batches of
    one sample, batch_size × grad_accum_steps of them per optimiser step."""
    effective = config.batch_size * config.grad_accum_steps
    return replace(config, **LOW_MEMORY, grad_accum_steps=effective // LOW_MEMORY["batch_size"])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Setting:
    """One ``TrainConfig`` field as a front end shows it: ``name`` (the field), ``kind`` ("int", "float", "bool",
    "choice", "str", "pair" or "targets"), ``default``, ``help`` (with its source), ``choices`` and, for the node,
    ``node_name``, ``node_default`` and the widget's ``node_range`` (min, max, step, round; those given)."""

    name: str
    kind: str
    default: Any
    help: str
    source: str | None
    choices: tuple[str, ...] = ()
    node_name: str = ""
    node_default: Any = None
    node_range: dict = field(default_factory=dict)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def described(self) -> str:
        """The help text with the default and the source, e.g. "LoRA rank r (default 32; the paper's Table 2)"."""
        shown = " ".join(str(v) for v in self.default) if isinstance(self.default, tuple) else self.default
        origin = f"; {self.source}" if self.source else ""
        return f"{self.help} (default {shown}{origin})"

    @property
    def tooltip(self) -> str:
        """The help text with its source, for a front end that shows the default itself."""
        return f"{self.help} ({self.source})" if self.source else self.help


_CHOICES = {"t_sampling": T_SAMPLINGS}


def _kind(name: str, default: Any) -> str:
    if name == "target_modules":
        return "targets"
    if name in _CHOICES:
        return "choice"
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, tuple):
        return "pair"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return "str"  # str, or None for "not set"


def setting(name: str) -> Setting:
    """The ``Setting`` of the ``TrainConfig`` field ``name``."""
    for f in fields(TrainConfig):
        if f.name == name:
            node = dict(f.metadata.get("node") or {})
            default = f.default if f.default is not MISSING else None
            return Setting(name=f.name, kind=_kind(f.name, default), default=default, help=f.metadata["help"],
                           source=f.metadata.get("source"), choices=_CHOICES.get(f.name, ()),
                           node_name=node.pop("name", f.name), node_default=node.pop("default", default),
                           node_range=node)
    raise KeyError(f"TrainConfig has no field {name!r}")


def settings() -> list[Setting]:
    """Every ``TrainConfig`` field's ``Setting``, in declaration order."""
    return [setting(f.name) for f in fields(TrainConfig)]


def config_from_settings(values: dict[str, Any], *, node_names: bool = False) -> TrainConfig:
    """The TrainConfig of setting values keyed by field name (or, with ``node_names``, by the node's input names);
    fields not given keep their defaults, and a ``max_grad_norm`` of 0 means no clipping (None)."""
    chosen = {}
    for item in settings():
        key = item.node_name if node_names else item.name
        if key in values:
            chosen[item.name] = values[key]
    if "max_grad_norm" in chosen:
        chosen["max_grad_norm"] = chosen["max_grad_norm"] or None
    unknown = set(values) - {item.node_name if node_names else item.name for item in settings()}
    if unknown:
        raise ValueError(f"no training setting is called {', '.join(sorted(unknown))}")
    return TrainConfig(**chosen)
