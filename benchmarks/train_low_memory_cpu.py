"""Peak RSS and s/step of RFMI FT on CPU: the low-memory preset against a plain float32 run of the same effective batch
(prints figures; asserts nothing).

    OMP_NUM_THREADS=1 python benchmarks/train_low_memory_cpu.py [--steps 12] [--dim 384] [--depth 6] [--latent 32]

The model is a small SD3-like MMDiT with random weights (joint blocks with attention qkv/proj, the default LoRA
targets; a 16-channel latent of side --latent, patch 2; 77 context tokens), trained with ``rfmi_core.train.train_lora``
(rank 32) on random latents. Two settings, each in a fresh process so that its peak RSS is its own:

  plain       float32, no gradient checkpointing, batch_size 4, grad_accum_steps 1
  low memory  the preset (``rfmi_core.train.LOW_MEMORY``: bf16 autocast, gradient checkpointing, batch_size 1),
              grad_accum_steps 4: the same 4 samples a step
  preset without bf16   gradient checkpointing and batch_size 1 in float32 (a CPU without native bf16 emulates it)

Each process builds the model, runs one untimed step, then --steps timed steps: s/step is their mean wall time; peak RSS
is the process's maximum resident set (ru_maxrss), printed beside the RSS before training (torch and the model).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "plain": dict(bf16=False, gradient_checkpointing=False, batch_size=4, grad_accum_steps=1),
    "low memory": dict(grad_accum_steps=4),  # + the preset
    "preset without bf16": dict(bf16=False, gradient_checkpointing=True, batch_size=1, grad_accum_steps=4),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12, help="timed steps per setting (default 12)")
    p.add_argument("--dim", type=int, default=384, help="hidden size (default 384)")
    p.add_argument("--depth", type=int, default=6, help="joint blocks (default 6)")
    p.add_argument("--latent", type=int, default=32, help="latent side (default 32: 256 image tokens)")
    p.add_argument("--only", choices=list(SETTINGS), action="append", help="run these settings only (repeatable)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # run one setting in this process, print JSON
    return p.parse_args()


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(dim: int, depth: int, latent: int):
    """An SD3-like MMDiT (joint blocks, attention qkv/proj), its velocity function and 8 random training items."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Stream(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(dim, elementwise_affine=False)
            self.adaLN_modulation = nn.Linear(dim, 2 * dim)
            self.attn = nn.Module()
            self.attn.qkv, self.attn.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    class JointBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.context_block, self.x_block = Stream(), Stream()

        def forward(self, c, x, vec):
            qkv = []
            for stream, h in ((self.context_block, c), (self.x_block, x)):
                shift, scale = stream.adaLN_modulation(vec).unsqueeze(1).chunk(2, dim=-1)
                qkv.append(stream.attn.qkv(stream.norm(h) * (1 + scale) + shift))
            q, k, v = (t.unflatten(-1, (dim // 64, 64)).transpose(1, 2) for t in torch.cat(qkv, 1).chunk(3, -1))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
            oc, ox = o.split([c.shape[1], x.shape[1]], dim=1)
            c = c + self.context_block.attn.proj(oc)
            x = x + self.x_block.attn.proj(ox)
            return c + self.context_block.mlp(c), x + self.x_block.mlp(x)

    class MMDiT(nn.Module):
        def __init__(self):
            super().__init__()
            self.x_embedder = nn.Conv2d(16, dim, 2, stride=2)
            self.t_embedder = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
            self.context_embedder = nn.Linear(256, dim)
            self.joint_blocks = nn.ModuleList(JointBlock() for _ in range(depth))
            self.final_layer = nn.Linear(dim, 16 * 4)

        def forward(self, x, t, context):
            b, _, h, w = x.shape
            tokens = self.x_embedder(x).flatten(2).transpose(1, 2)
            vec = self.t_embedder(t.reshape(-1, 1).to(x.dtype))
            ctx = self.context_embedder(context)
            for block in self.joint_blocks:
                ctx, tokens = block(ctx, tokens, vec)
            out = self.final_layer(tokens).reshape(b, h // 2, w // 2, 16, 2, 2)
            return out.permute(0, 3, 1, 4, 2, 5).reshape(b, 16, h, w)

    def velocity(model, x_t, t, cond):
        return model(x_t, t, cond["cross_attn"])

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    items = [(torch.randn(16, latent, latent, generator=g), {"cross_attn": torch.randn(1, 77, 256, generator=g)},
              {"cross_attn": torch.zeros(1, 77, 256)}) for _ in range(8)]
    return MMDiT(), velocity, items


def run_one(name: str, args: argparse.Namespace) -> dict:
    import torch

    from rfmi_core.train import TrainConfig, low_memory, train_lora

    torch.set_num_threads(1)
    model, velocity, data = build(args.dim, args.depth, args.latent)
    before = rss_mib()
    config = TrainConfig(steps=1, warmup_steps=0, lr=1e-4, **SETTINGS[name])
    config = low_memory(config) if name == "low memory" else config
    train_lora(model, data, velocity, config)  # untimed: first-call set-up
    start = time.perf_counter()
    train_lora(model, data, velocity, TrainConfig(**{**config.__dict__, "steps": args.steps}))
    seconds = (time.perf_counter() - start) / args.steps
    return {"setting": name, "s_per_step": seconds, "peak_rss_mib": rss_mib(), "rss_before_mib": before,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "config": {k: getattr(config, k) for k in ("bf16", "gradient_checkpointing", "batch_size",
                                                        "grad_accum_steps")}}


def main() -> None:
    args = parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    flags = ["--steps", str(args.steps), "--dim", str(args.dim), "--depth", str(args.depth), "--latent",
             str(args.latent)]
    print(f"RFMI FT on CPU ({args.depth} joint blocks, dim {args.dim}, latent 16x{args.latent}x{args.latent}, rank 32, "
          f"4 samples a step, {args.steps} timed steps, torch threads 1)")
    for name in args.only or SETTINGS:
        done = subprocess.run([sys.executable, __file__, "--one", name, *flags], capture_output=True, text=True,
                              cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
        if done.returncode != 0:
            print(f"  {name}: failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {name:<19} {r['s_per_step']:.2f} s/step, peak RSS {r['peak_rss_mib']:.0f} MiB (before training "
              f"{r['rss_before_mib']:.0f} MiB; model {r['params_m']:.1f} M parameters)  {r['config']}")


if __name__ == "__main__":
    main()
