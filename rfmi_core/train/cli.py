"""Headless RFMI FT: LoRA fine-tuning of any rectified-flow velocity model by flow matching.

    python -m rfmi_core.train SET --model MODULE:FACTORY --out lora.safetensors [--latent-scale S --latent-shift B]
    python -m rfmi_core.train --data MODULE:FACTORY --model MODULE:FACTORY --out lora.safetensors
                              [--model-kwargs JSON] [--data-kwargs JSON] [--device cuda]
                              [--checkpoint-dir DIR] [--resume CKPT_OR_DIR] [--init-lora LORA] [--low-memory]
                              [--steps 2000] [--rank 32] ...
    torchrun --nproc_per_node G [--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT] -m rfmi_core.train ...

``SET``: a fine-tune set folder (``rfmi_core.finetune_set``, e.g. ComfyUI's output/rfmi_sets/<name>); its latents
are ComfyUI LATENTs, so give the latent format's ``process_in`` as ``--latent-scale``/``--latent-shift``
(x1 = (latent − shift)·scale; SD3: 1.5305 / 0.0609, FLUX: 0.3611 / 0.1159; the toy model: none). ``--data``: instead
of a set, a callable returning the dataset, items ``(latent [C, ...], cond, uncond)`` with condition dicts of
[1, ...] tensors. ``--model``: a callable (``package.module:function``) returning ``(module, velocity_fn)``: the
nn.Module to adapt and ``velocity_fn(module, x_t, t, cond) -> u``, the paper velocity at paper time t (0 = noise,
1 = data); ``toy`` names the toy transformer (``toy_model``). Factories are called with the JSON object of
``--model-kwargs`` / ``--data-kwargs`` as keyword arguments. Every ``TrainConfig`` field has a flag, with its help
and default from the field (``rfmi_core.train.config``); ``--target-regex`` or ``--target-names`` choose the adapted
Linear modules. The LoRA is written in ComfyUI's format (``<key-prefix><path>.lora_A.weight`` …), atomically;
``--init-lora`` starts the adapters from a saved LoRA (safetensors, the keys this command writes) instead of zero;
``--low-memory`` is the low-memory preset (``config.LOW_MEMORY``: bf16, gradient checkpointing, batch 1). Training
checkpoints (``--checkpoint-dir``: every ``--save-every`` steps, at the end, and at the end of the step during which
Ctrl-C was pressed) resume bit-for-bit with ``--resume``.

Under ``torchrun`` the same command trains data-parallel (``rfmi_core.train.distributed``): one process per GPU
(``cuda:LOCAL_RANK``, NCCL; gloo on CPU), each on its shard of every global batch of ``--batch-size`` ×
``--grad-accum-steps`` samples, gradients summed over the processes, one AdamW step per global batch; the global batch
and the seed define the run, so it equals the one-process run. Rank 0 alone prints, writes checkpoints and the LoRA.
Without torchrun's variables no process group is started.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn

from ..util.cli_help import CommandParser, UsageError, finite_float, positive_float
from ..finetune.finetune_set import FinetuneSet
from .lora import load_lora_file, save_lora
from .config import Setting, TrainConfig, config_from_settings, low_memory, settings
from .data import LatentSpaceData, affine_latent_map
from .distributed import any_rank, current_world, init_from_env, shutdown
from .loop import train_lora

__all__ = ["build_parser", "config_from_args", "main", "load_factory", "toy_model", "toy_velocity", "set_data"]

TOY = "toy"
SET_HEADER = "set.json"  # every fine-tune set folder has one (rfmi_core.finetune_set)


def load_factory(spec: str, flag: str) -> Callable[..., Any]:
    """The callable named by ``module:attribute`` (the attribute may be dotted)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{flag} must be MODULE:FACTORY (e.g. mypkg.models:load); got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"{flag} {spec}: cannot import {module_name} ({error}); give MODULE:FACTORY of a module "
                         f"importable here (install it, or run from the folder that holds it)") from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"{flag} {spec}: {module_name} has no {attribute}; name a function defined in it")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{flag} {spec!r} is not callable")
    return target


def _kwargs(text: str | None, flag: str) -> dict:
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object; got {text!r}")
    return value


def toy_velocity(model: nn.Module, x_t: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
    """The toy transformer's paper velocity; its words come as ``tokens`` [B, L] or, as RFMI Toy Text Encode's
    CONDITIONING stores them in a fine-tune set, ``cross_attn`` [B, L, 1] (float word ids)."""
    from ..toy.conditioning import tokens_from_conditioning

    tokens = cond["tokens"].round().long() if "tokens" in cond else tokens_from_conditioning(cond["cross_attn"])
    return model(x_t, t, tokens)


def toy_model(weights: str | None = None) -> tuple[nn.Module, object]:
    """``--model toy``: the toy transformer (the shipped weights, or ``weights``) and its velocity function."""
    from ..toy.model import load_toy_model

    return load_toy_model(weights), toy_velocity


def set_data(path: str, scale: float = 1.0, shift: float = 0.0) -> LatentSpaceData:
    """A fine-tune set's selected records as training items, latents in the model's space: (x − shift)·scale."""
    if not (Path(path) / SET_HEADER).is_file():
        raise UsageError(f"{path} is not a fine-tune set (no {SET_HEADER}): give a folder written by Export Fine-tune "
                         f"Set (ComfyUI's output/rfmi_sets/<name>), or --data MODULE:FACTORY")
    return LatentSpaceData(FinetuneSet.open(path).training_data(), affine_latent_map(scale, shift))


class StopAfterStep:
    """An ``on_step`` hook that turns the first Ctrl-C into a stop at the end of the current step (so the checkpoint
    written on the way out is consistent); a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> "StopAfterStep":
        self.previous = signal.signal(signal.SIGINT, self._request)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if current_world().is_main:  # under torchrun each rank gets the signal
            print("\nstopping after this step (Ctrl-C again to stop now)", flush=True)

    def __call__(self, step: int, loss: float) -> None:
        if any_rank(self.requested):  # under torchrun every rank stops after the same step
            raise KeyboardInterrupt(f"stopped after step {step}")


def _add_setting(group: argparse._ArgumentGroup, item: Setting) -> None:
    """The flag of one TrainConfig field: its name with dashes, its type, default and help from the field."""
    help_text = item.described.replace("%", "%%")
    if item.kind == "bool":
        group.add_argument(item.flag, action="store_true", help=help_text)
    elif item.kind == "pair":
        group.add_argument(item.flag, type=float, nargs=2, default=list(item.default), metavar=("B1", "B2"),
                           help=help_text)
    elif item.kind == "choice":
        group.add_argument(item.flag, choices=item.choices, default=item.default, help=help_text)
    else:
        kind = {"int": int, "float": float}.get(item.kind, str)
        group.add_argument(item.flag, type=kind, default=item.default, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m rfmi_core.train", description=__doc__.splitlines()[0],
                           formatter_class=argparse.HelpFormatter)
    io = parser.add_argument_group("model, data, output")
    io.add_argument("set", nargs="?", help="a fine-tune set folder to train on (or give --data)")
    io.add_argument("--model", required=True, help=f"MODULE:FACTORY returning (nn.Module, velocity_fn), or {TOY!r} "
                                                   f"for the toy model shipped with the pack")
    io.add_argument("--data", help="MODULE:FACTORY returning the dataset (instead of SET)")
    io.add_argument("--latent-scale", type=positive_float, default=1.0,
                    help="SET latents into the model's space: x1 = (latent − shift)·scale (default 1; SD3 1.5305, "
                         "FLUX 0.3611)")
    io.add_argument("--latent-shift", type=finite_float, default=0.0,
                    help="the shift of --latent-scale (default 0; SD3 0.0609, FLUX 0.1159)")
    io.add_argument("--model-kwargs", help="JSON object of keyword arguments for the model factory (default none)")
    io.add_argument("--data-kwargs", help="JSON object of keyword arguments for the data factory (default none)")
    io.add_argument("--out", required=True, help="the LoRA .safetensors to write")
    io.add_argument("--device", help="move the module there first (default: where the factory put it; under torchrun "
                                     "cuda:LOCAL_RANK when CUDA is available, else cpu; 'cuda' means cuda:LOCAL_RANK)")
    io.add_argument("--checkpoint-dir", help="write step_<n>.safetensors training checkpoints here (default: none)")
    io.add_argument("--resume", help="a checkpoint file, or a folder (its latest), to continue from (default: none)")
    io.add_argument("--init-lora", help="a LoRA .safetensors (this pack's keys, as ComfyUI's LoraLoader reads them) the "
                                        "adapters start from instead of zero (same rank; default: none)")
    io.add_argument("--preset", choices=PRESETS, default=None,
                    help="the settings the flags start from: paper (Table 2, for SD3.5) or toy (toy.recipe: rank 16, "
                         "lr 1e-3, 600 steps of batch 32); default: toy for --model toy, else paper. Flags you give "
                         "override it")
    io.add_argument("--low-memory", action="store_true",
                    help="the low-memory preset: --bf16 --gradient-checkpointing --batch-size 1")
    io.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    targets = io.add_mutually_exclusive_group()
    targets.add_argument("--target-regex", help="adapt the Linear modules whose whole path matches this regex "
                                                "(default: attention qkv/proj of every joint/double block)")
    targets.add_argument("--target-names", nargs="+", help="adapt these modules (a path or a dotted suffix of one)")

    hyper = parser.add_argument_group("training (TrainConfig; defaults: the paper's Table 2 where so marked)")
    for item in settings():
        if item.kind != "targets":  # target_modules: --target-regex or --target-names
            _add_setting(hyper, item)
    return parser


PRESETS = ("paper", "toy")


def preset_values(args: argparse.Namespace) -> dict:
    """The preset's TrainConfig values: "paper" (Table 2, the defaults) or "toy" (``toy.recipe.TOY_PRESET``); the
    default preset follows the model (toy for ``--model toy``, else the paper's)."""
    preset = args.preset or (TOY if args.model == TOY else "paper")
    if preset == "paper":
        return {}
    from ..toy.recipe import TOY_PRESET

    return dict(TOY_PRESET)


def config_from_args(args: argparse.Namespace, given: set[str] = frozenset()) -> TrainConfig:
    """The TrainConfig of the parsed flags (each field's flag is its name with dashes): the preset's values, then every
    flag the user gave (``given``: their destinations) over them."""
    values = {item.name: getattr(args, item.name) for item in settings() if hasattr(args, item.name)}
    for name, value in preset_values(args).items():
        if name not in given and not (name == "target_modules" and (args.target_regex or args.target_names)):
            values[name] = value
    if args.target_regex or args.target_names or "target_modules" not in preset_values(args):
        values["target_modules"] = args.target_regex or tuple(args.target_names or ()) or TrainConfig().target_modules
    config = config_from_settings(values)
    return low_memory(config) if getattr(args, "low_memory", False) else config


def given_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations of the options typed in ``argv`` (a preset fills only the others)."""
    typed = {a.split("=", 1)[0] for a in (sys.argv[1:] if argv is None else argv) if a.startswith("--")}
    return {action.dest for action in parser._actions if typed & set(action.option_strings)}


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args, given_flags(parser, argv))
        if (args.set is None) == (args.data is None):
            raise ValueError("give either a fine-tune SET folder or --data MODULE:FACTORY (one of the two)")
        model_factory = toy_model if args.model == TOY else load_factory(args.model, "--model")
        data_factory = (load_factory(args.data, "--data") if args.data else
                        lambda: set_data(args.set, args.latent_scale, args.latent_shift))
        model_kwargs, data_kwargs = _kwargs(args.model_kwargs, "--model-kwargs"), _kwargs(args.data_kwargs,
                                                                                            "--data-kwargs")
    except ValueError as error:
        parser.error(str(error))
    device = init_from_env(args.device)  # under torchrun: the process group, and this rank's device
    finished = False
    try:
        _train(args, config, model_factory, model_kwargs, data_factory, data_kwargs,
               device if device is not None else args.device)
        finished = True
    finally:
        if device is not None:
            shutdown(together=finished)


def _train(args: argparse.Namespace, config: TrainConfig, model_factory: Callable, model_kwargs: dict,
           data_factory: Callable, data_kwargs: dict, device: Any) -> None:
    world = current_world()
    say = print if world.is_main else (lambda *a, **k: None)
    model, velocity_fn = model_factory(**model_kwargs)
    if device is not None:
        model.to(device)
    data = data_factory(**data_kwargs)
    init_lora = load_lora_file(args.init_lora) if args.init_lora else None
    processes = f" shared by {world.size} processes" if world.size > 1 else ""
    say(f"RFMI FT: {len(data)} samples, {config.steps} steps of {config.samples_per_step} samples{processes}, "
        f"rank {config.rank}, lr {config.lr:g}")
    try:
        with StopAfterStep() as stop:
            result = train_lora(model, data, velocity_fn, config, checkpoint_dir=args.checkpoint_dir,
                                resume_from=args.resume, on_step=stop, progress=not args.no_progress,
                                init_lora=init_lora)
    except KeyboardInterrupt as interrupt:
        where = (f"resume with --resume {args.checkpoint_dir}" if args.checkpoint_dir
                 else "no --checkpoint-dir was given, so nothing was kept")
        if world.is_main:
            print(f"\ninterrupted ({interrupt or 'during a step'}); {where}", file=sys.stderr)
        raise SystemExit(130) from None
    if not world.is_main:
        return
    metadata = {"rfmi.steps_done": str(result.steps_done), "rfmi.config": config.to_json(),
                "rfmi.targets": json.dumps(result.targets)}
    path = save_lora(result.lora_state_dict, args.out, metadata)
    tail = result.losses[-min(10, len(result.losses)):]
    print(f"wrote {path}: {len(result.targets)} adapted modules, step {result.steps_done}, "
          f"mean loss of the last {len(tail)} steps {sum(tail) / max(1, len(tail)):.4f}")
