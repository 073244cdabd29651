"""Peak GPU memory and s/step of RFMI FT's Train LoRA inside the real ComfyUI, beside ComfyUI's built-in TrainLoraNode
(prints figures; asserts nothing).

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfy-venv/bin/python benchmarks/train_lora_memory.py [options]

The model is an SD3.5-Medium-shaped MMDiT with random weights (depth 24: hidden 1536, 24 heads, attn2 in blocks 0..12;
context 154x4096, pooled 2048), bf16 weights, loaded by ``comfy.sd.load_diffusion_model_state_dict`` (the helpers of
benchmarks/comfy_sampler_overhead.py). One 1024^2 image (latent 16x128x128), batch 1, rank 32, bf16 autocast, gradient
checkpointing. Everything runs under ``torch.inference_mode()``, as ComfyUI's executor runs nodes.

  (a) RFMI Train LoRA: the node itself (RFMITrainLoRA), on a one-image fine-tune set written to a temporary output
      folder; default LoRA targets (attention qkv/proj of every joint block), Table 2's optimiser settings with
      grad_accumulation 1 (one sample a step, as the built-in node below).
  (b) ComfyUI's TrainLoraNode (comfy_extras/nodes_train.py) on the same model and latent: rank 32, AdamW, MSE, bf16,
      gradient checkpointing, its other inputs at their defaults (it adapts every layer). Skipped with the reason
      printed if this ComfyUI has no such node or it fails.

Each trainer runs once untimed (1 step), then twice, with --warm-steps and --steps steps: s/step = (t(steps) -
t(warm)) / (steps - warm), so model loading and adapter set-up cancel out. Peak memory is torch.cuda's
max_memory_allocated over the longer run (weights included), with the models unloaded and the peak reset before each
run. Target: (a) <= 24 GiB.

Options:
  default       the full-size model on the GPU (needs CUDA; nothing is downloaded; about 1-3 minutes on one H100/H200).
  --dry-run     the same code path on CPU at depth 2 and latent 16x16 (a smoke run; prints peak RSS instead).
  --depth / --latent / --steps / --warm-steps / --only a|b / --seed  override.
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_sampler_overhead import (REPO, conditioning, load_comfyui, load_pack, random_mmdit,  # noqa: E402
                                    sd35_medium_shape)

RANK = 32
SET_NAME = "bench_set"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, depth 2, latent 16x16: the same code path, small")
    p.add_argument("--depth", type=int, help="MMDiT depth (hidden 64*depth); default 24 (SD3.5-M), dry run 2")
    p.add_argument("--latent", type=int, help="latent side (image side / 8); default 128 (1024^2), dry run 16")
    p.add_argument("--steps", type=int, help="steps of the timed run; default 12, dry run 3")
    p.add_argument("--warm-steps", type=int, help="steps of the warm-up run subtracted; default 2, dry run 1")
    p.add_argument("--only", choices=["a", "b"], help="run one trainer")
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args()
    for key, full, dry in (("depth", 24, 2), ("latent", 128, 16), ("steps", 12, 3), ("warm_steps", 2, 1)):
        if getattr(a, key) is None:
            setattr(a, key, dry if a.dry_run else full)
    if a.steps <= a.warm_steps:
        p.error("--steps must exceed --warm-steps")
    return a


# ---------------------------------------------------------------------------------------------------- measuring


class Meter:
    """Wall time and peak memory of one run: CUDA max_memory_allocated/reserved, or this process's peak RSS on CPU."""

    def __init__(self, torch, device):
        self.torch, self.device, self.cuda = torch, device, device.type == "cuda"

    def free(self) -> None:
        import comfy.model_management as mm

        mm.unload_all_models()
        mm.soft_empty_cache()
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def run(self, fn) -> tuple[float, dict]:
        self.free()
        if self.cuda:
            self.torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if self.cuda:
            self.torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        if self.cuda:
            peak = {"allocated": self.torch.cuda.max_memory_allocated(self.device) / 2**30,
                    "reserved": self.torch.cuda.max_memory_reserved(self.device) / 2**30}
        else:
            peak = {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # kB -> GiB (Linux)
        return seconds, peak


def describe(peak: dict) -> str:
    if "allocated" in peak:
        return f"peak {peak['allocated']:.2f} GiB allocated ({peak['reserved']:.2f} GiB reserved)"
    return f"peak RSS of the process so far {peak['rss']:.2f} GiB (CPU run: not a GPU figure)"


def per_step(meter: Meter, train, warm: int, steps: int) -> tuple[float, float, dict]:
    """(s/step from the difference of two runs, the longer run's seconds, its peak memory), after an untimed one-step
    run (first-call costs: kernels, allocator, lazy imports)."""
    meter.run(lambda: train(1))
    t_warm, _ = meter.run(lambda: train(warm))
    t_full, peak = meter.run(lambda: train(steps))
    return (t_full - t_warm) / (steps - warm), t_full, peak


# ------------------------------------------------------------------------------------------------ the two trainers


def write_set(output_dir: Path, shape, side: int, seed: int) -> None:
    """A one-image fine-tune set (latent 16 x side x side, SD3 conditioning) under output/rfmi_sets/."""
    import torch

    sys.path.append(str(REPO))
    from rfmi_core import CandidateRecord, FinetuneSet

    positive, negative = conditioning(shape, seed)
    tensors = {text: {"cross_attn": c[0][0], "pooled_output": c[0][1]["pooled_output"]}
               for text, c in (("a benchmark prompt", positive), ("", negative))}
    latent = torch.randn(1, 16, side, side, generator=torch.Generator().manual_seed(seed))
    record = CandidateRecord(prompt="a benchmark prompt", negative="", seed=seed, batch_index=0, candidate_index=0,
                             mi=1.0, score="rfmi", velocity="cfg", model="random-mmdit", sampler={},
                             latent_shape=[16, side, side])
    FinetuneSet.open(output_dir / "rfmi_sets" / SET_NAME, create=True).append([record], latent, tensors)


def rfmi_trainer(node, model, step_times: list):
    """Train LoRA (the pack's node) for n steps; step_times collects the ProgressBar's per-step timestamps."""
    import comfy.utils

    def train(n: int) -> None:
        step_times.clear()
        comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: step_times.append(
            time.perf_counter()))
        values = dict(model=model, set_name=SET_NAME, lora_name=f"bench_{n}", steps=n, learning_rate=5e-6, rank=RANK,
                      alpha=float(RANK), warmup_steps=0, batch_size=1, grad_accumulation=1, max_grad_norm=0.005,
                      t_sampling="logit_normal", precision="bf16", gradient_checkpointing=True, save_every=0, resume=False,
                      seed=0, target_modules="", preset="custom", init_lora="(none)", validation_every=0,
                      validation_prompts=2, validation_steps=8, validation_cfg=4.5)
        try:
            node.execute(**{k: [v] for k, v in values.items()})
        finally:
            comfy.utils.set_progress_bar_global_hook(None)

    return train


def node_inputs(cls) -> dict:
    """name -> (type, options) of a V1 or V3 node's required and optional inputs."""
    types = cls.INPUT_TYPES()
    return {name: spec for section in ("required", "optional") for name, spec in (types.get(section) or {}).items()}


def default_value(spec):
    kind, options = spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, list):
        return options.get("default", kind[0] if kind else None)
    if kind == "COMBO":
        return options.get("default", (options.get("options") or [None])[0])
    return options.get("default")


def builtin_trainer(cls, model, latent, positive):
    """ComfyUI's TrainLoraNode for n steps, every input it has that we do not set at its default."""
    wanted = {"batch_size": 1, "grad_accumulation_steps": 1, "learning_rate": 1e-4, "rank": RANK, "optimizer": "AdamW",
              "loss_function": "MSE", "seed": 0, "training_dtype": "bf16", "gradient_checkpointing": True,
              "existing_lora": "[None]"}
    sockets = {"model": model, "latents": latent, "positive": positive}
    specs = node_inputs(cls)
    missing = [n for n, s in specs.items() if n not in sockets and n not in wanted and default_value(s) is None]
    if missing:
        raise RuntimeError(f"TrainLoraNode has inputs this script cannot fill: {missing}")
    kwargs = {n: sockets.get(n, wanted.get(n, default_value(s))) for n, s in specs.items()}
    as_lists = bool(getattr(cls, "INPUT_IS_LIST", False))
    v3 = hasattr(cls, "define_schema")
    run = cls.execute if v3 else getattr(cls(), cls.FUNCTION)

    def train(n: int) -> None:
        values = {**kwargs, "steps": n}
        run(**({k: [v] for k, v in values.items()} if as_lists else values))

    return train, {k: v for k, v in kwargs.items() if k not in sockets and k != "steps"}


# ----------------------------------------------------------------------------------------------------------- main


def main() -> None:
    opts = parse_args()
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        sys.exit("COMFYUI_PATH is not set: point it at a ComfyUI checkout and run with ComfyUI's Python")
    if not opts.dry_run:
        import torch

        if not torch.cuda.is_available():
            sys.exit("no CUDA device: this benchmark measures GPU memory; use --dry-run for the CPU smoke run")
    comfy_nodes, _ = load_comfyui(Path(comfyui), gpu=not opts.dry_run)

    import torch

    import comfy.model_management
    import comfy.utils
    import folder_paths

    comfy.utils.PROGRESS_BAR_ENABLED = False
    device = comfy.model_management.get_torch_device()
    if opts.dry_run:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    shape = sd35_medium_shape(opts.depth, "bf16")
    side = opts.latent
    if side // 2 > shape.pos_embed_max_size:
        sys.exit(f"latent {side} needs pos_embed_max_size >= {side // 2}")

    with tempfile.TemporaryDirectory(prefix="rfmi-train-bench-") as workdir:
        work = Path(workdir)
        registry = load_pack(comfy_nodes, work)
        folder_paths.set_output_directory(str(work / "output"))
        (work / "loras").mkdir()
        folder_paths.folder_names_and_paths["loras"] = ([str(work / "loras")], folder_paths.supported_pt_extensions)
        write_set(work / "output", shape, side, opts.seed)
        meter = Meter(torch, device)
        version = (Path(comfyui) / "comfyui_version.py").read_text().split("=")[-1].strip().strip("'\"") \
            if (Path(comfyui) / "comfyui_version.py").is_file() else "?"
        print(f"ComfyUI {version} at {Path(comfyui).resolve()}  torch {torch.__version__}  device {device}"
              + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                 f", {torch.get_num_threads()} threads (dry run)"))
        with torch.inference_mode():  # as PromptExecutor runs every node
            start = time.perf_counter()
            model, params = random_mmdit(shape, device, opts.seed)
            print(f"model: {shape.name}, depth {shape.depth} (hidden {64 * shape.depth}), {params / 1e6:.1f} M "
                  f"parameters, weights {model.model.get_dtype()}, built in {time.perf_counter() - start:.1f} s")
            print(f"one image: latent 16x{side}x{side} ({8 * side}^2, {(side // 2) ** 2} image tokens), context "
                  f"{shape.context_tokens}x{shape.context_in}; batch 1, rank {RANK}, bf16 autocast, gradient "
                  f"checkpointing; s/step from runs of {opts.warm_steps} and {opts.steps} steps")
            rows = []
            if opts.only in (None, "a"):
                step_times: list[float] = []
                rate, seconds, peak = per_step(meter, rfmi_trainer(registry["RFMITrainLoRA"], model, step_times),
                                               opts.warm_steps, opts.steps)
                gaps = [b - a for a, b in zip(step_times, step_times[1:])]
                median = f"; median step {statistics.median(gaps):.3f} s (ProgressBar)" if gaps else ""
                rows.append(("RFMI Train LoRA (attn qkv/proj, rank 32)", rate, peak))
                print(f"\n(a) RFMI Train LoRA: {opts.steps} steps in {seconds:.1f} s; {rate:.3f} s/step{median}; "
                      f"{describe(peak)}  (target <= 24 GiB)")
            if opts.only in (None, "b"):
                try:
                    import comfy_extras.nodes_train as nodes_train

                    cls = getattr(nodes_train, "TrainLoraNode")
                    positive, _ = conditioning(shape, opts.seed)
                    latent = {"samples": torch.randn(1, 16, side, side, generator=torch.Generator().manual_seed(1))}
                    train, settings = builtin_trainer(cls, model, latent, positive)
                    rate, seconds, peak = per_step(meter, train, opts.warm_steps, opts.steps)
                    rows.append(("ComfyUI TrainLoraNode (every layer, rank 32)", rate, peak))
                    print(f"\n(b) ComfyUI TrainLoraNode ({inspect.getsourcefile(cls)}), settings {settings}: "
                          f"{opts.steps} steps in {seconds:.1f} s; {rate:.3f} s/step; {describe(peak)}")
                except Exception as error:  # report and go on: the comparison is a courtesy, not the measurement
                    print(f"\n(b) ComfyUI TrainLoraNode did not run: {type(error).__name__}: {error}")
            meter.free()
        print("\n| trainer | s/step | peak memory |\n|---|---|---|")
        for name, rate, peak in rows:
            memory = f"{peak['allocated']:.2f} GiB" if "allocated" in peak else f"RSS {peak['rss']:.2f} GiB (CPU)"
            print(f"| {name} | {rate:.3f} | {memory} |")


if __name__ == "__main__":
    main()
