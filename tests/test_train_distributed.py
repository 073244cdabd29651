"""Data-parallel RFMI FT under torchrun (torch.distributed, gloo on CPU): 2 processes train the LoRA of 1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rfmi_core.train import TrainConfig, load_checkpoint, train_lora
from rfmi_core.train.cli import set_data, toy_model
from rfmi_core.train.distributed import World, current_world, launched_by_torchrun
from toy_sets import make_toy_set

ROOT = Path(__file__).resolve().parents[1]

# the global batch of 3 samples splits unevenly (1 + 2), so the loss weighting and the skipped draws are both tested;
# cond dropout, the paper's clipping (0.005) and gradient accumulation are on.
SETTINGS = dict(steps=20, rank=4, alpha=4.0, lr=1e-3, warmup_steps=0, batch_size=1, grad_accum_steps=3,
                cond_dropout=0.2)
FLAGS = ["--model", "toy", "--preset", "paper", "--rank", "4", "--alpha", "4", "--lr", "1e-3", "--warmup-steps", "0", "--batch-size", "1",
         "--grad-accum-steps", "3", "--cond-dropout", "0.2", "--no-progress"]


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    """A set as the toy nodes export it: 3 prompts × 2 candidates, word ids as cross_attn."""
    return make_toy_set(tmp_path_factory.mktemp("distributed") / "set", num_prompts=3)


@pytest.fixture(scope="module")
def one_process(toy_set):
    """The reference: the same 20 steps in this one process (what ``python -m rfmi_core.train SET`` runs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, velocity_fn = toy_model()
        return train_lora(model, set_data(str(toy_set)), velocity_fn, TrainConfig(**SETTINGS))
    finally:
        torch.set_num_threads(previous)


def torchrun(args, timeout=240):
    """``python -m torch.distributed.run --standalone --nproc_per_node 2 -m rfmi_core.train ARGS`` (gloo on CPU)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "rfmi_core.train", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def max_difference(lora, path):
    written = load_file(str(path))
    assert sorted(written) == sorted(lora)
    return max(float((written[k].float() - lora[k].float()).abs().max()) for k in lora)


def test_shards_partition_the_global_batch():
    for n in (1, 3, 4, 7):
        for size in range(1, n + 1):
            parts = [range(n)[World(rank, size).shard(n)] for rank in range(size)]
            assert [i for part in parts for i in part] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert not launched_by_torchrun() and current_world() == World(0, 1)  # no env vars: no process group


@pytest.fixture(scope="module")
def two_processes(toy_set, tmp_path_factory):
    """The same 20 steps by ``torchrun --nproc_per_node 2``, checkpointed at steps 10 and 20."""
    folder = tmp_path_factory.mktemp("two")
    done = torchrun([str(toy_set), *FLAGS, "--steps", "20", "--save-every", "10", "--checkpoint-dir",
                     str(folder / "ckpt"), "--out", str(folder / "two.safetensors")])
    return folder, done.stdout


def test_two_processes_train_the_lora_of_one_and_only_rank_0_writes(one_process, two_processes):
    folder, stdout = two_processes
    assert stdout.count("wrote ") == 1 and "shared by 2 processes" in stdout
    difference = max_difference(one_process.lora_state_dict, folder / "two.safetensors")
    print(f"max |LoRA(2 processes) − LoRA(1 process)| after 20 steps: {difference:.3g}")
    assert difference <= 1e-5
    checkpoints = folder / "ckpt"
    assert sorted(p.name for p in checkpoints.iterdir()) == [".lock", "step_000010.safetensors", "step_000020.safetensors"]
    state = load_checkpoint(checkpoints)
    assert state.global_step == 20
    assert state.losses == pytest.approx(one_process.losses, abs=1e-5)  # the loss of the whole global batch


def test_a_run_resumed_under_torchrun_equals_the_uninterrupted_one(toy_set, one_process, two_processes, tmp_path):
    folder, _ = two_processes
    out = tmp_path / "resumed.safetensors"
    resume = folder / "ckpt" / "step_000010.safetensors"
    done = torchrun([str(toy_set), *FLAGS, "--steps", "20", "--resume", str(resume), "--checkpoint-dir",
                     str(tmp_path / "ckpt"), "--out", str(out)])
    assert "step 20" in done.stdout
    assert max_difference(one_process.lora_state_dict, out) <= 1e-5
    assert load_checkpoint(tmp_path / "ckpt").losses == pytest.approx(one_process.losses, abs=1e-5)
