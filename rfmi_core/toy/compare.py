"""What a LoRA changed in the toy model: base against base + LoRA on held-out prompts, judged, with 95% intervals.

    python -m rfmi_core.toy.compare LORA [--n 200] [--seed 0] [--steps 20] [--cfg 3] [--threads 1]

Both models sample the same prompts of the held-out "evaluation" half (never trained on by the base model, nor by the
demo's fine-tunes) from the same noise; the exact judge decides each image's validity and correctness. Prints, per
category, the share correct and valid of each model with 95% Wilson intervals and the difference with its Newcombe
interval (an interval that contains 0 is no measured change).
"""

from __future__ import annotations

import os
import time

import torch

from ..train.lora import load_lora_file, merge_lora_weights
from ..util.cli_help import CommandParser, UsageError, non_negative_float, non_negative_int, positive_int, run_cli
from .evaluate import DEFAULT_CFG, DEFAULT_STEPS, diff_ci, generate, heldout_set, judge_batch, rate
from .model import load_toy_model
from .prompts import CATEGORIES

__all__ = ["compare", "main"]

PROG = "python -m rfmi_core.toy.compare"


def compare(lora: dict, n: int, seed: int, steps: int, cfg: float, weights: str | None = None) -> list[str]:
    """The table's lines: per category and metric, base, base + LoRA and the difference."""
    base = load_toy_model(weights)
    tuned = load_toy_model(weights)
    merged = merge_lora_weights(tuned, lora)
    texts, categories, seeds = heldout_set(n, seed, "evaluation")
    lines = [f"base against base + LoRA ({merged} modules), {n} held-out evaluation images per category, CFG {cfg:g}, "
             f"{steps} Euler steps, the same prompts and noise:", "",
             "| category | metric | base | base + LoRA | LoRA − base [95% CI] |", "|---|---|---|---|---|"]
    verdicts = []
    for model in (base, tuned):
        images, _ = generate(model, texts, seeds, steps, cfg, progress=True, desc="judging")
        verdicts.append(judge_batch(images, texts))
    for category in CATEGORIES:
        mask = torch.tensor([c == category for c in categories])
        for metric, which in (("correct", 1), ("valid", 0)):
            before, after = rate(verdicts[0][which][mask]), rate(verdicts[1][which][mask])
            d, low, high = diff_ci(before, after)
            lines.append(f"| {category} | {metric} | {before} | {after} | {100 * d:+.1f} [{100 * low:+.1f}, "
                         f"{100 * high:+.1f}] |")
    return lines


def build_parser() -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work)."""
    parser = CommandParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("lora", help="a LoRA .safetensors of the toy model (python -m rfmi_core.train … --model toy)")
    parser.add_argument("--n", type=positive_int, default=200, help="held-out images per category and model")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the prompts and the noise")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="Euler steps")
    parser.add_argument("--cfg", type=non_negative_float, default=DEFAULT_CFG, help="guidance scale")
    parser.add_argument("--weights", default=None, help="the base toy weights (default: the shipped ones)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not os.path.isfile(args.lora):
        raise UsageError(f"no LoRA at {args.lora}; train one with python -m rfmi_core.train SET --model toy --out FILE")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print("\n".join(compare(load_lora_file(args.lora), args.n, args.seed, args.steps, args.cfg, args.weights)))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    run_cli(main, PROG)
