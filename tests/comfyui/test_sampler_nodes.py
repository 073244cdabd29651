"""RFMI Sampler and Best-of-N inside ComfyUI's own sampler: bitwise the stock KSampler's latents, MI per image."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import comfy.model_management
import comfy.sample
import nodes as comfy_nodes

from rfmi_core import GaussianChannel, sample_with_mi
from tiny_models import flux_conditioning, gaussian_conditioning, sd3_conditioning, tiny_flux, tiny_sd3, GaussianFlowNet

SAMPLERS = ["euler", "dpmpp_2m", "heun", "uni_pc"]


@pytest.fixture(scope="module")
def sd3():
    return tiny_sd3()


@pytest.fixture(scope="module")
def flux():
    return tiny_flux()


def empty_latent(batch: int, size: int = 16) -> dict:
    return {"samples": torch.zeros(batch, 16, size, size)}


def run_rfmi_sampler(rfmi_nodes, model, positive, negative, latent, *, seed=7, steps=4, cfg=3.0, sampler="euler",
                     scheduler="simple", denoise=1.0, velocity="cfg", score="rfmi"):
    out = rfmi_nodes["RFMISampler"].execute(model, seed, steps, cfg, sampler, scheduler, positive, negative, latent,
                                            denoise, velocity, score)
    return out.result  # (LATENT, mi list, scores)


@pytest.mark.parametrize("family", ["sd3", "flux"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_latents_are_bitwise_the_stock_ksamplers(rfmi_nodes, sd3, flux, family, sampler):
    model = sd3 if family == "sd3" else flux
    conds = sd3_conditioning if family == "sd3" else flux_conditioning
    positive, negative = conds(1), conds(2)
    latent = empty_latent(2)
    (stock,) = comfy_nodes.common_ksampler(model, 7, 4, 3.0, sampler, "simple", positive, negative, latent)
    ours, mi, scores = run_rfmi_sampler(rfmi_nodes, model, positive, negative, latent, sampler=sampler)
    assert torch.equal(ours["samples"], stock["samples"])
    assert len(mi) == 2 and all(math.isfinite(v) for v in mi)
    assert scores.result.trace.shape == (2, 4)  # one committed evaluation per step, whatever the sampler
    assert "sampler_post_cfg_function" not in model.model_options  # the shared model is left alone


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2s_ancestral"])
def test_multi_evaluation_samplers_are_attributed_to_the_grid(rfmi_nodes, sd3, sampler):
    """heun and dpmpp_2s call the model twice a step: the committed σ must be the grid's σ_i, each once."""
    import comfy.samplers

    sigmas = comfy.samplers.calculate_sigmas(sd3.get_model_object("model_sampling"), "simple", 5)
    _, _, scores = run_rfmi_sampler(rfmi_nodes, sd3, sd3_conditioning(1), sd3_conditioning(2), empty_latent(1),
                                    steps=5, sampler=sampler)
    torch.testing.assert_close(scores.result.sigmas[0], sigmas[:-1].float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(scores.result.dt[0], (sigmas[:-1] - sigmas[1:]).float(), atol=1e-6, rtol=0)


def test_uni_pc_moves_the_grid_and_the_steps_still_tile_it(rfmi_nodes, sd3):
    _, _, scores = run_rfmi_sampler(rfmi_nodes, sd3, sd3_conditioning(1), sd3_conditioning(2), empty_latent(1),
                                    steps=5, sampler="uni_pc")
    sigmas, dt = scores.result.sigmas[0], scores.result.dt[0]
    assert sigmas.shape == (5,)
    torch.testing.assert_close(sigmas[1:], sigmas[:-1] - dt[:-1], atol=1e-6, rtol=0)  # each Δt ends where the next begins
    # the last one ends at the sampler's final σ: uni_pc stops at 0.001 instead of 0
    assert 0.0 <= float(sigmas[-1] - dt[-1]) <= 1e-3 + 1e-6


@pytest.fixture(scope="module")
def gaussian(pack_import):
    """A FLOW model in ComfyUI whose network returns the exact velocity of a Gaussian channel (closed-form MI)."""
    channel = GaussianChannel.random(dim_x=4, dim_y=2, noise_scale=0.5, seed=0)
    model = pack_import("nodes.flow_model").flow_model_patcher(GaussianFlowNet(channel), latent_channels=4)
    return channel, model


def test_mi_through_comfyuis_sampler_matches_the_closed_form(rfmi_nodes, gaussian):
    """≥ 2000 images through the real KSampler path (velocity cond, cfg 1): every sign, scale and time slip shows."""
    channel, model = gaussian
    n = 2000
    y = channel.sample_condition(n, torch.Generator().manual_seed(3))
    positive, negative = gaussian_conditioning(y)
    latent = {"samples": torch.zeros(n, 4, 1, 1)}
    _, mi, _ = run_rfmi_sampler(rfmi_nodes, model, positive, negative, latent, seed=11, steps=100, cfg=1.0,
                                sampler="euler", scheduler="simple", velocity="cond")
    mi = torch.tensor(mi)
    mean, se = float(mi.mean()), float(mi.std() / math.sqrt(n))
    print(f"analytic model in ComfyUI: {mean:.4f} ± {se:.4f} nats vs closed form {channel.true_mi:.4f}")
    assert abs(mean - channel.true_mi) < 3 * se
    assert se < 0.05 * channel.true_mi


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_glue_equals_the_core_sampler_on_the_same_noise(rfmi_nodes, gaussian, cfg):
    """ComfyUI's path (cfg 1 with the uncond forced, or cfg > 1) gives the MI of rfmi_core's own Euler sampler."""
    import comfy.samplers

    channel, model = gaussian
    n = 16
    y = channel.sample_condition(n, torch.Generator().manual_seed(4))
    positive, negative = gaussian_conditioning(y)
    latent = {"samples": torch.zeros(n, 4, 1, 1)}
    _, mi, _ = run_rfmi_sampler(rfmi_nodes, model, positive, negative, latent, seed=5, steps=30, cfg=cfg,
                                sampler="euler", scheduler="simple", velocity="cfg")
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 30)
    noise = comfy.sample.prepare_noise(latent["samples"], 5).reshape(n, 4)
    _, core = sample_with_mi(channel.velocity, noise, sigmas, y, None, cfg=cfg, mi_velocity="cfg")
    assert min(abs(v) for v in mi) > 0
    torch.testing.assert_close(torch.tensor(mi), core.mi, rtol=1e-3, atol=1e-5)  # float32 in ComfyUI, float64 fields


def test_non_flow_models_are_refused_by_name(rfmi_nodes, pack_import):
    import comfy.model_base

    channel = GaussianChannel.random(seed=1)
    model = pack_import("nodes.flow_model").flow_model_patcher(GaussianFlowNet(channel), latent_channels=4)
    eps = comfy.model_base.BaseModel(model.model.model_config, model_type=comfy.model_base.ModelType.EPS, device="cpu")
    eps.diffusion_model = model.model.diffusion_model
    eps_model = comfy.model_patcher.ModelPatcher(eps, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    positive, negative = gaussian_conditioning(channel.sample_condition(1))
    with pytest.raises(ValueError, match="rectified-flow model.*EPS"):
        run_rfmi_sampler(rfmi_nodes, eps_model, positive, negative, {"samples": torch.zeros(1, 4, 1, 1)})


def test_flow_samplings_that_never_noise_or_rescale_the_noise_are_refused(rfmi_nodes, pack_import):
    """A CONST sampling with other maths (newer ComfyUI's IMG_TO_IMG_*) has no trajectory; noise_scale ≠ 1 breaks nats."""
    channel = GaussianChannel.random(seed=1)
    model = pack_import("nodes.flow_model").flow_model_patcher(GaussianFlowNet(channel), latent_channels=4)
    positive, negative = gaussian_conditioning(channel.sample_condition(1))
    sampling = model.get_model_object("model_sampling")

    class ImageToImageFlow(type(sampling)):  # still a CONST, as IMG_TO_IMG_VELOCITY is, but the latent is never noised
        def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
            return latent_image

    image_to_image, scaled = copy.copy(sampling), copy.copy(sampling)
    image_to_image.__class__ = ImageToImageFlow
    scaled.noise_scale = 0.5  # newer ComfyUI's CONST: x_σ = σ·s·ε + (1 − σ)·x
    for patched, message in ((image_to_image, "rectified-flow model.*image-to-image"), (scaled, "noise_scale 0.5")):
        m = model.clone()
        m.add_object_patch("model_sampling", patched)
        with pytest.raises(ValueError, match=message):
            run_rfmi_sampler(rfmi_nodes, m, positive, negative, {"samples": torch.zeros(1, 4, 1, 1)})
    run_rfmi_sampler(rfmi_nodes, model, positive, negative, {"samples": torch.zeros(1, 4, 1, 1)}, steps=2)


def test_the_latent_dict_comes_back_as_the_stock_ksampler_returns_it(rfmi_nodes, sd3):
    """Newer ComfyUI's empty latents carry downscale ratios that common_ksampler reads and drops (0.3.64 keeps them)."""
    positive, negative = sd3_conditioning(1), sd3_conditioning(2)
    latent = {**empty_latent(1), "downscale_ratio_spacial": 8, "batch_index": [3]}
    (stock,) = comfy_nodes.common_ksampler(sd3, 7, 3, 3.0, "euler", "simple", positive, negative, latent)
    ours, _, _ = run_rfmi_sampler(rfmi_nodes, sd3, positive, negative, latent, steps=3)
    assert ours.keys() == stock.keys() and ours["batch_index"] == [3]
    assert torch.equal(ours["samples"], stock["samples"])


def run_best_of_n(rfmi_nodes, model, positive, negative, *, n=5, k=2, batch_size=2, seed=100, steps=3, cfg=3.0):
    return rfmi_nodes["RFMIBestOfN"].execute(model, seed, steps, cfg, "euler", "simple", positive, negative,
                                             empty_latent(1), n, k, batch_size, "cfg", "rfmi").result


def test_best_of_n_ranks_by_mi_and_candidates_replay_alone(rfmi_nodes, sd3):
    positive, negative = sd3_conditioning(1), sd3_conditioning(2)
    best, best_mi, scores = run_best_of_n(rfmi_nodes, sd3, positive, negative)
    assert len(scores) == 5 and scores.seeds == [100, 101, 102, 103, 104]
    order = torch.sort(scores.mi, descending=True, stable=True).indices[:2]
    assert best_mi == [float(scores.mi[i]) for i in order]
    torch.testing.assert_close(best["samples"], scores.latents[order])
    j = int(order[0])  # the winner, replayed alone with the documented seed rule: seed + j, batch 1
    replay, replay_mi, _ = run_rfmi_sampler(rfmi_nodes, sd3, positive, negative, empty_latent(1), seed=100 + j, steps=3)
    torch.testing.assert_close(replay["samples"][0], scores.latents[j], atol=1e-5, rtol=1e-5)
    assert replay_mi[0] == pytest.approx(float(scores.mi[j]), rel=1e-4, abs=1e-5)


def test_best_of_n_does_not_depend_on_batch_size(rfmi_nodes, sd3):
    positive, negative = sd3_conditioning(1), sd3_conditioning(2)
    _, _, in_pairs = run_best_of_n(rfmi_nodes, sd3, positive, negative, batch_size=2)
    _, _, in_one = run_best_of_n(rfmi_nodes, sd3, positive, negative, batch_size=5)
    torch.testing.assert_close(in_pairs.mi, in_one.mi, rtol=1e-4, atol=1e-5)


def test_interrupt_mid_run_leaves_no_state_behind(rfmi_nodes, sd3):
    positive, negative = sd3_conditioning(1), sd3_conditioning(2)
    _, _, reference = run_best_of_n(rfmi_nodes, sd3, positive, negative)
    tripwire = sd3.clone()
    calls = []

    def interrupt_after_a_while(args):
        calls.append(1)
        if len(calls) == 4:  # inside the second chunk's sampling, before the third chunk starts
            comfy.model_management.interrupt_current_processing(True)
        return args["denoised"]

    tripwire.set_model_sampler_post_cfg_function(interrupt_after_a_while)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run_best_of_n(rfmi_nodes, tripwire, positive, negative)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert "sampler_post_cfg_function" not in sd3.model_options
    _, _, again = run_best_of_n(rfmi_nodes, sd3, positive, negative)
    torch.testing.assert_close(again.mi, reference.mi, rtol=0, atol=0)
