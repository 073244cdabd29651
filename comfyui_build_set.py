"""Headless set building on a ComfyUI checkpoint: ``python -m rfmi_core.build_set``'s command with ComfyUI's loaders
and the pack's own Best-of-N (the glue side of the set builder; ``rfmi_core`` never imports ComfyUI or ``nodes/``).

    python comfyui_build_set.py --prompts FILE --set DIR --comfyui COMFYUI_DIR --checkpoint sd3.5_medium.safetensors
                                --text-encoders clip_g.safetensors clip_l.safetensors t5xxl_fp16.safetensors
    torchrun --nproc_per_node G comfyui_build_set.py ...

Run from the pack's folder (custom_nodes/ComfyUI-RFMI) with ComfyUI's python. ComfyUI is found by --comfyui, else
$COMFYUI_PATH, else as the ComfyUI whose custom_nodes/ holds this pack; the model and text encoders come from ComfyUI's
loader nodes, prompts are encoded by CLIP Text Encode, candidates sampled and scored by Best-of-N's own ``execute``
(``nodes/headless_model.py``) and recorded as Export Fine-tune Set records them: the set is the one the nodes build
for the same seed. Every other flag is ``rfmi_core.build_set``'s.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent
PACK = "rfmi_pack"
PROG = "python comfyui_build_set.py"
sys.path.insert(0, str(PACK_ROOT))  # rfmi_core, whether or not the pack is installed headless too

from rfmi_core.build_set import main  # noqa: E402
from rfmi_core.util.cli_help import UsageError, run_cli  # noqa: E402


def comfyui_root(given: str | None) -> Path:
    """--comfyui, else $COMFYUI_PATH, else the ComfyUI whose custom_nodes/ holds this pack."""
    explicit = given or os.environ.get("COMFYUI_PATH")
    if explicit:
        root = Path(explicit).expanduser().resolve()
    elif PACK_ROOT.parent.name == "custom_nodes":
        root = PACK_ROOT.parent.parent
    else:
        raise UsageError("give --comfyui DIR (or set COMFYUI_PATH): the ComfyUI folder whose loaders to use")
    if not (root / "comfy" / "samplers.py").is_file():
        raise UsageError(f"{root} is not a ComfyUI folder (no comfy/samplers.py)")
    return root


def pack_module(name: str):
    """A module of this pack imported as ComfyUI imports the pack (a package by path), e.g. "nodes.headless_model"."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, PACK_ROOT / "__init__.py",
                                                      submodule_search_locations=[str(PACK_ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACK}.{name}")


def comfy_maker(args, device):
    """The candidate maker of the checkpoint the flags name, in a started ComfyUI."""
    pack_module("nodes.headless_comfyui").start_comfyui(
        str(comfyui_root(args.comfyui)), device=device, extra_model_paths=args.extra_model_paths_config or [])
    return pack_module("nodes.headless_model").load(
        checkpoint=args.checkpoint, diffusion_model=args.diffusion_model, text_encoders=args.text_encoders or [],
        clip_type=args.clip_type, width=args.width, height=args.height, steps=args.steps, cfg=args.cfg,
        sampler_name=args.sampler, scheduler=args.scheduler, batch_size=args.batch_size, velocity=args.velocity,
        score=args.score, n_t=args.n_t)


if __name__ == "__main__":
    run_cli(lambda argv: main(argv, comfy_maker=comfy_maker, prog=PROG), PROG)
