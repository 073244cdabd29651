"""The pack's registry metadata (pyproject.toml, .comfyignore, requirements.txt) as the Comfy registry and
ComfyUI-Manager read it. `comfy node validate` (comfy-cli) checks the same file; this keeps what it only warns about."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 (tomllib)")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT, COMFY = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
# the registry's accelerator classifiers (comfy-cli's config parser accepts only these)
ACCELERATORS = {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend", "GPU :: Apple Metal"}
TESTED_COMFYUI = ("0.3.64", "0.33.0")  # the ComfyUI versions of CI's ComfyUI tier (../shared/comfyui)
SHIPPED = ("__init__.py", "nodes/", "rfmi_core/", "web/", "example_workflows/", "LICENSE", "README.md",
           "requirements.txt", "pyproject.toml", "comfyui_build_set.py")


def requirement_names(lines) -> set[str]:
    return {Requirement(line).name.lower() for line in lines}


def requirements_txt() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_license_is_an_spdx_string_and_the_repository_a_url():
    assert PROJECT["license"] == "GPL-3.0-or-later"
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # PEP 639: not beside an expression
    assert re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+", PROJECT["urls"]["Repository"])


def test_classifiers_name_the_os_and_only_registry_accelerators():
    classifiers = PROJECT["classifiers"]
    assert "Operating System :: OS Independent" in classifiers
    accelerators = {c.removeprefix("Environment :: ") for c in classifiers if c.startswith("Environment ::")}
    assert accelerators and accelerators <= ACCELERATORS


def test_requires_comfyui_holds_the_tested_versions():
    spec = SpecifierSet(COMFY["requires-comfyui"])
    assert all(version in spec for version in TESTED_COMFYUI)
    assert "0.3.63" not in spec


def test_icon_is_a_url_or_left_out():
    assert "Icon" not in COMFY or re.match(r"https://", COMFY["Icon"])


def test_no_torch_requirement_in_what_the_registry_and_manager_install():
    published, manager = requirement_names(PROJECT["dependencies"]), requirement_names(requirements_txt())
    assert "torch" not in published and "torch" not in manager
    assert published - {"numpy"} == manager  # numpy comes with ComfyUI; the rest is the same list
    assert requirement_names(PROJECT["optional-dependencies"]["torch"]) == {"torch"}


def test_comfyignore_leaves_out_tests_benchmarks_and_reports_but_not_the_pack():
    patterns = [line.strip() for line in (ROOT / ".comfyignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    for folder in ("tests/", "benchmarks/", "research/", "runs/", "docs/", ".ci/"):
        assert f"/{folder}" in patterns  # anchored: at the top of the pack only
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
    if not tracked:
        pytest.skip("not a git checkout: nothing to compare the patterns with")
    # gitignore semantics for these plain patterns: "/name/" matches the top-level folder, "name/" a folder at any depth
    anchored = tuple(p[1:] for p in patterns if p.startswith("/") and p.endswith("/") and "*" not in p)
    anywhere = {p.rstrip("/") for p in patterns if not p.startswith("/") and p.endswith("/") and "*" not in p}
    files = {p[1:] for p in patterns if p.startswith("/") and not p.endswith("/") and "*" not in p}  # "/name": a file
    packed = [f for f in tracked if not f.startswith(anchored) and not anywhere & set(f.split("/")[:-1])
              and f not in files]
    assert all(any(f == s or f.startswith(s) for s in SHIPPED) or f.startswith(".") for f in packed), packed
    assert any(f.startswith("rfmi_core/toy/weights/") for f in packed)  # the toy model ships
    assert sum(f.startswith("web/docs/") for f in packed) >= 14  # the help pages ship
    assert sum(f.startswith("example_workflows/") and f.endswith(".jpg") for f in packed) >= 6  # and the thumbnails


def test_the_tree_lints_clean_for_the_registry():
    """`comfy node validate` lints the whole tree and warns about multi-statement lines (E7xx); the same rules, and
    pyflakes' (unused names, undefined names), hold everywhere: benchmarks and tests included."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "E7,E9,F", "--exclude", ".venv*",
                           "--output-format", "concise", str(ROOT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
