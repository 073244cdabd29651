"""Score by MI, MI heatmap, prompt list and the in-process guard, in the real ComfyUI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import folder_paths

from rfmi_core import GaussianChannel
from tiny_models import GaussianFlowNet, gaussian_conditioning, sd3_conditioning, tiny_sd3


@pytest.fixture(scope="module")
def gaussian(pack_import):
    channel = GaussianChannel.random(dim_x=4, dim_y=2, noise_scale=0.5, seed=0)
    return channel, pack_import("nodes.flow_model").flow_model_patcher(GaussianFlowNet(channel), latent_channels=4)


def score(rfmi_nodes, model, positive, negative, latent, *, seed=0, n_t=8, cfg=1.0, velocity="cond", draws_per_call=1,
          kind="rfmi", t_eps=0.99, **extra):
    return rfmi_nodes["RFMIScoreLatent"].execute(model, positive, negative, latent, seed=seed, n_t=n_t, t_eps=t_eps,
                                                 cfg=cfg, velocity=velocity, draws_per_call=draws_per_call, score=kind,
                                                 **extra).result


def test_score_by_exact_mi_ranks_images_as_their_closed_form_does(rfmi_nodes, gaussian, pack_import):
    """The default score (pmi) through ComfyUI's model call, σ and sign conventions: each image's exact i(x; y) ranks
    400 images as the closed form log N(x; A·y, Σ_n) − log N(x; 0, Σ_X) does (Spearman ≥ 0.9; a sign slip anywhere
    gives a negative correlation), and a contrast against y′ = −y ranks as log p(x|y) − log p(x|−y) does."""
    from scipy.stats import spearmanr

    channel, model = gaussian
    n = 400
    g = torch.Generator().manual_seed(23)
    y = channel.sample_condition(n, g)
    x = channel.sample_data(y, g)
    positive, negative = gaussian_conditioning(y)
    mi, scores = score(rfmi_nodes, model, positive, negative, {"samples": x.reshape(n, 4, 1, 1)}, n_t=64, t_eps=0.6,
                       draws_per_call=8, kind="pmi")
    rho = spearmanr(mi, channel.pointwise_mi(x, y)).statistic
    print(f"exact MI through ComfyUI: Spearman {rho:.3f} with the closed form")
    assert rho >= 0.9 and scores.settings["score"] == "pmi" and bool((scores.mi_standard_error > 0).all())
    flipped, _ = gaussian_conditioning(-y)
    contrast = pack_import("nodes.exact").rank_exactly(model, x.reshape(n, 4, 1, 1), positive, negative, [flipped],
                                                       "contrast", seed=0, n_t=64, t_eps=0.6, batch_size=n,
                                                       draws_per_call=8)
    closed = channel.pointwise_mi(x, y) - channel.pointwise_mi(x, -y)
    print(f"contrast through ComfyUI: Spearman {spearmanr(contrast.score, closed).statistic:.3f}")
    assert spearmanr(contrast.score, closed).statistic >= 0.9 and contrast.margins.shape == (n, 1)


def test_score_by_mi_of_exact_samples_matches_the_closed_form(rfmi_nodes, gaussian):
    channel, model = gaussian
    n = 2000
    g = torch.Generator().manual_seed(21)
    y = channel.sample_condition(n, g)
    latent = {"samples": channel.sample_data(y, g).reshape(n, 4, 1, 1)}
    positive, negative = gaussian_conditioning(y)
    mi, scores = score(rfmi_nodes, model, positive, negative, latent, draws_per_call=4)
    mi = torch.tensor(mi)
    mean, se = float(mi.mean()), float(mi.std() / math.sqrt(n))
    print(f"Score by MI in ComfyUI: {mean:.4f} ± {se:.4f} nats vs closed form {channel.true_mi:.4f}")
    assert abs(mean - channel.true_mi) < 3 * se
    assert scores.mi_standard_error.shape == (n,)


def test_score_by_mi_is_seeded_and_batch_independent(rfmi_nodes, gaussian):
    channel, model = gaussian
    g = torch.Generator().manual_seed(22)
    y = channel.sample_condition(6, g)
    latent = {"samples": channel.sample_data(y, g).reshape(6, 4, 1, 1)}
    positive, negative = gaussian_conditioning(y)
    first, _ = score(rfmi_nodes, model, positive, negative, latent, seed=5)
    again, _ = score(rfmi_nodes, model, positive, negative, latent, seed=5)
    other, _ = score(rfmi_nodes, model, positive, negative, latent, seed=6)
    assert first == again and first != other
    # image 0 alone and image 0 in its batch get different noise draws, so compare as estimates: within their s.e.
    _, alone = score(rfmi_nodes, model, [[positive[0][0][:1], {}]], [[negative[0][0][:1], {}]],
                     {"samples": latent["samples"][:1]}, seed=1, n_t=256)
    _, batch = score(rfmi_nodes, model, positive, negative, latent, seed=2, n_t=256)
    gap = abs(float(alone.mi[0] - batch.mi[0]))
    assert gap < 4 * math.hypot(float(alone.mi_standard_error[0]), float(batch.mi_standard_error[0]))


def test_score_by_mi_runs_on_a_tiny_sd3(rfmi_nodes):
    model = tiny_sd3()
    latent = {"samples": torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))}
    mi, scores = score(rfmi_nodes, model, sd3_conditioning(1), sd3_conditioning(2), latent, n_t=4, cfg=3.0,
                       velocity="cfg", draws_per_call=2)
    assert len(mi) == 2 and all(math.isfinite(v) for v in mi)


def test_heatmap_turns_the_map_into_mask_and_overlay(rfmi_nodes):
    model = tiny_sd3()
    _, _, scores = rfmi_nodes["RFMISampler"].execute(model, 3, 3, 3.0, "euler", "simple", sd3_conditioning(1),
                                                     sd3_conditioning(2), {"samples": torch.zeros(2, 16, 8, 8)}, 1.0,
                                                     "cfg", "rfmi").result
    images = torch.rand(2, 64, 64, 3)
    mask, overlaid = rfmi_nodes["RFMIHeatmap"].execute(scores, images, 0.6).result
    assert mask.shape == (2, 64, 64) and overlaid.shape == (2, 64, 64, 3)
    assert float(mask.amax(dim=(1, 2)).min()) > 0.9  # each image is scaled to its own peak (bilinear blurs it a little)
    assert float(mask.min()) >= 0.0
    with pytest.raises(ValueError, match="2 scored candidates"):
        rfmi_nodes["RFMIHeatmap"].execute(scores, torch.rand(3, 64, 64, 3), 0.6)


def test_prompt_list_reads_a_file_in_the_input_folder_and_refuses_escapes(rfmi_nodes, tmp_path, monkeypatch):
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "p.txt").write_text("a red cube\n\n# skip me\na blue ball on a table\nthree cats\n")
    node = rfmi_nodes["RFMIPromptList"]
    (prompts,) = node.execute("lists/p.txt", "", 1, 0).result
    assert prompts == ["a blue ball on a table", "three cats"]
    (prompts,) = node.execute("(text below)", "one\ntwo\nthree", 0, 2).result
    assert prompts == ["one", "two"]
    with pytest.raises(ValueError, match="leave the folder"):
        node.execute("../../etc/passwd", "", 0, 0)
    with pytest.raises(ValueError, match="empty"):
        node.execute("(text below)", "\n# nothing\n", 0, 0)


def test_an_isolated_process_gets_a_clear_error(rfmi_nodes, monkeypatch):
    """Under pyisolate the MODEL is an RPC proxy and Python hooks cannot cross: say so, and name the switches to flip."""
    model = tiny_sd3()
    monkeypatch.setenv("PYISOLATE_CHILD", "1")  # what pyisolate sets in the child process
    with pytest.raises(RuntimeError, match="main process") as child:
        rfmi_nodes["RFMISampler"].execute(model, 0, 2, 3.0, "euler", "simple", sd3_conditioning(1), sd3_conditioning(2),
                                          {"samples": torch.zeros(1, 16, 8, 8)}, 1.0, "cfg", "rfmi")
    monkeypatch.delenv("PYISOLATE_CHILD")

    class ModelPatcherProxy:  # what an isolated MODEL is: comfy.isolation's RPC proxy, not a comfy ModelPatcher
        pass

    with pytest.raises(RuntimeError, match="ModelPatcherProxy") as proxy:
        rfmi_nodes["RFMIScoreLatent"].execute(ModelPatcherProxy(), sd3_conditioning(1), sd3_conditioning(2),
                                              {"samples": torch.zeros(1, 16, 8, 8)}, 0, 2, 0.99, 1.0, "cfg", 1)
    for error in (child, proxy):  # the fix: the per-pack table, the env override, the global flag
        for switch in ("[tool.comfy.isolation]", "PYISOLATE_ENFORCE_ISOLATED", "--use-process-isolation"):
            assert switch in str(error.value)


def test_the_pack_does_not_opt_into_process_isolation():
    """ComfyUI isolates only packs whose pyproject.toml has a [tool.comfy.isolation] table: ours must have none."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "comfy" in pyproject["tool"] and "isolation" not in pyproject["tool"]["comfy"]


def test_every_seed_declares_its_control_widget(rfmi_nodes):
    """Frontends from 1.49 migrate saved widget values by the declared inputs: a seed whose control widget is added by
    name alone, on a node with a forced-input socket, loads every later value one widget off."""
    seeds = {}
    for name, node in rfmi_nodes.items():
        if not name.startswith("RFMI"):
            continue
        info = node.GET_NODE_INFO_V1()["input"]
        for spec_name, spec in {**info["required"], **info.get("optional", {})}.items():
            if spec[0] == "INT" and "seed" in spec_name:
                seeds[name] = spec[1].get("control_after_generate")
    assert {"RFMIScoreLatent", "RFMIPhraseMI", "RFMIBestOfN"} <= set(seeds)
    assert seeds == {name: True for name in seeds}
