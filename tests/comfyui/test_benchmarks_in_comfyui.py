"""The ComfyUI benchmarks run end to end in their smoke mode (``--dry-run``: their GPU code path, small, on the CPU),
so a rename in the pack breaks this test rather than a user's measurement. Their figures are not checked."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COMFYUI

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["comfy_sampler_overhead.py", "train_lora_memory.py"])
def test_comfyui_benchmark_smoke_run(script, tmp_path):
    env = {**os.environ, "COMFYUI_PATH": str(COMFYUI), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "|" in done.stdout or "median" in done.stdout
