"""Headless set building: a prompt list → a fine-tune set of each prompt's top-k of M candidates by MI.

    python -m rfmi_core.build_set --prompts FILE --set DIR --model toy [--candidates 50 --k 1 --cfg 4.5 --steps 28 --seed 0]
    python -m rfmi_core.build_set --prompts FILE --set DIR --model MODULE:FACTORY [--encoder MODULE:FACTORY
                                  --latent-shape C H W --shift 3 --latent-scale S --latent-shift B]
    python comfyui_build_set.py --prompts FILE --set DIR --comfyui COMFYUI_DIR --checkpoint sd3.5_medium.safetensors
                                --text-encoders clip_g.safetensors clip_l.safetensors t5xxl_fp16.safetensors
    torchrun --nproc_per_node G [--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT] -m rfmi_core.build_set ...

Each prompt's M candidates (seeds seed … seed + M − 1) are sampled and scored (``--score``: by default the exact
point-wise MI of each final image, ``pmi``; ``contrast`` / ``posterior`` against the editor's rival prompts;
``phrase-pmi`` against the prompt less each phrase; or the paper's Algorithm 2 along the trajectory, ``rfmi``), the
top k go into the set (``finetune.finetune_set``, one atomic append per prompt) with the prompt's and the negative's conditioning. Under torchrun the pending prompts are shared by the processes (one per
GPU, ``cuda:LOCAL_RANK``); a rerun skips the prompts already complete in the set (``finetune.set_builder``).

Models: ``toy`` (shipped with the pack); ``MODULE:FACTORY`` returning a candidate maker (``finetune.candidates``)
or, as the trainer's, ``(module, velocity_fn)`` plus ``--encoder`` (text → conditioning tensors) and
``--latent-shape``. A ComfyUI checkpoint (``--comfyui``, ``--checkpoint`` or ``--diffusion-model``, ``--text-encoders``)
is the glue's: the same command as ``python comfyui_build_set.py`` from the pack's folder, which loads ComfyUI and the
pack's nodes and hands this command their candidate maker (``make_maker``'s ``comfy_maker``); this package never
imports them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import torch

from .finetune.candidates import CandidateMaker, VelocityCandidates, toy_candidates
from .util.cli_help import CommandParser, UsageError, run_cli, finite_float, non_negative_float, non_negative_int, positive_float, positive_int
from .finetune.finetune_set import FinetuneSet
from .text.prompts import parse_prompt_lines
from .finetune.set_builder import BuildPlan, build_set, gather_report, pending_prompts
from .train.cli import TOY, _kwargs, load_factory
from .train.distributed import current_world, launched_by_torchrun, shutdown

from .mi.ranking import DEFAULT_SCORE, EXACT_SCORES, RANKING_N_T, SCORE_HELP
from .mi.trajectory import SCORES, VELOCITIES

__all__ = ["build_parser", "main", "make_maker", "ComfyMaker"]

PROG = "python -m rfmi_core.build_set"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = CommandParser(prog=prog, description=__doc__.splitlines()[0])
    run = parser.add_argument_group("prompts, set, selection")
    run.add_argument("--prompts", required=True, help="a text file, one prompt a line (blank lines and # lines skipped)")
    run.add_argument("--set", required=True, help="the fine-tune set folder to append to (created when absent)")
    run.add_argument("--m", "--candidates", dest="m", type=positive_int, default=50,
                     help="candidates sampled per prompt (M); under torchrun write --candidates (torchrun's own parser "
                          "reads --m as an abbreviation of its options)")
    run.add_argument("--k", type=positive_int, default=1, help="candidates kept per prompt, the top k by MI (paper: 1)")
    run.add_argument("--seed", type=non_negative_int, default=0, help="candidate j of every prompt has seed + j (as Best-of-N)")
    run.add_argument("--negative", default="", help="the negative prompt, the ∅ of the MI (default: empty)")
    run.add_argument("--no-progress", action="store_true", help="no tqdm bar")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--steps", type=positive_int, default=28, help="sampler steps (the paper: 100)")
    sampling.add_argument("--cfg", type=non_negative_float, default=4.5, help="classifier-free guidance scale")
    sampling.add_argument("--batch-size", type=positive_int, default=4, help="candidates sampled together")
    sampling.add_argument("--velocity", choices=VELOCITIES, default="cfg", help="the MI's velocity: u_cfg or u_y")
    sampling.add_argument("--score", choices=EXACT_SCORES + SCORES, default=DEFAULT_SCORE,
                          help="the score ranked by: " + "; ".join(f"{s}: {SCORE_HELP[s]}"
                                                                   for s in EXACT_SCORES + SCORES).replace("%", "%%"))
    sampling.add_argument("--n-t", type=positive_int, default=RANKING_N_T,
                          help="draws of the exact scores per candidate (each one model call per condition)")

    core = parser.add_argument_group("a velocity model (no ComfyUI)")
    core.add_argument("--model", help=f"{TOY!r} (the toy model shipped with the pack) or MODULE:FACTORY returning a "
                                      "candidate maker or (nn.Module, velocity_fn) as the trainer's")
    core.add_argument("--model-kwargs", help="JSON object of keyword arguments for the model factory")
    core.add_argument("--encoder", help="MODULE:FACTORY returning encode(text) -> {name: [1, ...] tensor} (with a "
                                        "(module, velocity_fn) factory)")
    core.add_argument("--latent-shape", type=positive_int, nargs="+", help="C H W of one latent (with a (module, velocity_fn) "
                                                                  "factory)")
    core.add_argument("--shift", type=positive_float, default=1.0, help="σ grid time shift (SD3: 3)")
    core.add_argument("--latent-scale", type=positive_float, default=1.0,
                      help="stored latent = x1 / scale + shift, the inverse of the trainer's map (SD3 1.5305)")
    core.add_argument("--latent-shift", type=finite_float, default=0.0, help="the shift of --latent-scale (SD3 0.0609)")
    core.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda:LOCAL_RANK when CUDA is available, else "
                                       "cpu; with --comfyui, cpu makes ComfyUI run on the CPU)")

    comfy = parser.add_argument_group("a ComfyUI checkpoint (ComfyUI's loaders and sampler)")
    comfy.add_argument("--comfyui", help="the ComfyUI folder (default: $COMFYUI_PATH, or the ComfyUI whose "
                                         "custom_nodes/ holds this pack)")
    comfy.add_argument("--checkpoint", help="a .safetensors name under models/checkpoints (Load Checkpoint)")
    comfy.add_argument("--diffusion-model", help="a .safetensors name under models/diffusion_models (Load Diffusion "
                                                 "Model), instead of --checkpoint")
    comfy.add_argument("--text-encoders", nargs="+", help="1–3 .safetensors names under models/text_encoders (Load "
                                                          "CLIP / DualCLIP / TripleCLIP; default: the checkpoint's)")
    comfy.add_argument("--clip-type", default="sd3", help="the CLIP loader's type with 1 or 2 text encoders")
    comfy.add_argument("--width", type=positive_int, default=1024, help="image width (the empty latent is width/8)")
    comfy.add_argument("--height", type=positive_int, default=1024, help="image height")
    comfy.add_argument("--sampler", default="euler", help="ComfyUI sampler_name")
    comfy.add_argument("--scheduler", default="simple", help="ComfyUI scheduler")
    comfy.add_argument("--extra-model-paths-config", action="append",
                       help="an extra_model_paths.yaml (repeatable; ComfyUI's own is read when present)")
    return parser


def _device(args: argparse.Namespace) -> torch.device:
    if args.device and args.device != "cuda":
        return torch.device(args.device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if args.device == "cuda" or (args.device is None and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _options(args: argparse.Namespace, device: torch.device) -> dict:
    return dict(steps=args.steps, cfg=args.cfg, shift=args.shift, batch_size=args.batch_size, velocity=args.velocity,
                score=args.score, n_t=args.n_t, latent_scale=args.latent_scale, latent_shift=args.latent_shift,
                device=device)


ComfyMaker = Callable[[argparse.Namespace, torch.device], CandidateMaker]
"""Makes the candidate maker of a ComfyUI checkpoint from the flags (the glue's: ``comfyui_build_set.py``)."""


def make_maker(args: argparse.Namespace, comfy_maker: ComfyMaker | None = None) -> CandidateMaker:
    """The candidate maker the flags name: a ComfyUI checkpoint's (through ``comfy_maker``), the toy model's or a
    factory's."""
    device = _device(args)
    if args.checkpoint or args.diffusion_model:
        if comfy_maker is None:
            raise UsageError("a ComfyUI checkpoint is built with the pack's ComfyUI command: python "
                             "custom_nodes/ComfyUI-RFMI/comfyui_build_set.py (same flags); this command takes --model")
        return comfy_maker(args, device)
    kwargs = _kwargs(args.model_kwargs, "--model-kwargs")
    if args.model == TOY:
        return toy_candidates(**kwargs, **_options(args, device))
    made = load_factory(args.model, "--model")(**kwargs)
    if hasattr(made, "best_of_n"):
        return made
    module, velocity_fn = made
    if not args.encoder or not args.latent_shape:
        raise UsageError("a (module, velocity_fn) factory needs --encoder MODULE:FACTORY and --latent-shape C H W")
    encoder = load_factory(args.encoder, "--encoder")()
    return VelocityCandidates(module, velocity_fn, encoder, tuple(args.latent_shape), **_options(args, device))


def _check(args: argparse.Namespace) -> BuildPlan:
    comfy_model = bool(args.checkpoint or args.diffusion_model)
    if comfy_model == bool(args.model):
        raise ValueError("give --model (toy or MODULE:FACTORY), or --checkpoint/--diffusion-model with --comfyui "
                         "(one of the two)")
    if args.checkpoint and args.diffusion_model:
        raise ValueError("give --checkpoint or --diffusion-model, not both")
    if args.diffusion_model and not args.text_encoders:
        raise ValueError("--diffusion-model has no text encoder: give --text-encoders")
    for name, value in (("--m", args.m), ("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--n-t", args.n_t)):
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1; got {value}")
    try:
        text = Path(args.prompts).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"--prompts {args.prompts} cannot be read ({error.strerror})") from None
    return BuildPlan(tuple(parse_prompt_lines(text)), m=args.m, k=args.k, seed=args.seed, negative=args.negative)


def main(argv: list[str] | None = None, comfy_maker: ComfyMaker | None = None, prog: str = PROG) -> None:
    """The command; ``comfy_maker`` and ``prog`` are the ComfyUI command's (``comfyui_build_set.py``)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        plan = _check(args)
    except ValueError as error:
        parser.error(str(error))
    if launched_by_torchrun():  # a gloo group carries the pending list and the summary, whatever the device
        import torch.distributed as dist

        dist.init_process_group(backend="gloo")
    finished = False
    try:
        _run(args, plan, comfy_maker)
        finished = True
    finally:
        shutdown(together=finished)


def _run(args: argparse.Namespace, plan: BuildPlan, comfy_maker: ComfyMaker | None = None) -> None:
    world = current_world()
    try:
        maker = make_maker(args, comfy_maker)
        report = build_set(maker, plan, args.set, world, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\nrank {world.rank}: interrupted; every prompt appended so far is complete in {args.set}: rerun the "
              "same command to build the rest", file=sys.stderr)
        raise SystemExit(130) from None
    total = gather_report(report, world)
    if not world.is_main:
        return
    left = len(pending_prompts(FinetuneSet.open(args.set), maker, plan))
    listed = len(dict.fromkeys(plan.prompts))
    processes = f" by {world.size} processes" if world.size > 1 else ""
    print(f"built {total.built} prompts{processes} ({total.skipped} already complete, skipped): {total.images} "
          f"candidates in {total.seconds:.1f} s, {total.images_per_second:.2f} images/s; {listed - left} of {listed} "
          f"prompts complete in {args.set}")


if __name__ == "__main__":
    run_cli(main, PROG)
