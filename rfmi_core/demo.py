"""The main command. By default the toy-world loop (``rfmi_core.toy.demo``: generate → rank by MI → LoRA FT → judge);
with ``--analytic``, RFMI against closed-form mutual information on exact velocity fields (CPU, seconds).

    python -m rfmi_core.demo [--full | --tiny] [...]                 # = python -m rfmi_core.toy.demo
    python -m rfmi_core.demo --analytic [--images 2000] [--steps 100] [--seed 0]

Prints, for a jointly Gaussian channel (closed-form MI) and a Gaussian mixture whose component is the label
(MI from exact densities), the mean point-wise MI read along Euler trajectories (Algorithm 2) and estimated on exact
samples by importance-sampled t (Prop. 3.3), each ± its standard error, in nats.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from .mi.analytic import GaussianChannel, GaussianMixture
from .util.cli_help import CommandParser, run_cli, non_negative_int, positive_int
from .mi.estimate import estimate_mi
from .mi.sampler import sample_with_mi
from .mi.stats import mean_and_standard_error


PROG = "python -m rfmi_core.demo"


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    mean, standard_error = mean_and_standard_error(values)
    return float(mean), float(standard_error)


def run_case(name: str, field, truth: float, truth_se: float, images: int, steps: int, n_t: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    conditions = field.sample_condition(images, g)
    noise = torch.randn(images, field.dim_x, generator=g)
    tau = torch.linspace(1, 0, steps + 1)
    rows = {"case": name, "truth": (truth, truth_se)}
    for grid_name, sigmas in [("linear", tau), ("shift 3", 3 * tau / (1 + 2 * tau))]:
        _, result = sample_with_mi(field.velocity, noise, sigmas, conditions, None, mi_velocity="cond")
        rows[f"trajectory, {grid_name} grid"] = _mean_se(result.mi)
    data = field.sample_data(conditions, g)
    rows["estimate_mi (exact samples)"] = _mean_se(
        estimate_mi(field.velocity, data, conditions, None, n_t=n_t, generator=g, mi_velocity="cond"))
    return rows


def main(argv: list[str] | None = None) -> None:
    """``--analytic``: the analytic demo (``analytic_main``); anything else goes to the toy demo, whose ``--help`` is
    followed by the analytic demo's options."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--analytic" in argv:
        analytic_main([a for a in argv if a != "--analytic"])
        return
    from .toy.demo import main as toy_main

    if "-h" not in argv and "--help" not in argv:
        toy_main(argv, prog=PROG)
        return
    try:
        toy_main(argv, prog=PROG)
    except SystemExit:  # the toy demo's --help has been printed
        print("\n" + analytic_parser().format_help())
        raise


def analytic_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m rfmi_core.demo --analytic", formatter_class=argparse.HelpFormatter,
        description="--analytic: RFMI against closed-form MI on exact velocity fields (CPU, seconds) instead of the "
                    "toy-world loop; its options:")
    parser.add_argument("--images", type=positive_int, default=2000, help="images per case (default 2000)")
    parser.add_argument("--steps", type=positive_int, default=100, help="Euler steps per trajectory (default 100)")
    parser.add_argument("--n-t", type=positive_int, default=8,
                        help="importance-sampled times per image for estimate_mi (default 8)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the conditions, noise and times (default 0)")
    return parser


def analytic_main(argv: list[str] | None = None) -> None:
    parser = analytic_parser()
    args = parser.parse_args(argv)
    channel = GaussianChannel.random(dim_x=4, dim_y=2, noise_scale=0.5, seed=0)
    mixture = GaussianMixture.random(num_components=3, dim_x=4, seed=0)
    cases = [
        run_case("Gaussian channel, dim X = 4, dim Y = 2", channel, channel.true_mi, 0.0, args.images, args.steps,
                 args.n_t, args.seed),
        run_case("Gaussian mixture, 3 components, dim X = 4", mixture, *mixture.monte_carlo_mi(), args.images,
                 args.steps, args.n_t, args.seed),
    ]
    print(f"RFMI vs ground-truth MI (nats), {args.images} images, {args.steps} Euler steps, velocity 'cond'")
    for case in cases:
        truth, truth_se = case.pop("truth")
        print(f"\n{case.pop('case')}: true MI {truth:.4f}" + (f" ± {truth_se:.4f} (Monte Carlo)" if truth_se else " (closed form)"))
        for label, (mean, se) in case.items():
            z = (mean - truth) / math.hypot(se, truth_se)
            print(f"  {label:<30} {mean:.4f} ± {se:.4f}   ({z:+.1f} s.e.)")


if __name__ == "__main__":
    run_cli(main, PROG)
