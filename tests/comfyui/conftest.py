"""The ComfyUI tier: the real ComfyUI, found through COMFYUI_PATH (or by the pack standing in ComfyUI/custom_nodes/).

Without it every test here is skipped with one line. Nothing of ComfyUI is stubbed: these tests import ComfyUI's own
modules and load this pack the way ComfyUI loads custom nodes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "ComfyUI-RFMI"


def find_comfyui() -> Path | None:
    explicit = os.environ.get("COMFYUI_PATH")
    if explicit:
        return Path(explicit).resolve()
    if REPO.parent.name == "custom_nodes" and (REPO.parent.parent / "comfy").is_dir():
        return REPO.parent.parent
    return None


COMFYUI = find_comfyui()
if COMFYUI is None:
    pytest.skip("ComfyUI tier skipped: set COMFYUI_PATH to a ComfyUI checkout (see README)", allow_module_level=True)
if not (COMFYUI / "comfy" / "samplers.py").is_file():
    pytest.exit(f"COMFYUI_PATH={COMFYUI} is not a ComfyUI checkout (no comfy/samplers.py)", returncode=2)

# ComfyUI first on the path: its top-level `nodes`, `utils`, `server` must win over anything else.
sys.path.insert(0, str(COMFYUI))
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # for `import rfmi_core` in the tests (after ComfyUI: our nodes/ never shadows its nodes.py)

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing(False)
from comfy.cli_args import args  # noqa: E402

args.cpu = True  # before comfy.model_management is imported
import utils.extra_config  # noqa: E402,F401  (must precede `import nodes`: nodes.py puts comfy/ on sys.path)
import nodes as comfy_nodes  # noqa: E402

assert Path(comfy_nodes.__file__).resolve().parent == COMFYUI, f"`nodes` resolved to {comfy_nodes.__file__}"


@pytest.fixture(scope="session")
def rfmi_nodes(tmp_path_factory) -> dict:
    """Loads this pack with ComfyUI's own custom-node loader and returns ComfyUI's node registry (id → class)."""
    custom_nodes = tmp_path_factory.mktemp("custom_nodes")
    (custom_nodes / PACK_NAME).symlink_to(REPO, target_is_directory=True)
    loaded = asyncio.run(comfy_nodes.load_custom_node(str(custom_nodes / PACK_NAME)))
    assert loaded, "ComfyUI failed to load the pack (see the log above)"
    return comfy_nodes.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="session")
def pack_module(rfmi_nodes):
    """The pack as ComfyUI imported it (its nodes/ and rfmi_core/ are submodules of it)."""
    return sys.modules[rfmi_nodes["RFMISampler"].__module__.rsplit(".nodes.", 1)[0]]


@pytest.fixture(scope="session")
def pack_import(pack_module):
    """Imports a submodule of the pack as ComfyUI loaded it, e.g. pack_import("nodes.flow_model")."""
    import importlib

    return lambda name: importlib.import_module(f"{pack_module.__name__}.{name}")
