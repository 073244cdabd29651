"""The ComfyUI under test is inside the pack's declared `requires-comfyui` range (pyproject.toml): the range claims
only what this tier runs on."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 (tomllib)")

REPO = Path(__file__).resolve().parents[2]


def test_the_comfyui_under_test_is_inside_requires_comfyui():
    import comfyui_version  # ComfyUI's own version file (conftest put COMFYUI_PATH first on sys.path)

    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["comfy"]["requires-comfyui"]
    assert comfyui_version.__version__ in SpecifierSet(declared), (comfyui_version.__version__, declared)
