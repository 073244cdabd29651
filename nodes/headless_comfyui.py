"""ComfyUI started without its server, for headless commands (``comfyui_build_set.py``).

What ComfyUI's main.py does before it loads a model, and nothing else: its folder first on ``sys.path`` (its ``nodes``,
``utils`` and ``comfy`` must win), command-line parsing off, ``--cpu`` when asked, this process's GPU chosen before
``comfy.model_management`` reads it (torchrun's LOCAL_RANK), the model folders of ``extra_model_paths.yaml``, and
ComfyUI's own progress bars off (the command shows one bar per process). No import of ComfyUI at this module's top:
the pack's other ``nodes/`` modules import ComfyUI, so they are imported after ``start_comfyui``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

__all__ = ["start_comfyui"]


def start_comfyui(root: str, device: torch.device, extra_model_paths: list[str] = ()) -> None:
    """Makes ComfyUI at ``root`` importable and configured for ``device`` (cpu, or cuda:i)."""
    root = str(Path(root).resolve())
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = device.type == "cpu"
    if device.type == "cuda":
        torch.cuda.set_device(device)  # comfy.model_management reads the current device when imported
    import utils.extra_config  # noqa: F401  (before `nodes`, as in main.py)

    own = os.path.join(root, "extra_model_paths.yaml")
    for config in ([own] if os.path.isfile(own) else []) + list(extra_model_paths):
        utils.extra_config.load_extra_path_config(config)
    import comfy.utils
    import nodes  # noqa: F401  ComfyUI's nodes.py: its loaders and CLIP Text Encode

    comfy.utils.set_progress_bar_enabled(False)
