"""Headless RFMI FT: LoRA fine-tuning of any rectified-flow velocity model by flow matching (``rfmi_core.train``).

    python -m rfmi_core.train SET --model MODULE:FACTORY --out lora.safetensors [--latent-scale S --latent-shift B]
    python -m rfmi_core.train --data MODULE:FACTORY --model MODULE:FACTORY --out lora.safetensors
                              [--model-kwargs JSON] [--data-kwargs JSON] [--device cuda]
                              [--checkpoint-dir DIR] [--resume CKPT_OR_DIR] [--steps 2000] [--rank 32] ...

(``python -m rfmi_core.train_cli`` is the same command.) ``SET``: a fine-tune set folder (``rfmi_core.finetune_set``,
e.g. ComfyUI's output/rfmi_sets/<name>); its latents are ComfyUI LATENTs, so give the latent format's
``process_in`` as ``--latent-scale``/``--latent-shift`` (x1 = (latent − shift)·scale; SD3: 1.5305 / 0.0609, FLUX:
0.3611 / 0.1159; the toy model: none). ``--data``: instead of a set, a callable returning the dataset, items
``(latent [C, ...], cond, uncond)`` with condition dicts of [1, ...] tensors. ``--model``: a callable
(``package.module:function``) returning ``(module, velocity_fn)``: the nn.Module to adapt and
``velocity_fn(module, x_t, t, cond) -> u``, the paper velocity at paper time t (0 = noise, 1 = data); ``toy`` names
the toy transformer (``toy_model``). Factories are called with the JSON object of ``--model-kwargs`` /
``--data-kwargs`` as keyword arguments. Every ``TrainConfig`` field has a flag (defaults: the paper's Table 2);
``--target-regex`` or ``--target-names`` choose the adapted Linear modules. The LoRA is written in ComfyUI's format
(``<key-prefix><path>.lora_A.weight`` …), atomically; checkpoints (``--checkpoint-dir``: every ``--save-every`` steps,
at the end, and at the end of the step during which Ctrl-C was pressed) resume bit-for-bit with ``--resume``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from dataclasses import fields
from typing import Any, Callable

from torch import Tensor, nn

from .finetune_set import FinetuneSet
from .lora import save_lora
from .train import T_SAMPLINGS, TrainConfig, train_lora

TOY = "toy"


def load_factory(spec: str, flag: str) -> Callable[..., Any]:
    """The callable named by ``module:attribute`` (the attribute may be dotted)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{flag} must be MODULE:FACTORY (e.g. mypkg.models:load); got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
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
    tokens = cond["tokens"] if "tokens" in cond else cond["cross_attn"][..., 0]
    return model(x_t, t, tokens.round().long())


def toy_model(weights: str | None = None) -> tuple[nn.Module, object]:
    """``--model toy``: the toy transformer (the shipped weights, or ``weights``) and its velocity function."""
    from .toy.train_model import load_toy_model

    return load_toy_model(weights), toy_velocity


class SetData:
    """A fine-tune set's selected records as training items, latents in the model's space: (x − shift)·scale."""

    def __init__(self, path: str, scale: float = 1.0, shift: float = 0.0):
        self.data = FinetuneSet.open(path).training_data()
        self.scale, self.shift = scale, shift

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        latent, cond, uncond = self.data[index]
        return (latent - self.shift) * self.scale, cond, uncond


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
        print("\nstopping after this step (Ctrl-C again to stop now)", flush=True)

    def __call__(self, step: int, loss: float) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"stopped after step {step}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rfmi_core.train", description=__doc__.splitlines()[0])
    io = parser.add_argument_group("model, data, output")
    io.add_argument("set", nargs="?", help="a fine-tune set folder to train on (or give --data)")
    io.add_argument("--model", required=True, help=f"MODULE:FACTORY returning (nn.Module, velocity_fn), or {TOY!r}")
    io.add_argument("--data", help="MODULE:FACTORY returning the dataset (instead of SET)")
    io.add_argument("--latent-scale", type=float, default=1.0, help="SET latents: x1 = (latent − shift)·scale")
    io.add_argument("--latent-shift", type=float, default=0.0)
    io.add_argument("--model-kwargs", help="JSON object of keyword arguments for the model factory")
    io.add_argument("--data-kwargs", help="JSON object of keyword arguments for the data factory")
    io.add_argument("--out", required=True, help="the LoRA .safetensors to write")
    io.add_argument("--device", help="move the module there first (default: where the factory put it)")
    io.add_argument("--checkpoint-dir", help="write step_<n>.safetensors training checkpoints here")
    io.add_argument("--resume", help="a checkpoint file, or a folder (its latest), to continue from")
    io.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    targets = io.add_mutually_exclusive_group()
    targets.add_argument("--target-regex", help="adapt the Linear modules whose whole path matches this regex")
    targets.add_argument("--target-names", nargs="+", help="adapt these modules (a path or a dotted suffix of one)")

    defaults = TrainConfig()
    hyper = parser.add_argument_group("training (TrainConfig; defaults: the paper's Table 2)")
    hyper.add_argument("--rank", type=int, default=defaults.rank)
    hyper.add_argument("--alpha", type=float, default=defaults.alpha)
    hyper.add_argument("--lr", type=float, default=defaults.lr)
    hyper.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    hyper.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm, help="0: no clipping")
    hyper.add_argument("--betas", type=float, nargs=2, default=list(defaults.betas))
    hyper.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    hyper.add_argument("--eps", type=float, default=defaults.eps)
    hyper.add_argument("--steps", type=int, default=defaults.steps)
    hyper.add_argument("--batch-size", type=int, default=defaults.batch_size)
    hyper.add_argument("--grad-accum-steps", type=int, default=defaults.grad_accum_steps)
    hyper.add_argument("--bf16", action="store_true", help="bf16 autocast on the model's device type")
    hyper.add_argument("--gradient-checkpointing", action="store_true")
    hyper.add_argument("--checkpoint-modules", help="regex of the modules to recompute (default: numbered blocks)")
    hyper.add_argument("--seed", type=int, default=defaults.seed)
    hyper.add_argument("--save-every", type=int, default=defaults.save_every, help="0: only at the end")
    hyper.add_argument("--t-sampling", choices=T_SAMPLINGS, default=defaults.t_sampling)
    hyper.add_argument("--logit-mean", type=float, default=defaults.logit_mean)
    hyper.add_argument("--logit-std", type=float, default=defaults.logit_std)
    hyper.add_argument("--cond-dropout", type=float, default=defaults.cond_dropout)
    hyper.add_argument("--key-prefix", default=defaults.key_prefix)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the parsed flags (each field's flag is its name with dashes)."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values["max_grad_norm"] = args.max_grad_norm or None
    values["target_modules"] = args.target_regex or tuple(args.target_names or ()) or TrainConfig().target_modules
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        if (args.set is None) == (args.data is None):
            raise ValueError("give either a fine-tune SET folder or --data MODULE:FACTORY (one of the two)")
        model_factory = toy_model if args.model == TOY else load_factory(args.model, "--model")
        data_factory = (load_factory(args.data, "--data") if args.data else
                        lambda: SetData(args.set, args.latent_scale, args.latent_shift))
        model_kwargs, data_kwargs = _kwargs(args.model_kwargs, "--model-kwargs"), _kwargs(args.data_kwargs,
                                                                                            "--data-kwargs")
    except ValueError as error:
        parser.error(str(error))
    model, velocity_fn = model_factory(**model_kwargs)
    if args.device:
        model.to(args.device)
    data = data_factory(**data_kwargs)
    print(f"RFMI FT: {len(data)} samples, {config.steps} steps of {config.samples_per_step} samples, "
          f"rank {config.rank}, lr {config.lr:g}")
    try:
        with StopAfterStep() as stop:
            result = train_lora(model, data, velocity_fn, config, checkpoint_dir=args.checkpoint_dir,
                                resume_from=args.resume, on_step=stop, progress=not args.no_progress)
    except KeyboardInterrupt as interrupt:
        where = (f"resume with --resume {args.checkpoint_dir}" if args.checkpoint_dir
                 else "no --checkpoint-dir was given, so nothing was kept")
        print(f"\ninterrupted ({interrupt or 'during a step'}); {where}", file=sys.stderr)
        raise SystemExit(130) from None
    metadata = {"rfmi.steps_done": str(result.steps_done), "rfmi.config": config.to_json(),
                "rfmi.targets": json.dumps(result.targets)}
    path = save_lora(result.lora_state_dict, args.out, metadata)
    tail = result.losses[-min(10, len(result.losses)):]
    print(f"wrote {path}: {len(result.targets)} adapted modules, step {result.steps_done}, "
          f"mean loss of the last {len(tail)} steps {sum(tail) / max(1, len(tail)):.4f}")


if __name__ == "__main__":
    main()
