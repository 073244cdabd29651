"""Every benchmark of benchmarks/ runs end to end in a seconds-long smoke mode, so a rename or an API change breaks
a test here rather than a user's measurement (the ComfyUI benchmarks run in the ComfyUI tier:
tests/comfyui/test_benchmarks_in_comfyui.py). The figures they print are not checked: benchmarks assert nothing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {
    "accumulator_cost.py": ["--batch", "1", "--repeats", "1"],
    "build_set_capacity.py": ["--candidates", "2", "--batch-size", "2", "--steps", "2", "--repeats", "1"],
    "phrase_cost.py": ["--batch", "1", "--steps", "2", "--n-t", "2", "--repeats", "1", "--phrases", "1"],
    "pmi_cost.py": ["--smoke"],
    "pmi_draws.py": ["--smoke"],
    "toy_contrast_weighting.py": ["--smoke"],
    "toy_spatial_direction.py": ["--n", "4"],
    "train_low_memory_cpu.py": ["--steps", "1", "--dim", "32", "--depth", "1", "--latent", "8"],
}
IN_COMFYUI = {"comfy_sampler_overhead.py", "train_lora_memory.py"}  # tests/comfyui/test_benchmarks_in_comfyui.py


def test_every_benchmark_has_a_smoke_run():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    assert scripts == set(SMOKE) | IN_COMFYUI


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_smoke_run(script, tmp_path):
    # run as its docstring says, from another folder and with no PYTHONPATH: the script finds research/ itself
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *SMOKE[script]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.strip(), "the benchmark printed nothing"
