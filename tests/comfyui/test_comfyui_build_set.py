"""Headless set building through ComfyUI (``comfyui_build_set.py --comfyui …``) in the real ComfyUI: a tiny SD3
checkpoint and a CLIP-L loaded by name with ComfyUI's loaders; the set equals the one Best-of-N + Export Fine-tune Set
build in ComfyUI for the same seed, and 2 torchrun processes (gloo) build the set of one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import comfy.sd
import comfy.utils
import folder_paths
import nodes as comfy_nodes

from rfmi_core import FinetuneSet
from rfmi_core.finetune.set_builder import BuildPlan, pending_prompts
from tiny_files import CHECKPOINT, CLIP_L, write_model_folders

COMFYUI = Path(comfy_nodes.__file__).resolve().parent  # the ComfyUI these tests run (conftest put it first)
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from set_compare import assert_same_sets, manifest_lines  # noqa: E402

PROMPTS = ["a red cube", "a blue sphere on a wooden table", "three cats"]
SEED, M, K, STEPS = 7, 3, 2, 3


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> Path:
    return write_model_folders(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def build_set(processes: int, prompts: Path, set_dir: Path, config: Path) -> str:
    """``[torchrun --nproc_per_node N] comfyui_build_set.py --comfyui COMFYUI --checkpoint … --text-encoders …``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    done = subprocess.run(
        [*launcher, str(REPO / "comfyui_build_set.py"), "--prompts", str(prompts), "--set", str(set_dir), "--comfyui",
         str(COMFYUI), "--extra-model-paths-config", str(config), "--checkpoint", CHECKPOINT, "--text-encoders", CLIP_L,
         "--width", "64", "--height", "64", "--steps", str(STEPS), "--candidates", str(M), "--k", str(K), "--seed",
         str(SEED), "--batch-size", "2", "--device", "cpu", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    user_errors = [line for line in (done.stdout + done.stderr).splitlines() if ": error: " in line]  # run_cli's line
    assert done.returncode == 0, "\n".join(user_errors) + "\n" + done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def one_process(model_folders, prompt_file, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("one") / "set"
    stdout = build_set(1, prompt_file, folder, model_folders)
    assert f"built {len(PROMPTS)} prompts (0 already complete, skipped): {M * len(PROMPTS)} candidates" in stdout
    return folder


def test_the_headless_set_is_the_one_best_of_n_and_export_build(rfmi_nodes, pack_import, model_folders, one_process,
                                                                tmp_path, monkeypatch):
    """The same files through the functions ComfyUI's Load Checkpoint and Load CLIP call, CLIP Text Encode, then the
    pack's nodes as a Prompt List workflow runs them: Best-of-N (seed 7, n 3) and Export (k 2) per prompt."""
    base = model_folders.parent
    model = comfy.sd.load_checkpoint_guess_config(str(base / "checkpoints" / CHECKPOINT), output_vae=False,
                                                  output_clip=False)[0]
    clip = comfy.sd.load_clip([str(base / "text_encoders" / CLIP_L)], clip_type=comfy.sd.CLIPType.SD3)
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as the command's processes
    try:
        negative = comfy_nodes.CLIPTextEncode().encode(clip, "")[0]
        for prompt in PROMPTS:
            positive = comfy_nodes.CLIPTextEncode().encode(clip, prompt)[0]
            scores = rfmi_nodes["RFMIBestOfN"].execute(model, SEED, STEPS, 4.5, "euler", "simple", positive, negative,
                                                       {"samples": torch.zeros(1, 16, 8, 8)}, M, 1, 2, "cfg",
                                                       "pmi").result[2]
            rfmi_nodes["RFMIExportFinetuneSet"].execute(scores, positive, negative, prompt, "", "nodes", K, model)
    finally:
        torch.set_num_threads(previous)
    count = assert_same_sets(tmp_path / "rfmi_sets" / "nodes", one_process)
    assert count == K * len(PROMPTS)
    records = FinetuneSet.open(one_process).records()
    assert {r.seed for r in records} <= set(range(SEED, SEED + M)) and len({r.mi for r in records}) == count
    stored = FinetuneSet.open(one_process).load_conditioning(records[0].prompt_conditioning)
    assert stored["cross_attn"].shape == (1, 77, 4096) and stored["pooled_output"].shape == (1, 2048)
    maker = pack_import("nodes.headless_model").ComfyCandidates(model, clip, width=64, height=64, steps=STEPS, cfg=4.5,
                                                                sampler_name="euler", scheduler="simple", batch_size=2)
    plan = BuildPlan(tuple(PROMPTS), m=M, k=K, seed=SEED)
    assert pending_prompts(FinetuneSet.open(one_process), maker, plan) == []  # a rerun would skip them all
    assert pending_prompts(FinetuneSet.open(one_process), maker, BuildPlan(tuple(PROMPTS), m=M, k=K, seed=8)) == PROMPTS


def test_two_processes_build_the_set_of_one(model_folders, prompt_file, one_process, tmp_path):
    stdout = build_set(2, prompt_file, tmp_path / "set", model_folders)
    assert f"built {len(PROMPTS)} prompts by 2 processes" in stdout
    assert len({r.writer for r in FinetuneSet.open(tmp_path / "set").records(selected=False)}) == 2
    assert assert_same_sets(one_process, tmp_path / "set") == K * len(PROMPTS)
    assert len(manifest_lines(tmp_path / "set")) == K * len(PROMPTS)


def test_the_comfyui_maker_loads_by_name_inside_the_folder_and_reports_progress(rfmi_nodes, pack_import, model_folders,
                                                                               monkeypatch):
    headless = pack_import("nodes.headless_model")
    base = model_folders.parent
    (base / "outside.safetensors").write_bytes((base / "checkpoints" / CHECKPOINT).read_bytes())
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "checkpoints",
                        ([str(base / "checkpoints")], {".safetensors"}))
    model, clip = headless.load_model(checkpoint=CHECKPOINT)
    assert clip is None  # the tiny checkpoint has no text encoder: --text-encoders is needed
    with pytest.raises(FileNotFoundError):
        headless.load_model(checkpoint="../outside.safetensors")  # a name never leaves models/checkpoints
    with pytest.raises(ValueError, match="only .safetensors files are loaded"):
        headless.load_model(checkpoint="model.ckpt")
    clip = comfy.sd.load_clip([str(base / "text_encoders" / CLIP_L)], clip_type=comfy.sd.CLIPType.SD3)
    with pytest.raises(ValueError, match="not a ComfyUI sampler"):
        headless.ComfyCandidates(model, clip, width=64, height=64, steps=2, cfg=4.5, sampler_name="nope",
                                 scheduler="simple", batch_size=2)
    maker = headless.ComfyCandidates(model, clip, width=64, height=64, steps=2, cfg=4.5, sampler_name="euler",
                                     scheduler="simple", batch_size=2)
    hook, seen = comfy.utils.PROGRESS_BAR_HOOK, []
    scores = maker.best_of_n(maker.encode("a red cube"), maker.encode(""), 0, 3, seen.append)
    assert len(scores) == 3 and scores.latents.shape == (3, 16, 8, 8) and scores.settings == maker.settings(0, 3)
    assert seen[-1] == 3 * 2 and seen == sorted(seen) and comfy.utils.PROGRESS_BAR_HOOK is hook
