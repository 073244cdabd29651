"""Per-image accuracy of the point-wise MI estimators against the closed form, on a Gaussian channel with exact
velocities: the exact I-MMSE form at several draw counts, densities and with/without common draws; the paper's
Prop. 3.3 estimator; and the trajectory forms (Algorithm 2, and the I-MMSE integrand along the sampler's own path
with u*_i = (x_final − x_i)/(1 − t_i)).

    python benchmarks/pmi_draws.py [--dim-x 5] [--dim-y 2] [--images 400] [--seeds 3] [--smoke]

For each estimator: the mean over images (the MI), Spearman and Pearson with the closed-form i(x; y) of each image,
min–max over ``--seeds``. The trajectory forms are read on the images their own Euler trajectories made (400 steps),
at CFG 1 and CFG 3, against those images' closed form. Prints tables; asserts nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: research/ beside rfmi_core/

import argparse

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from rfmi_core import GaussianChannel, estimate_mi, exact_pointwise_mi, sample_with_mi

from research.path_immse import PathImmse


def summary(values: list[torch.Tensor], truth: list[torch.Tensor]) -> str:
    rho = [spearmanr(v, t).statistic for v, t in zip(values, truth)]
    r = [pearsonr(v, t).statistic for v, t in zip(values, truth)]
    mean = np.mean([float(v.mean()) for v in values])
    return (f"{mean:.3f} | {np.mean(rho):+.3f} [{min(rho):+.3f}, {max(rho):+.3f}] | "
            f"{np.mean(r):+.3f} [{min(r):+.3f}, {max(r):+.3f}]")


def trajectory_forms(channel: GaussianChannel, y: torch.Tensor, seed: int, steps: int, cfg: float):
    """(images, Algorithm 2 with u_y, the I-MMSE integrand on the path) for Euler with CFG ``cfg``."""
    noise = torch.randn(y.shape[0], channel.dim_x, generator=torch.Generator().manual_seed(seed))
    path = PathImmse()
    x, result = sample_with_mi(channel.velocity, noise, torch.linspace(1, 0, steps + 1), y, None, cfg=cfg,
                               mi_velocity="cond", observers=[path])
    return x, result.mi, path.score(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim-x", type=int, default=5)
    parser.add_argument("--dim-y", type=int, default=2)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400, help="Euler steps of the trajectory forms")
    parser.add_argument("--smoke", action="store_true", help="50 images, 1 seed, 20 steps (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.seeds, args.steps = 50, 1, 20
    torch.set_num_threads(1)
    channel = GaussianChannel.random(args.dim_x, args.dim_y, seed=0)
    g = torch.Generator().manual_seed(1)
    y = channel.sample_condition(args.images, g)
    x = channel.sample_data(y, g)
    truth = channel.pointwise_mi(x, y)
    print(f"Gaussian channel d = {args.dim_x}, k = {args.dim_y}, {args.images} images: true MI {channel.true_mi:.3f}, "
          f"per-image i(x; y) mean {float(truth.mean()):.3f}, sd {float(truth.std()):.3f}\n")
    print("| estimator (on the images x ~ p(x|y)) | mean | Spearman [min, max] | Pearson [min, max] |")
    print("|---|---|---|---|")
    seeds = range(args.seeds)
    for n_t in (16, 32, 64, 128):
        for t_eps in (0.99, 0.6):
            for common in (False, True):
                values = [exact_pointwise_mi(channel.velocity, x, y, None, n_t=n_t, t_eps=t_eps, common=common,
                                             generator=torch.Generator().manual_seed(s)) for s in seeds]
                label = f"exact, {n_t} draws, t_ε {t_eps}, {'common' if common else 'independent'} draws"
                print(f"| {label} | {summary(values, [truth] * len(values))} |")
    for n_t in (64, 256):
        values = [estimate_mi(channel.velocity, x, y, None, n_t=n_t, mi_velocity="cond",
                              generator=torch.Generator().manual_seed(s)) for s in seeds]
        print(f"| the paper's Prop. 3.3 (estimate_mi), {n_t} draws | {summary(values, [truth] * len(values))} |")
    print("\n| trajectory form (on its own Euler images) | mean | Spearman [min, max] | Pearson [min, max] |")
    print("|---|---|---|---|")
    for cfg in (1.0, 3.0):
        runs = [trajectory_forms(channel, y, 100 + s, args.steps, cfg) for s in seeds]
        own_truth = [channel.pointwise_mi(images, y) for images, _, _ in runs]
        print(f"| Algorithm 2 (u_y), CFG {cfg:g} | {summary([r[1] for r in runs], own_truth)} |")
        print(f"| I-MMSE on the path, CFG {cfg:g} | {summary([r[2] for r in runs], own_truth)} |")
        print(f"| (closed form of those images, CFG {cfg:g}) | {np.mean([float(t.mean()) for t in own_truth]):.3f} "
              "| | |")


if __name__ == "__main__":
    main()
