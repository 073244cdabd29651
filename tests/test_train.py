"""RFMI FT trainer (Algorithm 1, Table 2): LoRA by flow matching on a tiny MMDiT-like velocity model, on CPU."""

import copy
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from rfmi_core.train.lora import DEFAULT_TARGETS, remove_lora, resolve_targets, save_lora
from rfmi_core.train import (
    TrainConfig,
    batch_indices,
    gradient_checkpointing,
    latest_checkpoint,
    load_checkpoint,
    lr_at,
    sample_t,
    step_generator,
    train_lora,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices gain nothing from threads, and two threads on a busy 2-core machine run 5x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------ a tiny MMDiT and data


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)


class Stream(nn.Module):
    """One stream of a joint block (MMDiT's context_block / x_block): adaLN-modulated attention inputs and an MLP."""

    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.adaLN = nn.Linear(dim, 2 * dim)
        self.attn = Attention(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def qkv(self, h, vec):
        shift, scale = self.adaLN(vec).unsqueeze(1).chunk(2, dim=-1)
        return self.attn.qkv(self.norm(h) * (1 + scale) + shift).chunk(3, dim=-1)


class JointBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.context_block, self.x_block = Stream(dim), Stream(dim)

    def forward(self, c, x, vec):
        (qc, kc, vc), (qx, kx, vx) = self.context_block.qkv(c, vec), self.x_block.qkv(x, vec)
        split = lambda a, b: torch.cat([a, b], 1).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(qc, qx), split(kc, kx), split(vc, vx)).transpose(1, 2).flatten(2)
        oc, ox = o.split([c.shape[1], x.shape[1]], dim=1)
        c = c + self.context_block.attn.proj(oc)
        x = x + self.x_block.attn.proj(ox)
        return c + self.context_block.mlp(c), x + self.x_block.mlp(x)


class PatchEmbed(nn.Module):
    def __init__(self, channels, dim):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=2, stride=2)


class TinyMMDiT(nn.Module):
    """Paths as in ComfyUI's MMDiT: x_embedder.proj (Conv2d), joint_blocks.N.{context_block,x_block}.attn.{qkv,proj}."""

    def __init__(self, channels=4, size=8, dim=32, context_dim=8, pooled_dim=6, depth=2, heads=2):
        super().__init__()
        self.x_embedder = PatchEmbed(channels, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, (size // 2) ** 2, dim) * 0.1)
        self.t_embedder = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.y_embedder = nn.Linear(pooled_dim, dim)
        self.context_embedder = nn.Linear(context_dim, dim)
        self.joint_blocks = nn.ModuleList(JointBlock(dim, heads) for _ in range(depth))
        self.final_layer = nn.Linear(dim, channels * 4)

    def forward(self, x, t, context, y):
        b, c, h, w = x.shape
        tokens = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        vec = self.t_embedder(t.reshape(-1, 1).to(x.dtype)) + self.y_embedder(y)
        ctx = self.context_embedder(context)
        for block in self.joint_blocks:
            ctx, tokens = block(ctx, tokens, vec)
        out = self.final_layer(tokens).reshape(b, h // 2, w // 2, c, 2, 2)
        return out.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def velocity(model, x_t, t, cond):
    return model(x_t, t, cond["cross_attn"], cond["pooled_output"])


class GaussianConditioned:
    """Latents [4, 8, 8] = pattern·y + 0.3·noise for a 2-D Gaussian condition y; cond carries y, uncond zeros."""

    def __init__(self, n=12, seed=0):
        g = torch.Generator().manual_seed(seed)
        pattern = torch.randn(2, 4, 8, 8, generator=g)
        lift = torch.randn(2, 3 * 8, generator=g)
        self.items = []
        for _ in range(n):
            y = torch.randn(2, generator=g)
            latent = torch.einsum("k,kchw->chw", y, pattern) + 0.3 * torch.randn(4, 8, 8, generator=g)
            cond = {"cross_attn": (y @ lift).reshape(1, 3, 8), "pooled_output": torch.cat([y, y, y]).reshape(1, 6)}
            self.items.append((latent, cond, {k: torch.zeros_like(v) for k, v in cond.items()}))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return TinyMMDiT()


def tiny_factory():
    """CLI model factory: (module, velocity_fn)."""
    return tiny_model(), velocity


def tiny_data(n=12):
    """CLI data factory."""
    return GaussianConditioned(n)


FAST = dict(rank=4, alpha=4.0, lr=1e-2, warmup_steps=0, batch_size=2, grad_accum_steps=1)

EXPECTED_TARGETS = sorted(f"joint_blocks.{i}.{stream}.attn.{layer}"
                          for i in range(2) for stream in ("context_block", "x_block") for layer in ("qkv", "proj"))


def snapshot(model):
    """Everything that must be exactly as before training: module tree, parameters, flags, instance attributes."""
    return {
        "modules": [(name, type(m)) for name, m in model.named_modules()],
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "flags": {k: p.requires_grad for k, p in model.named_parameters()},
        "attributes": {name: sorted(m.__dict__) for name, m in model.named_modules()},
        "hooks": {name: [len(getattr(m, h)) for h in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                                      "_state_dict_hooks", "_load_state_dict_pre_hooks")]
                  for name, m in model.named_modules()},
        "repr": repr(model),
    }


def assert_same_snapshot(before, after):
    assert after["modules"] == before["modules"]
    assert after["flags"] == before["flags"]
    assert after["attributes"] == before["attributes"]
    assert after["hooks"] == before["hooks"]
    assert after["repr"] == before["repr"]
    assert list(after["state"]) == list(before["state"])
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key


# ------------------------------------------------------------------------------------------------------------- tests


def test_default_targets_are_the_attention_projections_of_joint_and_double_blocks():
    assert resolve_targets(tiny_model()) == EXPECTED_TARGETS  # x_embedder.proj (Conv2d), MLPs, adaLN left out

    flux = nn.Module()
    flux.img_in = nn.Linear(4, 8)
    flux.double_blocks = nn.ModuleList(nn.Module() for _ in range(2))
    for block in flux.double_blocks:
        for name in ("img_attn", "txt_attn"):
            attn = nn.Module()
            attn.qkv, attn.proj, attn.norm = nn.Linear(8, 24), nn.Linear(8, 8), nn.LayerNorm(8)
            setattr(block, name, attn)
        block.img_mlp = nn.Linear(8, 8)
    flux.single_blocks = nn.ModuleList([nn.Module()])
    flux.single_blocks[0].linear1 = nn.Linear(8, 8)
    assert resolve_targets(flux, DEFAULT_TARGETS) == sorted(f"double_blocks.{i}.{attn}.{layer}" for i in range(2)
                                                            for attn in ("img_attn", "txt_attn")
                                                            for layer in ("qkv", "proj"))
    assert resolve_targets(tiny_model(), ["x_block.attn.qkv"]) == [f"joint_blocks.{i}.x_block.attn.qkv"
                                                                   for i in range(2)]


def test_loss_falls():
    config = TrainConfig(steps=120, **{**FAST, "rank": 8, "alpha": 8.0, "batch_size": 8})
    result = train_lora(tiny_model(), GaussianConditioned(), velocity, config)
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    print(f"flow-matching loss: first 10 steps {first:.4f}, last 10 steps {last:.4f}")  # 2.48 → 1.92 here
    assert len(result.losses) == 120 and result.steps_done == 120
    assert last < 0.85 * first


def test_resume_after_an_interrupt_equals_the_uninterrupted_run(tmp_path):
    data = GaussianConditioned(n=5)  # 4 samples a step: steps straddle epochs
    config = TrainConfig(steps=7, cond_dropout=0.3, **{**FAST, "grad_accum_steps": 2, "warmup_steps": 3})
    full = train_lora(tiny_model(), data, velocity, config)

    class Stop(Exception):
        pass

    def stop_at_3(step, loss):
        if step == 3:
            raise Stop

    model = tiny_model()
    before = snapshot(model)
    with pytest.raises(Stop):
        train_lora(model, data, velocity, config, checkpoint_dir=tmp_path, on_step=stop_at_3)
    assert_same_snapshot(before, snapshot(model))  # interrupted: adapters gone, model as it was
    assert latest_checkpoint(tmp_path).name == "step_000003.safetensors"

    resumed = train_lora(model, data, velocity, config, checkpoint_dir=tmp_path, resume_from=tmp_path)
    assert resumed.steps_done == 7 and len(resumed.losses) == 7
    assert resumed.losses == pytest.approx(full.losses, abs=1e-6)
    assert resumed.lora_state_dict.keys() == full.lora_state_dict.keys()
    for key, value in full.lora_state_dict.items():
        torch.testing.assert_close(resumed.lora_state_dict[key], value, rtol=0, atol=1e-6)
    assert latest_checkpoint(tmp_path).name == "step_000007.safetensors"


def test_resume_from_a_finished_shorter_run_extends_it(tmp_path):
    data, config = GaussianConditioned(n=6), TrainConfig(steps=6, save_every=2, **FAST)
    full = train_lora(tiny_model(), data, velocity, config)
    model = tiny_model()
    train_lora(model, data, velocity, TrainConfig(steps=4, save_every=2, **FAST), checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["step_000002.safetensors",
                                                                       "step_000004.safetensors"]
    resumed = train_lora(model, data, velocity, config, resume_from=tmp_path / "step_000004.safetensors")
    assert resumed.losses == pytest.approx(full.losses, abs=1e-6)
    for key, value in full.lora_state_dict.items():
        torch.testing.assert_close(resumed.lora_state_dict[key], value, rtol=0, atol=1e-6)


def test_training_leaves_the_model_exactly_as_it_was():
    model = tiny_model()
    before = snapshot(model)
    config = TrainConfig(steps=3, gradient_checkpointing=True, **FAST)
    train_lora(model, GaussianConditioned(), velocity, config)
    assert_same_snapshot(before, snapshot(model))
    assert "peft_config" not in model.__dict__

    kept = train_lora(model, GaussianConditioned(), velocity, config, keep_adapters=True)
    assert len(kept.targets) == 8 and "lora_A" in repr(model)
    with pytest.raises(ValueError, match="remove_lora"):
        train_lora(model, GaussianConditioned(), velocity, config)
    assert remove_lora(model) == 8
    assert_same_snapshot(before, snapshot(model))
    assert remove_lora(model) == 0


def test_saved_lora_reproduces_the_patched_model_when_merged(tmp_path):
    model, data = tiny_model(), GaussianConditioned()
    result = train_lora(model, data, velocity, TrainConfig(steps=5, **FAST), keep_adapters=True)
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([0.2, 0.5, 0.9])
    cond = {"cross_attn": torch.randn(3, 3, 8), "pooled_output": torch.randn(3, 6)}
    with torch.no_grad():
        patched = velocity(model, x, t, cond)
    remove_lora(model)
    with torch.no_grad():
        base = velocity(model, x, t, cond)

    path = save_lora(result.lora_state_dict, tmp_path / "lora.safetensors", metadata={"rank": 4})
    pattern = re.compile(r"diffusion_model\.(joint_blocks\.\d+\.(?:context_block|x_block)\.attn\.(?:qkv|proj))"
                         r"\.(lora_A\.weight|lora_B\.weight|alpha)")
    merged = copy.deepcopy(model)
    with safe_open(str(path), framework="pt") as f:
        keys = sorted(f.keys())
        assert all(pattern.fullmatch(k) for k in keys), keys
        modules = sorted({pattern.fullmatch(k).group(1) for k in keys})
        assert modules == EXPECTED_TARGETS and len(keys) == 3 * len(modules)
        for name in modules:
            down = f.get_tensor(f"diffusion_model.{name}.lora_A.weight")
            up = f.get_tensor(f"diffusion_model.{name}.lora_B.weight")
            alpha = f.get_tensor(f"diffusion_model.{name}.alpha")
            assert alpha.numel() == 1 and float(alpha) == 4.0 and down.shape[0] == 4
            with torch.no_grad():
                merged.get_submodule(name).weight += (float(alpha) / down.shape[0]) * up @ down
    with torch.no_grad():
        out = velocity(merged, x, t, cond)
    assert (patched - base).abs().max() > 1e-3  # the LoRA changed the model: the comparison has power
    torch.testing.assert_close(out, patched, rtol=0, atol=1e-5)


def test_checkpoint_is_safetensors_without_pickle(tmp_path):
    model = tiny_model()
    train_lora(model, GaussianConditioned(), velocity, TrainConfig(steps=2, **FAST), checkpoint_dir=tmp_path)
    path = tmp_path / "step_000002.safetensors"
    raw = path.read_bytes()
    header = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and header < len(raw)  # safetensors: 8-byte length, JSON header, raw tensor bytes
    assert not raw.startswith(b"PK") and b"\x80\x02" not in raw[:16]  # no torch.save zip, no pickle stream
    with safe_open(str(path), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    names = [f"{m}.{ab}.default.weight" for m in EXPECTED_TARGETS for ab in ("lora_A", "lora_B")]
    # the last block's context stream feeds nothing (as SD3's last context block): no gradient, no AdamW state
    trained = [n for n in names if not n.startswith("joint_blocks.1.context_block.attn.proj.")]
    adamw = {f"adamw/{s}/{n}" for s in ("exp_avg", "exp_avg_sq", "step") for n in trained}
    assert {f"lora/{n}" for n in names} | adamw | {"losses"} == keys
    assert meta["rfmi.global_step"] == "2" and meta["rfmi.scheduler_step"] == "2"
    state = load_checkpoint(path)
    assert state.config == TrainConfig(steps=2, **FAST) and len(state.losses) == 2
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temporary file


def test_bad_inputs_raise_value_errors_naming_the_argument():
    for kwargs, name in [({"rank": 0}, "rank"), ({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"),
                         ({"t_sampling": "cosine"}, "t_sampling"), ({"cond_dropout": 1.5}, "cond_dropout"),
                         ({"batch_size": 0}, "batch_size"), ({"max_grad_norm": 0.0}, "max_grad_norm")]:
        with pytest.raises(ValueError, match=name):
            TrainConfig(**kwargs)
    with pytest.raises(ValueError, match=r"target_modules.*t_embedder\.0"):
        train_lora(tiny_model(), GaussianConditioned(), velocity, TrainConfig(target_modules=r"blocks\.\d+\.nothing"))
    with pytest.raises(ValueError, match="target_modules.*not nn.Linear.*x_embedder.proj"):
        resolve_targets(tiny_model(), ["x_embedder.proj"])
    with pytest.raises(ValueError, match="data is empty"):
        train_lora(tiny_model(), [], velocity, TrainConfig(**FAST))
    with pytest.raises(ValueError, match=r"data\[0\]"):
        train_lora(tiny_model(), [torch.zeros(4, 8, 8)], velocity, TrainConfig(**FAST))
    with pytest.raises(ValueError, match="checkpoint_modules"):
        train_lora(tiny_model(), GaussianConditioned(), velocity,
                   TrainConfig(steps=1, gradient_checkpointing=True, checkpoint_modules="nope", **FAST))


def test_bf16_autocast_gives_finite_losses():
    model = tiny_model()
    result = train_lora(model, GaussianConditioned(), velocity, TrainConfig(steps=4, bf16=True, **FAST))
    assert all(math.isfinite(loss) for loss in result.losses)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in result.lora_state_dict.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_gradient_checkpointing_gives_the_same_training():
    data = GaussianConditioned()
    plain = train_lora(tiny_model(), data, velocity, TrainConfig(steps=4, **FAST))
    model = tiny_model()
    with gradient_checkpointing(model) as wrapped:
        assert wrapped == ["joint_blocks.0", "joint_blocks.1"]
    assert not any("forward" in m.__dict__ for m in model.modules())
    checkpointed = train_lora(model, data, velocity, TrainConfig(steps=4, gradient_checkpointing=True, **FAST))
    assert checkpointed.losses == pytest.approx(plain.losses, abs=1e-5)
    for key, value in plain.lora_state_dict.items():
        torch.testing.assert_close(checkpointed.lora_state_dict[key], value, rtol=0, atol=1e-5)


def test_trains_inside_inference_mode_as_comfyui_runs_nodes():
    model = tiny_model()
    with torch.inference_mode():
        data = GaussianConditioned()  # inference tensors, as ComfyUI's latents and conditioning are
        result = train_lora(model, data, velocity, TrainConfig(steps=2, **FAST))
    assert len(result.losses) == 2 and result.lora_state_dict


def test_every_epoch_visits_every_sample_once_and_steps_are_deterministic():
    stream = torch.cat([batch_indices(3, step, 5, 4) for step in range(5)])  # 20 draws = 4 epochs of 5
    for epoch in stream.reshape(4, 5):
        assert sorted(epoch.tolist()) == list(range(5))
    assert torch.equal(batch_indices(3, 2, 5, 4), stream[8:12])
    assert not torch.equal(batch_indices(4, 0, 5, 4), stream[:4])


def test_learning_rate_warms_up_linearly_then_stays_constant():
    config = TrainConfig(lr=1e-3, warmup_steps=4)
    assert [lr_at(s, config) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert lr_at(0, TrainConfig(lr=1e-3, warmup_steps=0)) == 1e-3


def test_cli_trains_and_resumes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    common = [sys.executable, "-m", "rfmi_core.train", "--model", "test_train:tiny_factory", "--data",
              "test_train:tiny_data", "--data-kwargs", '{"n": 6}', "--rank", "4", "--alpha", "4", "--lr", "1e-2",
              "--warmup-steps", "0", "--batch-size", "2", "--grad-accum-steps", "1",
              "--checkpoint-dir", str(tmp_path / "ckpt"), "--no-progress"]
    first = subprocess.run(common + ["--steps", "2", "--out", str(tmp_path / "a.safetensors")], env=env,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(common + ["--steps", "3", "--resume", str(tmp_path / "ckpt"), "--out",
                                      str(tmp_path / "b.safetensors")], env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    assert "step 3" in second.stdout
    with safe_open(str(tmp_path / "b.safetensors"), framework="pt") as f:
        assert len(list(f.keys())) == 3 * len(EXPECTED_TARGETS)
        assert f.metadata()["rfmi.steps_done"] == "3"


def test_gradient_accumulation_equals_one_batch_of_the_product():
    """4 samples a step as 1 batch of 4, 2 micro-batches of 2 or 4 of 1: the same draws and the same update."""
    data = GaussianConditioned(n=6)
    runs = [train_lora(tiny_model(), data, velocity,
                       TrainConfig(steps=3, cond_dropout=0.3, **{**FAST, "batch_size": b, "grad_accum_steps": a}))
            for b, a in [(4, 1), (2, 2), (1, 4)]]
    for other in runs[1:]:  # equal up to float32 summation order
        assert other.losses == pytest.approx(runs[0].losses, abs=1e-6)
        for key, value in runs[0].lora_state_dict.items():
            torch.testing.assert_close(other.lora_state_dict[key], value, rtol=0, atol=1e-5)


def test_t_is_logit_normal_or_uniform_as_configured():
    from scipy import stats

    n = 20000
    t = sample_t(n, step_generator(0, 0), TrainConfig(logit_mean=0.5, logit_std=0.8))
    assert 0 < float(t.min()) and float(t.max()) < 1
    logit = torch.logit(t.double()).numpy()
    assert stats.kstest(logit, "norm", args=(0.5, 0.8)).statistic < 0.015
    assert stats.kstest(logit, "norm", args=(0.0, 1.0)).statistic > 0.1  # the test tells the settings apart
    u = sample_t(n, step_generator(0, 0), TrainConfig(t_sampling="uniform")).double().numpy()
    assert stats.kstest(u, "uniform").statistic < 0.015
    assert stats.kstest(torch.logit(torch.from_numpy(u)).numpy(), "norm").statistic > 0.05


class InPlaceJointBlock(JointBlock):
    """JointBlock updating its residual streams in place after normalising them, as ComfyUI's FLUX blocks do."""

    def forward(self, c, x, vec):
        (qc, kc, vc), (qx, kx, vx) = self.context_block.qkv(c, vec), self.x_block.qkv(x, vec)
        split = lambda a, b: torch.cat([a, b], 1).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(qc, qx), split(kc, kx), split(vc, vx)).transpose(1, 2).flatten(2)
        oc, ox = o.split([c.shape[1], x.shape[1]], dim=1)
        c += self.context_block.attn.proj(oc)
        x += self.x_block.attn.proj(ox)
        c += self.context_block.mlp(c)
        x += self.x_block.mlp(x)
        return c, x


def in_place_model():
    model = tiny_model()
    for block in model.joint_blocks:
        block.__class__ = InPlaceJointBlock
    return model


def test_a_model_updating_saved_activations_in_place_trains_as_its_functional_twin():
    data, config = GaussianConditioned(), TrainConfig(steps=3, **FAST)
    reference = train_lora(tiny_model(), data, velocity, config)
    checkpointed = train_lora(in_place_model(), data, velocity, TrainConfig(steps=3, gradient_checkpointing=True,
                                                                            **FAST))
    with pytest.warns(UserWarning, match="in place"):
        plain = train_lora(in_place_model(), data, velocity, config)
    for run in (checkpointed, plain):
        assert run.losses == pytest.approx(reference.losses, abs=1e-5)
        for key, value in reference.lora_state_dict.items():
            torch.testing.assert_close(run.lora_state_dict[key], value, rtol=0, atol=1e-5)


def test_headless_command_trains_the_toy_model_on_a_fine_tune_set(tmp_path):
    """python -m rfmi_core.train SET --model toy: a set exported from ComfyUI's toy nodes (word ids as cross_attn)."""
    from toy_sets import make_toy_set

    make_toy_set(tmp_path / "set", num_prompts=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "toy_lora.safetensors"
    done = subprocess.run([sys.executable, "-m", "rfmi_core.train", str(tmp_path / "set"), "--model", "toy",
                           "--steps", "2", "--rank", "4", "--alpha", "4", "--warmup-steps", "0", "--lr", "1e-3",
                           "--grad-accum-steps", "2", "--out", str(out), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "4 samples" in done.stdout and "step 2" in done.stdout
    with safe_open(str(out), framework="pt") as f:
        keys = sorted(f.keys())
    from research.toy.train_model import load_toy_model
    from rfmi_core.toy.recipe import TOY_LORA_TARGETS

    targets = resolve_targets(load_toy_model(), TOY_LORA_TARGETS)  # the toy preset's layers: attention and MLPs
    assert len(targets) >= 16 and keys == sorted(f"diffusion_model.{t}.{k}" for t in targets
                                                 for k in ("lora_A.weight", "lora_B.weight", "alpha"))
    both = subprocess.run([sys.executable, "-m", "rfmi_core.train", str(tmp_path / "set"), "--data", "x:y",
                           "--model", "toy", "--out", str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "one of the two" in both.stderr


# ---------------------------------------------------------------------------------------------- init_lora, presets


def _patched_output(model, lora_state, rank=4, alpha=4.0):
    """The velocity of ``model`` with a saved LoRA loaded into fresh adapters (rank, alpha) on a fixed input."""
    from rfmi_core.train.lora import inject_lora, load_lora_weights

    x, t = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0.2, 0.5, 0.9])
    cond = {"cross_attn": torch.randn(3, 3, 8, generator=torch.Generator().manual_seed(2)),
            "pooled_output": torch.randn(3, 6, generator=torch.Generator().manual_seed(3))}
    inject_lora(model, EXPECTED_TARGETS, rank, alpha, seed=7)
    try:
        assert load_lora_weights(model, lora_state) == len(EXPECTED_TARGETS)
        with torch.no_grad():
            return velocity(model, x, t, cond)
    finally:
        remove_lora(model)


def test_init_lora_starts_the_adapters_from_a_saved_lora(tmp_path):
    from rfmi_core.train.lora import load_lora_file

    model, data = tiny_model(), GaussianConditioned()
    trained = train_lora(model, data, velocity, TrainConfig(steps=40, **FAST))
    path = save_lora(trained.lora_state_dict, tmp_path / "first.safetensors")
    saved = load_lora_file(path)
    assert saved.keys() == trained.lora_state_dict.keys()
    # loaded into adapters of another alpha, B is rescaled: the patched model is the file's exactly
    torch.testing.assert_close(_patched_output(model, saved, alpha=1.0), _patched_output(model, saved, alpha=4.0),
                               rtol=0, atol=1e-6)
    # a run started from the file starts where the first run ended: on the same draws (same seed) every one of its
    # first steps has a lower loss than a fresh start's
    fresh = train_lora(model, data, velocity, TrainConfig(steps=5, **FAST))
    started = train_lora(model, data, velocity, TrainConfig(steps=5, **FAST), init_lora=saved)
    print(f"first 5 losses: fresh {fresh.losses}, from init_lora {started.losses}")
    assert all(a < b for a, b in zip(started.losses, fresh.losses))
    assert sum(started.losses) < 0.95 * sum(fresh.losses)


def test_init_lora_refuses_other_formats_ranks_and_modules(tmp_path):
    from rfmi_core.train.lora import load_lora_file

    model, data = tiny_model(), GaussianConditioned()
    saved = train_lora(model, data, velocity, TrainConfig(steps=1, **FAST)).lora_state_dict
    torch.save(saved, tmp_path / "lora.pt")
    with pytest.raises(ValueError, match="only safetensors"):
        load_lora_file(tmp_path / "lora.pt")
    with pytest.raises(ValueError, match="set rank to the file's"):
        train_lora(model, data, velocity, TrainConfig(steps=1, **{**FAST, "rank": 2}), init_lora=saved)
    with pytest.raises(ValueError, match="set target_modules"):
        train_lora(model, data, velocity, TrainConfig(steps=1, target_modules=["x_block.attn.qkv"], **FAST),
                   init_lora=saved)
    with pytest.raises(ValueError, match="not a LoRA key"):
        train_lora(model, data, velocity, TrainConfig(steps=1, **FAST), init_lora={"weird": torch.zeros(1)})
    before = snapshot(model)
    assert_same_snapshot(before, snapshot(model))  # a refused start leaves the model as it was


def test_cli_init_lora_and_low_memory_preset(tmp_path):
    from rfmi_core.toy.recipe import TOY_PRESET
    from rfmi_core.train.lora import load_lora_file
    from rfmi_core.train import LOW_MEMORY
    from rfmi_core.train.cli import build_parser, config_from_args, given_flags

    argv = ["--model", "toy", "--out", "x.safetensors", "--low-memory", "--batch-size", "8"]
    parser = build_parser()
    config = config_from_args(parser.parse_args(argv), given_flags(parser, argv))
    assert (config.bf16, config.gradient_checkpointing, config.batch_size) == (True, True, 1) == tuple(
        LOW_MEMORY[k] for k in ("bf16", "gradient_checkpointing", "batch_size"))
    assert config.grad_accum_steps == 8 * TOY_PRESET["grad_accum_steps"]  # the effective batch stays the user's 8

    first = train_lora(tiny_model(), tiny_data(6), velocity, TrainConfig(steps=20, **FAST))
    init = save_lora(first.lora_state_dict, tmp_path / "init.safetensors")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    common = [sys.executable, "-m", "rfmi_core.train", "--model", "test_train:tiny_factory", "--data",
              "test_train:tiny_data", "--data-kwargs", '{"n": 6}', "--rank", "4", "--alpha", "4", "--lr", "1e-6",
              "--warmup-steps", "0", "--batch-size", "2", "--grad-accum-steps", "1", "--steps", "1", "--no-progress"]
    done = subprocess.run(common + ["--init-lora", str(init), "--out", str(tmp_path / "b.safetensors")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after, before = load_lora_file(tmp_path / "b.safetensors"), load_lora_file(init)
    assert after.keys() == before.keys()
    b_keys = [k for k in before if k.endswith("lora_B.weight")]
    assert max(float(before[k].abs().max()) for k in b_keys) > 1e-2  # the init is not a fresh start (B = 0)
    for key in before:  # one step at lr 1e-6 from the init: AdamW moves each weight by about 1e-6
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-5)


def test_validation_samples_the_same_prompts_and_seeds_at_step_0_and_every_n_steps():
    from rfmi_core.mi.sampler import sample_with_mi
    from rfmi_core.train.validation import ValidationPlan, distinct_prompts, image_grid, validation_noise

    data = GaussianConditioned()
    doubled = [data[0], data[0], data[1]]
    assert len(distinct_prompts(doubled, 5)) == 2 and distinct_prompts(doubled, 1)[0][0] is data[0][1]
    model = tiny_model()
    sigmas = torch.linspace(1, 0, 5)
    plan = ValidationPlan.from_data(data, every=2, prompts=2, seed=10, sigmas=sigmas, cfg=3.0, images_per_prompt=2)
    hook = plan.hook(model, velocity)
    hook(0)
    expected, _ = sample_with_mi(lambda x, t, c: velocity(model, x, t, c), validation_noise([10, 11], (4, 8, 8)),
                                 sigmas, {k: v.expand(2, *v.shape[1:]) for k, v in data[1][1].items()},
                                 {k: v.expand(2, *v.shape[1:]) for k, v in data[1][2].items()}, cfg=3.0)
    assert plan.samples[0].shape == (4, 4, 8, 8)
    torch.testing.assert_close(plan.samples[0][2:], expected, rtol=0, atol=1e-6)  # prompt 2's two seeds
    train_lora(model, data, velocity, TrainConfig(steps=4, **FAST), on_step=lambda step, loss: hook(step))
    assert sorted(plan.samples) == [0, 2, 4]
    assert (plan.samples[4] - plan.samples[0]).abs().max() > 1e-3  # the fine-tune shows in the samples
    grid = image_grid(torch.rand(3, 5, 6, 3), columns=2, pad=1)
    assert grid.shape == (2 * 6 + 1, 2 * 7 + 1, 3) and float(grid[-1, -1, 0]) == 1.0  # the empty cell stays white
    with pytest.raises(ValueError, match="every"):
        ValidationPlan.from_data(data, every=0, prompts=1, seed=0, sigmas=sigmas, cfg=1.0)
