"""A checkpoint folder has one training run at a time: a second run given the same folder at once is refused in one
line naming the holder, and the lock goes with its holder however the holder ends (a killed run leaves none)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rfmi_core.util.folder_lock import FolderBusyError, folder_lock

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}


def train_command(tmp_path: Path, checkpoint_dir: Path) -> list[str]:
    return [sys.executable, "-m", "rfmi_core.train", "--model", "test_train:tiny_factory", "--data",
            "test_train:tiny_data", "--rank", "4", "--alpha", "4", "--steps", "2", "--warmup-steps", "0",
            "--checkpoint-dir", str(checkpoint_dir), "--out", str(tmp_path / "lora.safetensors"), "--no-progress"]


def holder(folder: Path) -> subprocess.Popen:
    """A process that takes the folder's lock, says so on stdout, and sleeps."""
    script = textwrap.dedent(f"""
        import time
        from rfmi_core.util.folder_lock import folder_lock
        with folder_lock({str(folder)!r}, "a training run"):
            print("held", flush=True)
            time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_training_run_into_a_busy_checkpoint_folder_is_refused_until_the_holder_dies(tmp_path):
    folder = tmp_path / "ckpt"
    process = holder(folder)
    try:
        refused = subprocess.run(train_command(tmp_path, folder), env=ENV, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        line = f"{folder} is in use by a training run (pid {process.pid} on "
        assert line in refused.stderr and "Traceback" not in refused.stderr
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # the refused run wrote nothing
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    done = subprocess.run(train_command(tmp_path, folder), env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "step_000002.safetensors"]


def test_the_lock_is_released_when_the_block_ends_and_refuses_while_held(tmp_path):
    with folder_lock(tmp_path / "f"):
        process = subprocess.run([sys.executable, "-c", "from rfmi_core.util.folder_lock import folder_lock\n"
                                  f"with folder_lock({str(tmp_path / 'f')!r}): pass"], env=ENV, capture_output=True,
                                 text=True, timeout=60)
        assert process.returncode == 1 and "FolderBusyError" in process.stderr
    with folder_lock(tmp_path / "f"):  # released: taken again
        pass
    start = time.monotonic()
    process = holder(tmp_path / "g")
    try:
        with pytest.raises(FolderBusyError, match=f"pid {process.pid}"):
            with folder_lock(tmp_path / "g"):
                pass
        assert time.monotonic() - start < 30  # refused at once, not after a wait
    finally:
        process.kill()
        process.wait(timeout=30)
