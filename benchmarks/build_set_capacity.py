"""Capacity of headless set building: images per hour per device from a measured s/step, and the device-hours of
the paper's set.

    python benchmarks/build_set_capacity.py                       # measure s/step on the toy model (--model toy)
    python benchmarks/build_set_capacity.py --s-per-step 0.25     # the same table from a given s/step (a GPU's)

s/step is the wall time of one sampler step of one candidate with CFG (u_y and u_∅ evaluated, MI read on the way):
the median over ``--repeats`` Best-of-N calls of ``python -m rfmi_core.build_set``'s toy maker (``--candidates`` in
batches of ``--batch-size``), each divided by candidates × steps. Then

    images/hour per device = 3600 / (steps · s/step)
    device-hours of a set  = prompts · factor · M · steps · s/step / 3600

for the paper's set, 700 prompts × 2 × 50 candidates × 100 steps (7·10⁶ candidate-steps), and its wall time on G
devices (the prompts are shared by the processes; 1400 prompt units keep G ≤ 64 devices busy to within one prompt).
Encoding the prompts and writing the set are left out (two text encodings and one append a prompt, against M × steps
sampler steps). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rfmi_core.finetune.candidates import toy_candidates
from rfmi_core.util.cli_help import DefaultsHelpFormatter

PAPER = dict(prompts=700, factor=2, m=50, steps=100)


def measure_s_per_step(candidates: int, batch_size: int, steps: int, repeats: int, device: str) -> list[float]:
    """s/step of each timed Best-of-N of the toy maker (one warm-up call first)."""
    maker = toy_candidates(steps=steps, cfg=4.5, batch_size=batch_size, device=torch.device(device))
    positive, negative = maker.encode("a red square to the left of a blue disk"), maker.encode("")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    maker.best_of_n(positive, negative, 0, batch_size)
    times = []
    for repeat in range(repeats):
        sync()
        start = time.perf_counter()
        maker.best_of_n(positive, negative, 1000 * (repeat + 1), candidates)
        sync()
        times.append((time.perf_counter() - start) / (candidates * steps))
    return times


def images_per_hour(s_per_step: float, steps: int) -> float:
    """3600 / (steps · s/step)."""
    return 3600.0 / (steps * s_per_step)


def device_hours(s_per_step: float, prompts: int, factor: int, m: int, steps: int) -> float:
    """prompts · factor · M · steps · s/step / 3600."""
    return prompts * factor * m * steps * s_per_step / 3600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--s-per-step", type=float, help="use this s/step instead of measuring (e.g. a GPU's)")
    parser.add_argument("--candidates", type=int, default=8, help="candidates per timed Best-of-N")
    parser.add_argument("--batch-size", type=int, default=4, help="candidates sampled together")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps of the timed runs")
    parser.add_argument("--repeats", type=int, default=5, help="timed Best-of-N calls")
    parser.add_argument("--device", default="cpu", help="where the toy model runs")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 32], help="device counts for the wall-time rows")
    args = parser.parse_args()

    if args.s_per_step is None:
        times = measure_s_per_step(args.candidates, args.batch_size, args.steps, args.repeats, args.device)
        s_per_step = statistics.median(times)
        print(f"measured: toy model (0.7 M parameters, 3×16×16), {args.device}, {torch.get_num_threads()} thread(s), "
              f"batch {args.batch_size}, {args.steps} steps, cfg 4.5: s/step {s_per_step:.3g} (median of "
              f"{len(times)}; range {min(times):.3g} … {max(times):.3g})")
    else:
        s_per_step = args.s_per_step
        print(f"given: s/step {s_per_step:.3g}")
    p = PAPER
    hours = device_hours(s_per_step, p["prompts"], p["factor"], p["m"], p["steps"])
    print(f"images/hour per device at {p['steps']} steps: {images_per_hour(s_per_step, p['steps']):,.0f} "
          f"(= 3600 / ({p['steps']} · s/step))")
    print(f"the paper's set, {p['prompts']} prompts × {p['factor']} × {p['m']} candidates × {p['steps']} steps: "
          f"{hours:,.2f} device-hours (= {p['prompts'] * p['factor'] * p['m'] * p['steps']:,} · s/step / 3600)")
    for g in args.gpus:
        print(f"  on {g:>3} device(s): {hours / g:,.2f} h wall")


if __name__ == "__main__":
    main()
