"""Cost of phrase MI per candidate against plain Best-of-N sampling with MI, on a CPU tiny latent transformer.

    python benchmarks/phrase_cost.py [--batch 2] [--steps 8] [--n-t 8] [--repeats 3] [--phrases 1 2 3 4] [--device cuda]

The model is accumulator_cost.py's DiT-shaped transformer (16×32×32 latent, ~3 M parameters) with an additive prompt
embedding and a time embedding, so y, ∅ and every y∖p are different conditions of the same forward. Per candidate:

- **sampling + MI** (plain Best-of-N): ``sample_with_mi``, 2 velocities a step (u_y, u_∅);
- **sampling + phrase MI**: ``sample_with_phrase_mi``, 2 + P velocities a step (one more per phrase), the same images;
- the same two with the conditions batched into one forward a step (2B rows against (2 + P)·B rows, as ComfyUI's
  cond batching would run them);
- **phrase scoring of existing latents** (``estimate_phrase_mi``, n_t draws of 2 + P velocities) beside plain
  ``estimate_mi`` (n_t draws of 2).

Rule of thumb along the trajectory: phrase MI costs about (2 + P)/2 times the sampling with MI (the velocity
evaluations dominate; the accumulators are < 1 % of a forward). Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from accumulator_cost import TinyLatentTransformer  # this folder (python benchmarks/phrase_cost.py)

from rfmi_core import estimate_mi, estimate_phrase_mi, sample_with_mi, sample_with_phrase_mi
from rfmi_core.mi.phrase_mi import PhraseTrajectoryMI
from rfmi_core.mi.trajectory import TrajectoryMI
from rfmi_core.util.cli_help import DefaultsHelpFormatter
from rfmi_core.mi.sampler import euler_sample


class ConditionedTiny(TinyLatentTransformer):
    """The tiny transformer with the prompt embedding [B, width] and a sinusoid of t added to every token."""

    def __init__(self, width: int = 256):
        super().__init__(width=width)
        self.width = width
        self.time = nn.Linear(2, width)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        angle = t.reshape(-1, 1).float() * torch.pi
        extra = self.time(torch.cat([angle.sin(), angle.cos()], dim=1))
        if cond is not None:
            extra = extra + cond
        y = self.out(self.blocks(tokens + extra[:, None, :]))
        y = y.reshape(b, h // self.patch, w // self.patch, c, self.patch, self.patch)
        return y.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def paired(baseline, candidate, repeats: int, device: torch.device) -> tuple[float, float, float]:
    """Runs baseline and candidate alternately (after one warm-up each): (median s, median s, median of the per-pair
    ratios). Pairing keeps the ratio honest on a shared machine whose load drifts between rows."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    baseline(), candidate()
    base_times, cand_times = [], []
    for _ in range(repeats):
        for fn, times in ((baseline, base_times), (candidate, cand_times)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    ratios = [c / b for b, c in zip(base_times, cand_times)]
    return statistics.median(base_times), statistics.median(cand_times), statistics.median(ratios)


def batched_sampling(model: ConditionedTiny, noise, sigmas, conds: list, cfg: float, phrases: int) -> None:
    """``euler_sample`` with the 2 + P conditions of a step in one forward of (2 + P)·B rows (phrases = 0: plain MI)."""
    plain, phrase_acc = TrajectoryMI(), PhraseTrajectoryMI(phrases) if phrases else None
    cond_rows = torch.cat(conds)  # [(2 + P)·B, width]

    def velocities(x, t):
        return model.velocity(x.repeat(len(conds), 1, 1, 1), t.repeat(len(conds)), cond_rows).chunk(len(conds))

    def accumulate(sigma, sigma_next, x, t, u):
        plain.add_step(sigma, sigma_next, x, u[0], u[1], cfg)
        if phrase_acc is not None:
            phrase_acc.add_step(sigma, sigma_next, x, u[0], u[1], list(u[2:]), cfg)

    euler_sample(velocities, noise, sigmas, cfg, [accumulate])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, default=2, help="candidates scored together")
    parser.add_argument("--steps", type=int, default=8, help="sampler steps per candidate")
    parser.add_argument("--n-t", type=int, default=8, help="importance-sampled times for existing latents")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions")
    parser.add_argument("--cfg", type=float, default=4.5, help="guidance scale")
    parser.add_argument("--phrases", type=int, nargs="+", default=[1, 2, 3, 4], help="phrase counts P to time")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda for the GPU variant")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = ConditionedTiny().eval().to(device)
    b = args.batch
    noise = torch.randn(b, 16, 32, 32, device=device)
    sigmas = torch.linspace(1, 0, args.steps + 1)
    cond, uncond = torch.randn(b, model.width, device=device), None
    ablated_all = [torch.randn(b, model.width, device=device) for _ in range(max(args.phrases))]
    empty = torch.zeros(b, model.width, device=device)
    x1 = torch.randn(b, 16, 32, 32, device=device)

    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; model {params / 1e6:.2f} M "
          f"parameters, "
          f"latent 16x32x32, batch {b}, {args.steps} Euler steps, cfg {args.cfg}, n_t {args.n_t}; seconds per "
          f"candidate (medians of {args.repeats}); each ratio is the median of {args.repeats} alternating pairs")
    print()
    print("| P | plain sampling + MI, s | sampling + phrase MI, s | ratio | batched: plain, s | batched: phrase, s "
          "| ratio | estimate_mi, s | phrase scoring, s | ratio | rule (2 + P)/2 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in args.phrases:
        ablated = ablated_all[:p]
        rows = [
            paired(lambda: sample_with_mi(model.velocity, noise, sigmas, cond, uncond, cfg=args.cfg),
                   lambda: sample_with_phrase_mi(model.velocity, noise, sigmas, cond, uncond, ablated, cfg=args.cfg),
                   args.repeats, device),
            paired(lambda: batched_sampling(model, noise, sigmas, [cond, empty], args.cfg, 0),
                   lambda: batched_sampling(model, noise, sigmas, [cond, empty, *ablated], args.cfg, p),
                   args.repeats, device),
            paired(lambda: estimate_mi(model.velocity, x1, cond, uncond, n_t=args.n_t, cfg=args.cfg),
                   lambda: estimate_phrase_mi(model.velocity, x1, cond, uncond, ablated, n_t=args.n_t, cfg=args.cfg),
                   args.repeats, device),
        ]
        cells = " | ".join(f"{base / b:.3f} | {cand / b:.3f} | {ratio:.2f}" for base, cand, ratio in rows)
        print(f"| {p} | {cells} | {(2 + p) / 2:.1f} |")
    print()
    print("Rule of thumb: along the trajectory, phrase MI for P phrases costs about (2 + P)/2 times sampling with MI "
          "(one more velocity per phrase per step); on existing latents, (2 + P)/2 times estimate_mi at the same n_t.")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
