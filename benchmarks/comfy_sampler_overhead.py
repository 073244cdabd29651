"""Wall time of the RFMI nodes against the stock KSampler, inside the real ComfyUI (prints figures; asserts nothing).

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfy-venv/bin/python benchmarks/comfy_sampler_overhead.py [options]

ComfyUI is imported from COMFYUI_PATH and this pack is loaded by ComfyUI's own ``nodes.load_custom_node`` (the repo is
symlinked as custom_nodes/ComfyUI-RFMI in a temporary folder, as tests/comfyui/conftest.py does). The model is a
random-weight SD3-family MMDiT loaded through ``comfy.sd.load_diffusion_model_state_dict``. Everything runs under
``torch.inference_mode()``, as ComfyUI's executor runs nodes, with tqdm off and no latent previews.

  (a) RFMI Sampler vs KSampler, same seed / latent / conditioning, cfg > 1, euler: rounds of four back-to-back runs
      (KSampler, RFMI Sampler, KSampler again, KSampler on a clone with a no-op post-CFG hook; the order rotates each
      round), the median of the per-round ratios. KSampler again (A/A: the same call twice) and the no-op hook do the
      same model work as KSampler: their spread is the machine's noise floor, and a ratio inside it is not a measured
      overhead. Target: ratio <= 1.02 (<= 1.01 for SD3.5-M).
  (b) Best-of-N by MI (n candidates in chunks of batch_size) vs KSampler at the same batch size, run n/batch_size times:
      images/s of each and their ratio. Target: >= 0.95.
  (c) the exact score's cost: RFMI Sampler with score pmi at each --pmi-n-t against score rfmi (sampling alone, the
      score read along the way), rounds of both; (pmi − rfmi) / rfmi is the scoring time as a share of the sampling
      time. Rule of thumb: n_t calls of the model on (y, ∅) against steps calls on (y, ∅) for CFG, so n_t / steps
      (32 / 28 = 1.14 for SD3.5 at its 28 steps).

Options:
  default            a tiny MMDiT (depth 4: hidden 256, 4 heads; latent 16x32x32, batch 2) on CPU, float32.
  --sd35-medium      SD3.5-Medium-shaped MMDiT (depth 24: hidden 1536, 24 heads; attn2 in blocks 0..12; 1024^2 image ->
                     16x128x128 latent; context 154x4096, pooled 2048; pos_embed_max_size 384; qk_norm rms), random
                     weights in bf16 via load_diffusion_model_state_dict(sd, model_options={"dtype": torch.bfloat16}).
                     Defaults then: 10 steps, 5 rounds, batch 1, Best-of-N n 4 / batch_size 2.
  --gpu              ComfyUI on CUDA (args.cpu = False); the random state dict is drawn on the GPU.
  --dry-run          --sd35-medium's code path at depth 2, 16x16 latent, 2 steps, 1 round (a smoke run, on CPU).
  --threads N        torch CPU threads (default 1 on CPU: on a shared machine more threads spin-wait and the timings
                     drown in noise; ignored with --gpu).
  --depth / --latent / --batch / --steps / --repeats / --cfg / --bon-n / --bon-batch / --only a|b  override.

Part (a) ends with one more RFMI Sampler run whose tap methods (attach, post_cfg, on_step, finish) are timed: the tap's
own share of a run, a figure that other processes on the machine barely move (the ratio of rounds is noisier than the
tap's cost on a loaded CPU).

One H100: `--gpu --sd35-medium` (both parts) is expected to take a couple of minutes, dominated by start-up.
"""

from __future__ import annotations

import argparse
import importlib
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-RFMI"


# ----------------------------------------------------------------------------------------------------------- options

@dataclass
class ModelShape:
    """An SD3-family MMDiT: hidden = 64·depth and heads = depth (fixed by ComfyUI's MMDiT)."""

    name: str
    depth: int
    adm_in: int             # pooled-text width (y_embedder input)
    context_in: int         # text-token width (context_embedder input)
    context_tokens: int
    pos_embed_max_size: int
    x_attn_layers: list[int] = field(default_factory=list)  # SD3.5-M's extra x-block self-attention (attn2)
    dtype_name: str | None = None  # None: ComfyUI chooses (float32 on CPU), as the tests do


def tiny_shape(depth: int) -> ModelShape:
    return ModelShape("tiny MMDiT", depth=depth, adm_in=32, context_in=64, context_tokens=77, pos_embed_max_size=32)


def sd35_medium_shape(depth: int, dtype_name: str) -> ModelShape:
    return ModelShape("SD3.5-Medium-shaped MMDiT", depth=depth, adm_in=2048, context_in=4096, context_tokens=154,
                      pos_embed_max_size=384, x_attn_layers=[i for i in range(13) if i < depth], dtype_name=dtype_name)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", action="store_true", help="run ComfyUI on CUDA (default: args.cpu = True)")
    p.add_argument("--sd35-medium", action="store_true", help="SD3.5-Medium-shaped MMDiT, bf16, 1024x1024")
    p.add_argument("--dry-run", action="store_true", help="--sd35-medium at depth 2, 16x16 latent, 2 steps, 1 round")
    p.add_argument("--depth", type=int, help="MMDiT depth (hidden 64*depth, depth heads); tiny 4, SD3.5-M 24")
    p.add_argument("--latent", type=int, help="latent side (image side / 8); tiny 32, SD3.5-M 128")
    p.add_argument("--batch", type=int, help="batch of part (a); tiny 2, SD3.5-M 1")
    p.add_argument("--steps", type=int, help="sampler steps; tiny 20, SD3.5-M 10")
    p.add_argument("--repeats", type=int, help="timed rounds per part (after one warm-up round); default 5")
    p.add_argument("--cfg", type=float, default=4.5)
    p.add_argument("--bon-n", type=int, help="Best-of-N candidates; tiny 8, SD3.5-M 4")
    p.add_argument("--bon-batch", type=int, help="Best-of-N batch_size = KSampler batch in (b); tiny 4, SD3.5-M 2")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16", help="weights of --sd35-medium")
    p.add_argument("--only", choices=["a", "b", "c"], help="run one part")
    p.add_argument("--pmi-n-t", type=int, nargs="+", help="n_t of the exact score in part (c); default 8 16 32")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads on CPU runs (default 1)")
    a = p.parse_args()
    if a.dry_run:
        a.sd35_medium = True
    big = a.sd35_medium and not a.dry_run
    defaults = dict(depth=24 if big else 2 if a.dry_run else 4, latent=128 if big else 16 if a.dry_run else 32,
                    batch=1 if a.sd35_medium else 2, steps=10 if big else 2 if a.dry_run else 20,
                    repeats=1 if a.dry_run else 5, bon_n=4 if a.sd35_medium else 8, bon_batch=2 if a.sd35_medium else 4,
                    pmi_n_t=[2] if a.dry_run else [8, 16, 32])
    for key, value in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    return a


# ------------------------------------------------------------------------------------------------ ComfyUI and pack

def load_comfyui(comfyui: Path, gpu: bool):
    """Imports ComfyUI's top-level ``nodes`` the way tests/comfyui/conftest.py does (ComfyUI first on sys.path)."""
    if not (comfyui / "comfy" / "samplers.py").is_file():
        sys.exit(f"COMFYUI_PATH={comfyui} is not a ComfyUI checkout (no comfy/samplers.py)")
    sys.path.insert(0, str(comfyui))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = not gpu  # before comfy.model_management is imported
    import utils.extra_config  # noqa: F401  (must precede `import nodes`: nodes.py puts comfy/ on sys.path)
    import nodes as comfy_nodes

    if Path(comfy_nodes.__file__).resolve().parent != comfyui.resolve():
        sys.exit(f"`nodes` resolved to {comfy_nodes.__file__}, not ComfyUI's")
    return comfy_nodes, args


def load_pack(comfy_nodes, workdir: Path) -> dict:
    """This repo loaded by ComfyUI's own custom-node loader; returns ComfyUI's node registry (id -> class)."""
    custom_nodes = workdir / "custom_nodes"
    custom_nodes.mkdir()
    (custom_nodes / PACK_NAME).symlink_to(REPO, target_is_directory=True)
    if not asyncio.run(comfy_nodes.load_custom_node(str(custom_nodes / PACK_NAME))):
        sys.exit("ComfyUI failed to load the pack (see the log above)")
    for node_id in ("RFMISampler", "RFMIBestOfN"):
        if node_id not in comfy_nodes.NODE_CLASS_MAPPINGS:
            sys.exit(f"the pack loaded but {node_id} is not registered")
    return comfy_nodes.NODE_CLASS_MAPPINGS


# ------------------------------------------------------------------------------------------------------ the model

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def random_mmdit(shape: ModelShape, device, seed: int):
    """A random-weight MMDiT through ComfyUI's loader (detection -> model_base.SD3, ModelSamplingDiscreteFlow shift 3).

    The layer shapes come from ComfyUI's own class built on the meta device (no memory); the weights are drawn directly
    on ``device`` in the target dtype (SD3.5-M is ~2.5 B parameters: drawing them on the GPU takes a fraction of a
    second, on CPU in float32 it would take 10 GB and minutes). Scale 0.5/sqrt(fan_in) keeps every activation finite
    through the depth (RFMI refuses NaN/Inf velocities); RMS-norm gains are 1, the position table 0.02.
    """
    import torch

    import comfy.ops
    import comfy.sd
    from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

    dtype = getattr(torch, DTYPES[shape.dtype_name]) if shape.dtype_name else torch.float32
    hidden = 64 * shape.depth
    net = OpenAISignatureMMDITWrapper(
        input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=shape.depth, adm_in_channels=shape.adm_in,
        context_embedder_config={"target": "torch.nn.Linear",
                                 "params": {"in_features": shape.context_in, "out_features": hidden}},
        num_patches=shape.pos_embed_max_size ** 2, pos_embed_max_size=shape.pos_embed_max_size, qk_norm="rms",
        x_block_self_attn_layers=list(shape.x_attn_layers), operations=comfy.ops.disable_weight_init,
        device="meta", dtype=dtype,
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    state = {}
    for key, meta in net.state_dict().items():
        if key.endswith(("ln_q.weight", "ln_k.weight")):
            state[key] = torch.ones(meta.shape, device=device, dtype=dtype)
            continue
        std = 0.02 if key == "pos_embed" or meta.ndim < 2 else 0.5 / math.sqrt(meta[0].numel())
        state[key] = torch.randn(meta.shape, generator=generator, device=device, dtype=dtype).mul_(std)
    del net
    params = sum(v.numel() for v in state.values())
    model_options = {"dtype": dtype} if shape.dtype_name else {}
    model = comfy.sd.load_diffusion_model_state_dict(state, model_options=model_options)  # pops `state` empty
    del state
    if model is None:
        sys.exit("ComfyUI did not recognise the random MMDiT state dict")
    return model, params


def conditioning(shape: ModelShape, seed: int):
    """(positive, negative) SD3 CONDITIONING of batch 1 (broadcast to any latent batch, as a single prompt is)."""
    import torch

    def one(s):
        g = torch.Generator().manual_seed(s)
        return [[torch.randn(1, shape.context_tokens, shape.context_in, generator=g) * 0.5,
                 {"pooled_output": torch.randn(1, shape.adm_in, generator=g) * 0.5}]]

    return one(seed), one(seed + 1)


# --------------------------------------------------------------------------------------------------------- timing

def make_timer(use_cuda: bool):
    """fn -> (wall seconds, this process's CPU seconds, fn's result); CUDA is synchronised on both sides."""
    import torch

    def timed(fn):
        if use_cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        if use_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu, out

    return timed


def rounds(timed, arms: dict, repeats: int) -> dict:
    """One untimed warm-up of each arm, then ``repeats`` rounds that run every arm once, rotating which goes first.

    Returns {arm: (wall seconds, CPU seconds)}, each a list of ``repeats``; round i of every arm ran back to back.
    """
    for fn in arms.values():
        fn()
    names = list(arms)
    times = {name: ([], []) for name in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            wall, cpu, _ = timed(arms[name])
            times[name][0].append(wall), times[name][1].append(cpu)
    return times


def ratio_line(label: str, reference: list, other: list, target: str) -> str:
    ratios = [o / r for r, o in zip(reference, other)]
    return (f"  {label}: median of rounds {statistics.median(ratios):.4f}, of medians "
            f"{statistics.median(other) / statistics.median(reference):.4f}, of minima {min(other) / min(reference):.4f}"
            f"  {target}")


def cpu_time_line(cpu_first, cpu_second, label: str) -> str:
    """On CPU runs: the same ratio in process CPU time, which other processes on a shared machine disturb far less."""
    ratios = [b / a for a, b in zip(cpu_first, cpu_second)]
    return (f"  {label} in process CPU time (CPU runs only): median of rounds {statistics.median(ratios):.4f}, "
            f"of medians {statistics.median(cpu_second) / statistics.median(cpu_first):.4f}")


def load_average() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} CPUs)"
    except OSError:
        return "n/a"


def fmt(ts) -> str:
    return "[" + ", ".join(f"{t:.3f}" for t in ts) + "]"


def tap_share(node_class, run, use_cuda: bool) -> str:
    """One more run of ``run`` with the pack's TrajectoryTap methods timed (CUDA synchronised around each): the tap's
    own wall time against the run's."""
    import torch

    pack = node_class.__module__.rsplit(".nodes.", 1)[0]
    tap_class = importlib.import_module(pack + ".rfmi_core.mi.taps").TrajectoryTap
    names = ("attach", "post_cfg", "on_step", "finish")
    originals = {name: getattr(tap_class, name) for name in names}
    spent = [0.0]

    def timed(fn):
        def wrapper(*args, **kwargs):
            if use_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if use_cuda:
                    torch.cuda.synchronize()
                spent[0] += time.perf_counter() - start
        return wrapper

    for name, fn in originals.items():
        setattr(tap_class, name, timed(fn))
    try:
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    finally:
        for name, fn in originals.items():
            setattr(tap_class, name, fn)
    return (f"  tap's own time in one more RFMI Sampler run: {spent[0] * 1000:.1f} ms of {total * 1000:.0f} ms "
            f"({100 * spent[0] / total:.2f} %; attach + post_cfg + on_step + finish)")


# ----------------------------------------------------------------------------------------------------------- main

def main() -> None:
    opts = parse_args()
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        sys.exit("COMFYUI_PATH is not set: point it at a ComfyUI checkout and run with ComfyUI's Python")
    comfy_nodes, comfy_args = load_comfyui(Path(comfyui), opts.gpu)

    import torch

    import comfy.model_management
    import comfy.utils
    import latent_preview

    if not opts.gpu:
        torch.set_num_threads(opts.threads)

    comfy.utils.PROGRESS_BAR_ENABLED = False  # no tqdm (common_ksampler and the pack both read it)
    device = comfy.model_management.get_torch_device()
    if opts.gpu and device.type != "cuda":
        sys.exit(f"--gpu given but ComfyUI's device is {device}")
    use_cuda = device.type == "cuda"
    if opts.sd35_medium and not use_cuda and not opts.dry_run and opts.depth > 8:
        print("warning: a full SD3.5-M on CPU takes a very long time; use --gpu, or --dry-run for a smoke run")

    with tempfile.TemporaryDirectory(prefix="rfmi-bench-") as workdir:
        registry = load_pack(comfy_nodes, Path(workdir))
        rfmi_sampler, best_of_n = registry["RFMISampler"], registry["RFMIBestOfN"]
        shape = sd35_medium_shape(opts.depth, opts.dtype) if opts.sd35_medium else tiny_shape(opts.depth)
        side = opts.latent
        if side // 2 > shape.pos_embed_max_size:
            sys.exit(f"latent {side} needs pos_embed_max_size >= {side // 2}")
        with torch.inference_mode():  # as PromptExecutor runs every node
            start = time.perf_counter()
            model, params = random_mmdit(shape, device, opts.seed)
            build_s = time.perf_counter() - start
            positive, negative = conditioning(shape, opts.seed)
            previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)

            print(f"ComfyUI {Path(comfyui).resolve()}  torch {torch.__version__}  device {device}"
                  + (f" ({torch.cuda.get_device_name(device)})" if use_cuda else f", {torch.get_num_threads()} threads"))
            print(f"load average at start {load_average()} (other processes on this machine skew CPU timings)")
            print(f"previews: args.preview_method = {comfy_args.preview_method.value!r}, previewer = {previewer}; "
                  f"comfy.utils.PROGRESS_BAR_ENABLED = {comfy.utils.PROGRESS_BAR_ENABLED}; torch.inference_mode on")
            print(f"model: {shape.name}, depth {shape.depth} (hidden {64 * shape.depth}, {shape.depth} heads), "
                  f"attn2 blocks {shape.x_attn_layers or 'none'}, {params / 1e6:.1f} M parameters, "
                  f"weights {model.model.get_dtype()}, manual cast {model.model.manual_cast_dtype}, "
                  f"built in {build_s:.1f} s")
            print(f"latent 16x{side}x{side} ({8 * side}x{8 * side} image, {(side // 2) ** 2} image tokens), "
                  f"context {shape.context_tokens}x{shape.context_in}, pooled {shape.adm_in}; euler/simple, "
                  f"cfg {opts.cfg}, {opts.steps} steps, {opts.repeats} timed rounds after 1 warm-up round")
            timed = make_timer(use_cuda)
            common = dict(steps=opts.steps, cfg=opts.cfg, sampler_name="euler", scheduler="simple",
                          positive=positive, negative=negative)

            if opts.only in (None, "a"):
                latent = {"samples": torch.zeros(opts.batch, 16, side, side)}

                def stock():
                    return comfy_nodes.common_ksampler(model, opts.seed, opts.steps, opts.cfg, "euler", "simple",
                                                       positive, negative, latent)[0]["samples"]

                def rfmi():
                    out = rfmi_sampler.execute(model=model, seed=opts.seed, latent_image=latent, denoise=1.0,
                                               velocity="cfg", score="rfmi", **common)
                    return out.result[0]["samples"], out.result[1]

                def hooked():  # the same sampling on a clone with a post-CFG hook that does nothing
                    clone = model.clone()
                    clone.set_model_sampler_post_cfg_function(lambda args: args["denoised"],
                                                              disable_cfg1_optimization=True)
                    return comfy_nodes.common_ksampler(clone, opts.seed, opts.steps, opts.cfg, "euler", "simple",
                                                       positive, negative, latent)[0]["samples"]

                ours, mi = rfmi()
                same = torch.equal(ours, stock())
                times = rounds(timed, {"stock": stock, "rfmi": rfmi, "stock_again": stock, "hooked": hooked},
                               opts.repeats)
                (t_stock, c_stock), (t_rfmi, c_rfmi), (t_again, _), (t_hooked, _) = times.values()
                m_stock, m_rfmi = statistics.median(t_stock), statistics.median(t_rfmi)
                target = 1.01 if opts.sd35_medium else 1.02
                print(f"\n(a) RFMI Sampler vs KSampler, batch {opts.batch}  (latents bitwise equal: {same}; "
                      f"MI per image: {', '.join(f'{v:.4g}' for v in mi)} nats)")
                print(f"  KSampler       runs {fmt(t_stock)} s  median {m_stock:.3f} s = {m_stock / opts.steps:.4f} s/step")
                print(f"  RFMI Sampler   runs {fmt(t_rfmi)} s  median {m_rfmi:.3f} s = {m_rfmi / opts.steps:.4f} s/step")
                print(f"  KSampler again runs {fmt(t_again)} s  (the same call as the first arm: the noise floor)")
                print(f"  no-op hook     runs {fmt(t_hooked)} s  (KSampler on a clone with a post-CFG hook that does nothing)")
                print(ratio_line("ratio RFMI/KSampler", t_stock, t_rfmi, f"(target <= {target})"))
                print(ratio_line("ratio KSampler again/KSampler (A/A)", t_stock, t_again, "(1 up to noise)"))
                print(ratio_line("ratio no-op hook/KSampler", t_stock, t_hooked, "(1 up to noise: the hook machinery)"))
                if not use_cuda:
                    print(cpu_time_line(c_stock, c_rfmi, "ratio RFMI/KSampler"))
                print(tap_share(rfmi_sampler, rfmi, use_cuda))

            if opts.only in (None, "b"):
                n, bs = opts.bon_n, opts.bon_batch
                chunks = math.ceil(n / bs)
                one = {"samples": torch.zeros(1, 16, side, side)}
                batch = {"samples": torch.zeros(bs, 16, side, side)}

                def bon():
                    return best_of_n.execute(model=model, seed=opts.seed, latent_image=one, n=n, k=1, batch_size=bs,
                                             velocity="cfg", score="rfmi", **common)

                def stock_batches():
                    for c in range(chunks):
                        comfy_nodes.common_ksampler(model, opts.seed + c, opts.steps, opts.cfg, "euler", "simple",
                                                    positive, negative, batch)

                (t_stock, c_stock), (t_bon, c_bon) = rounds(timed, {"stock": stock_batches, "bon": bon},
                                                            opts.repeats).values()
                ips_stock = [chunks * bs / t for t in t_stock]
                ips_bon = [n / t for t in t_bon]
                ratios = [b / s for b, s in zip(ips_bon, ips_stock)]
                m_stock, m_bon = statistics.median(ips_stock), statistics.median(ips_bon)
                print(f"\n(b) Best-of-N (n {n}, batch_size {bs}, k 1) vs KSampler batch {bs} run {chunks}x")
                print(f"  KSampler       runs {fmt(t_stock)} s  median {m_stock:.3f} images/s")
                print(f"  Best-of-N      runs {fmt(t_bon)} s  median {m_bon:.3f} images/s")
                print(f"  per-round ratios {fmt(ratios)}")
                print(f"  images/s Best-of-N / KSampler: median of rounds {statistics.median(ratios):.4f}, of medians "
                      f"{m_bon / m_stock:.4f}, of best runs {min(t_stock) / min(t_bon) * n / (chunks * bs):.4f}  "
                      f"(target >= 0.95)")
                if not use_cuda:  # images/s ratio = (stock time / stock images) / (Best-of-N time / n)
                    print(cpu_time_line([c * chunks * bs for c in c_bon], [c * n for c in c_stock],
                                        "images/s Best-of-N / KSampler"))
            if opts.only in (None, "c"):
                latent = {"samples": torch.zeros(opts.batch, 16, side, side)}

                def sampler(score: str, n_t: int = 32):
                    return lambda: rfmi_sampler.execute(model=model, seed=opts.seed, latent_image=latent, denoise=1.0,
                                                        velocity="cfg", score=score, n_t=n_t, **common)

                print(f"\n(c) the exact score's cost: RFMI Sampler score pmi against score rfmi, batch {opts.batch}, "
                      f"{opts.steps} steps")
                for n_t in opts.pmi_n_t:
                    (t_rfmi, _), (t_pmi, _) = rounds(timed, {"rfmi": sampler("rfmi"), "pmi": sampler("pmi", n_t)},
                                                     opts.repeats).values()
                    share = [p / r - 1 for r, p in zip(t_rfmi, t_pmi)]
                    print(f"  n_t {n_t:3d}: rfmi runs {fmt(t_rfmi)} s, pmi runs {fmt(t_pmi)} s; scoring / sampling "
                          f"time: median of rounds {statistics.median(share):.3f} (rule of thumb n_t / steps "
                          f"{n_t / opts.steps:.3f})")
            if use_cuda:
                print(f"\npeak CUDA memory allocated {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
            print(f"\nload average at end {load_average()}")


if __name__ == "__main__":
    main()
