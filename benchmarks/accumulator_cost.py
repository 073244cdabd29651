"""Cost of one TrajectoryMI.add_step as a fraction of one forward of a small transformer velocity model (CPU).

    python benchmarks/accumulator_cost.py [--batch 2] [--repeats 30]

The forward is the CFG pair a sampler runs anyway (cond + uncond, batched as 2B); the accumulator's step is the only
extra work RFMI adds along a trajectory. Target: < 1 %. Prints the medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rfmi_core import TrajectoryMI
from rfmi_core.util.cli_help import DefaultsHelpFormatter


class TinyLatentTransformer(nn.Module):
    """A DiT-shaped velocity model on a 16×32×32 latent (patch 2 → 256 tokens, width 256, 4 blocks, ~3 M parameters)."""

    def __init__(self, channels: int = 16, width: int = 256, depth: int = 4, patch: int = 2):
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(channels, width, patch, stride=patch)
        layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=4 * width, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.out = nn.Linear(width, channels * patch * patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        y = self.out(self.blocks(tokens))
        y = y.reshape(b, h // self.patch, w // self.patch, c, self.patch, self.patch)
        return y.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, default=2, help="latents per CFG forward")
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TinyLatentTransformer().eval()
    x = torch.randn(args.batch, 16, 32, 32)
    with torch.no_grad():
        forward = median_seconds(lambda: model(torch.cat([x, x])), args.repeats)
        u_y, u_0 = model(torch.cat([x, x])).chunk(2)
        accumulator = TrajectoryMI(velocity="cfg", score="rfmi", keep_map=True)
        step = median_seconds(lambda: accumulator.add_step(0.5, 0.45, x, u_y, u_0, 4.5), args.repeats)
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, latent 16x32x32")
    print(f"model: {params / 1e6:.2f} M parameters; CFG forward (2B rows): {forward * 1e3:.2f} ms (median of {args.repeats})")
    print(f"TrajectoryMI.add_step: {step * 1e3:.3f} ms")
    print(f"accumulator cost per step: {100 * step / forward:.2f} % of one CFG forward (target < 1 %)")


if __name__ == "__main__":
    main()
