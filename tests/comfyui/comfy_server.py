"""The real ComfyUI server as a subprocess, for the workflow and frontend tests (test helper, not a test).

``prepare_base`` lays out a ``--base-directory``: this pack symlinked into custom_nodes/, a small test-only node pack
(``RFMITestConditioning``: seeded random SD3-shaped CONDITIONING, a fixture standing in for text encoders;
``RFMITestLatentImage``: a latent shown as an image, standing in for a VAE; neither stubs anything in ComfyUI), a tiny
MMDiT as models/diffusion_models/tiny_sd3.safetensors for the stock UNETLoader, ComfyUI's example.png as input, and
user settings. ``ComfyServer`` starts ``main.py`` on 127.0.0.1 with a free port
and stops it; its HTTP helpers never use a proxy, so all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nodes as _comfy_nodes  # ComfyUI's nodes.py: conftest.py has put COMFYUI_PATH first on sys.path

REPO = Path(__file__).resolve().parents[2]
COMFYUI = Path(_comfy_nodes.__file__).resolve().parent
PACK_NAME = "ComfyUI-RFMI"

TINY_SD3 = "tiny_sd3.safetensors"
TEST_PACK = "rfmi_test_nodes"

TEST_NODES_SOURCE = '''"""Test-only ComfyUI nodes written by ComfyUI-RFMI's tests (tests/comfyui/comfy_server.py)."""
import zlib

import torch


class RFMITestConditioning:
    """Seeded random CONDITIONING shaped for the tests' tiny SD3 (context [1, 7, 64], pooled [1, 32]); an optional
    text input (a socket, no widget) changes the draw, so each prompt of a list gets its own conditioning."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})},
                "optional": {"text": ("STRING", {"forceInput": True})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "RFMI/testing"

    def make(self, seed, text=None):
        g = torch.Generator().manual_seed(seed + (zlib.crc32(text.encode("utf-8")) if text else 0))
        return ([[torch.randn(1, 7, 64, generator=g), {"pooled_output": torch.randn(1, 32, generator=g)}]],)


class RFMITestLatentImage:
    """A LATENT shown as an IMAGE without a VAE (a fixture standing in for VAEDecode): sigmoid of its first three
    channels, each latent pixel an 8x8 block, so images differ exactly where latents do."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "show"
    CATEGORY = "RFMI/testing"

    def show(self, samples):
        x = samples["samples"][:, :3].float()
        image = torch.sigmoid(x).repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
        return (image.permute(0, 2, 3, 1).contiguous(),)


NODE_CLASS_MAPPINGS = {"RFMITestConditioning": RFMITestConditioning, "RFMITestLatentImage": RFMITestLatentImage}
'''

# Required flags, then optional ones: an optional flag is passed only if this ComfyUI's comfy/cli_args.py has it.
REQUIRED_FLAGS = ["--cpu", "--listen", "--port", "--base-directory"]
OPTIONAL_FLAGS = {"--disable-auto-launch": [], "--database-url": ["sqlite:///:memory:"], "--disable-api-nodes": []}

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_tiny_sd3(path: Path, seed: int = 0) -> None:
    """The MMDiT of tests/comfyui/tiny_models.tiny_sd3 as a file UNETLoader detects as SD3."""
    from safetensors.torch import save_file

    from tiny_models import tiny_sd3_state_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_sd3_state_dict(seed), str(path))


def prepare_base(base: Path, *, tiny_model: bool = True, settings: dict | None = None) -> Path:
    custom_nodes = base / "custom_nodes"
    custom_nodes.mkdir(parents=True, exist_ok=True)
    (custom_nodes / PACK_NAME).symlink_to(REPO, target_is_directory=True)
    (custom_nodes / TEST_PACK).mkdir()
    (custom_nodes / TEST_PACK / "__init__.py").write_text(TEST_NODES_SOURCE, encoding="utf-8")
    if tiny_model:
        write_tiny_sd3(base / "models" / "diffusion_models" / TINY_SD3)
    (base / "input").mkdir(exist_ok=True)
    example = COMFYUI / "input" / "example.png"
    if example.is_file():
        shutil.copy(example, base / "input" / "example.png")
    user = base / "user" / "default"
    user.mkdir(parents=True, exist_ok=True)
    (user / "comfy.settings.json").write_text(json.dumps(settings or {}), encoding="utf-8")
    return base


def server_flags() -> list[str]:
    source = (COMFYUI / "comfy" / "cli_args.py").read_text(encoding="utf-8")
    flags = []
    for flag, values in OPTIONAL_FLAGS.items():
        if f'"{flag}"' in source:
            flags += [flag, *values]
    return flags


def end_process(process: subprocess.Popen, timeout: float) -> None:
    """Terminates a child process that is still running, then kills it if it has not exited within ``timeout`` s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class ComfyServer:
    def __init__(self, base: Path, port: int | None = None, extra_args: list[str] = ()):
        self.base = Path(base)
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "ComfyServer":
        command = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--base-directory", str(self.base), *server_flags(), *self.extra_args]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        env.pop("COMFYUI_PATH", None)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, cwd=COMFYUI, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                self.get_json("/system_stats", timeout=2)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        raise TimeoutError(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, timeout=15)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()  # a server that never answered is not left running
            raise

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    # --- HTTP, 127.0.0.1 only, no proxy ---
    def request(self, path: str, data: bytes | None = None, timeout: float = 30) -> tuple[int, bytes, str]:
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with _NO_PROXY.open(req, timeout=timeout) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers.get("Content-Type", "")

    def get_json(self, path: str, timeout: float = 30):
        req = urllib.request.Request(self.url + path)
        with _NO_PROXY.open(req, timeout=timeout) as response:
            return json.loads(response.read())

    def post_json(self, path: str, payload) -> tuple[int, dict]:
        status, body, _ = self.request(path, json.dumps(payload).encode("utf-8"))
        return status, json.loads(body) if body else {}

    def run_prompt(self, prompt: dict, timeout: float = 120.0, client_id: str = "rfmi-tests") -> dict:
        """Queues an API-format prompt and polls its history entry until it finishes (or the timeout)."""
        status, answer = self.post_json("/prompt", {"prompt": prompt, "client_id": client_id})
        if status != 200:
            raise AssertionError(f"POST /prompt answered {status}: {json.dumps(answer, indent=1)[:4000]}")
        prompt_id = answer["prompt_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("completed") or entry["status"].get("status_str") == "error"):
                return entry
            time.sleep(0.25)
        self.post_json("/interrupt", {})
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")
