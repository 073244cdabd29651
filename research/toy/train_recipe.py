"""The shipped toy weights in one command: ``train_model``'s four runs (base, layout, repair, counting), chained.

    python -m research.toy.train_recipe                       # ≈ 1.8–2.35 h on the 2-core CPU; resumable
    python -m research.toy.train_recipe --work runs/recipe --out runs/toy_rf.safetensors

Each stage is a list of ``train_model`` flags (``SHIPPED``, the commands recorded in the shipped files' metadata, see
``train_model``'s docstring for what each stage does and measured); ``{work}`` stands for the work folder, where each
stage writes ``<name>.safetensors``. A stage whose file already holds its last step is skipped and one with an earlier
step is resumed, so an interrupted recipe continues where it stopped (``--resume``: EMA weights as the start, a fresh
optimizer; a resumed stage can therefore differ a little from an uninterrupted one). The base is run as the shipped
one was: steps 1–6000, then resumed to 14000. The last stage's file is copied (atomically) to ``--out``.

Measured for the shipped file, on the shared 2-core CPU: base 8454 s (one thread; about 1.8 h on an idle core), layout
stage 95 s and repair stage 902 s (two threads each), counting stage 964 s (one thread, another run on the other
core). On an idle core the base's step takes 0.33–0.45 s (200 steps timed, two measurements), so the recipe needs
about 1.8–2.35 h idle (the four stages were run one by one; the chained command has not been timed end to end). The
first three stages draw one-group numeracy only (``--numeracy-groups 1``: the world they were trained in). The counting stage's batches under this code equal those of the run that made the shipped file (256
draws compared); an earlier numeracy stage rerun from its start file gave its shipped tensors bitwise (one thread,
this CPU).
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from dataclasses import dataclass

from safetensors import safe_open

from rfmi_core.util.cli_help import CommandParser, run_cli
from .train_model import DEFAULT_WEIGHTS, main as train_model_main
from .train_model import build_parser as train_model_parser

__all__ = ["Stage", "SHIPPED", "run_recipe", "stage_argv", "completed_steps", "recorded_flags"]


@dataclass(frozen=True)
class Stage:
    """One ``train_model`` run: its name (its file: ``{work}/<name>.safetensors``), its flags (no --out, --resume or
    --stop-after; ``{work}`` stands for the work folder) and the steps at which it pauses and is resumed."""

    name: str
    flags: tuple[str, ...]
    pauses: tuple[int, ...] = ()


SHIPPED: tuple[Stage, ...] = (
    Stage("base", ("--steps", "14000", "--save-every", "1000", "--numeracy-groups", "1"), pauses=(6000,)),
    Stage("layout", ("--init", "{work}/base.safetensors", "--prompt-slots", "--categories", "spatial",
                     "--low-t-share", "1", "--stf", "16", "--batch", "32", "--lr", "1e-3", "--warmup", "50",
                     "--decay", "none", "--steps", "500", "--ema", "0", "--seed", "3", "--save-every", "100",
                     "--threads", "2", "--numeracy-groups", "1")),
    Stage("repair", ("--init", "{work}/layout.safetensors", "--steps", "2000", "--lr", "5e-4", "--stf", "16",
                     "--low-t-share", "0.3", "--ema", "0.998", "--seed", "4", "--threads", "2",
                     "--numeracy-groups", "1")),
    Stage("counting", ("--init", "{work}/repair.safetensors",
                       "--categories", "numeracy,numeracy,numeracy,binding,spatial",
                       "--steps", "2500", "--lr", "5e-4", "--stf", "16", "--low-t-share", "0.3", "--ema", "0.99",
                       "--seed", "5", "--save-every", "500")),
)


def completed_steps(path: str) -> int:
    """The step a ``train_model`` file was saved at (0 when there is no file)."""
    if not os.path.isfile(path):
        return 0
    with safe_open(path, framework="pt") as handle:
        return int(handle.metadata().get("steps", 0))


RUN_FLAGS = ("--resume", "--stop-after")  # how far a run goes, not what it trains


def recorded_flags(path: str) -> list[str]:
    """The ``train_model`` flags a file's metadata records, less --resume and --stop-after N."""
    with safe_open(path, framework="pt") as handle:
        words = shlex.split(handle.metadata().get("command", ""))[3:]  # after "python -m research.toy.train_model"
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in RUN_FLAGS:
            skip = word == "--stop-after"
        else:
            kept.append(word)
    return kept


def stage_argv(stage: Stage, work: str, done: int, stop: int, total: int) -> list[str]:
    """``train_model`` flags that take ``stage`` from step ``done`` to step ``stop`` (of ``total``)."""
    argv = [flag.replace("{work}", work) for flag in stage.flags] + ["--out", os.path.join(work, stage.name + ".safetensors")]
    if done:
        argv.append("--resume")
    if stop < total:
        argv += ["--stop-after", str(stop)]
    return argv


def run_recipe(stages: tuple[Stage, ...], work: str, out: str) -> list[list[str]]:
    """Runs (or resumes, or skips when done) each stage in turn and copies the last stage's file to ``out``
    atomically. Returns the ``train_model`` argument lists it ran."""
    if not stages:
        raise ValueError("a recipe needs at least one stage")
    os.makedirs(work, exist_ok=True)
    ran: list[list[str]] = []
    for stage in stages:
        path = os.path.join(work, stage.name + ".safetensors")
        total = train_model_parser().parse_args(list(stage.flags)).steps
        if any(not 0 < pause < total for pause in stage.pauses):
            raise ValueError(f"stage {stage.name}: pauses {stage.pauses} must lie inside its {total} steps")
        expected = stage_argv(stage, work, 0, total, total)
        if os.path.isfile(path) and recorded_flags(path) != expected:
            raise ValueError(f"{path} was trained by other flags ({' '.join(recorded_flags(path)) or 'none recorded'}); "
                             f"move it away or pick another --work folder")
        for stop in (*stage.pauses, total):
            done = completed_steps(path)
            if done >= stop:
                continue
            argv = stage_argv(stage, work, done, stop, total)
            print(f"stage {stage.name}: steps {done + 1}–{stop} of {total}: python -m research.toy.train_model "
                  + shlex.join(argv), flush=True)
            train_model_main(argv)
            ran.append(argv)
        if completed_steps(path) < total:
            raise RuntimeError(f"stage {stage.name} ended at step {completed_steps(path)} of {total}; rerun to resume")
    last = os.path.join(work, stages[-1].name + ".safetensors")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    partial = out + ".partial"
    shutil.copyfile(last, partial)
    os.replace(partial, out)
    return ran


def build_parser() -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work)."""
    parser = CommandParser(prog="python -m research.toy.train_recipe", description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=os.path.join("runs", "toy_recipe"),
                        help="folder for each stage's weights (kept: a rerun resumes or skips finished stages)")
    parser.add_argument("--out", default=DEFAULT_WEIGHTS, help="where the final weights are copied")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    began = time.time()
    ran = run_recipe(SHIPPED, args.work, args.out)
    print(f"wrote {args.out} ({len(ran)} train_model runs, {time.time() - began:.0f} s)")


if __name__ == "__main__":
    run_cli(main, "python -m research.toy.train_recipe")
