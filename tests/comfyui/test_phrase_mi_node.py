"""RFMI Phrase MI in the real ComfyUI: it loads, encodes as CLIPTextEncode does with a real (tiny) ComfyUI CLIP, runs on
a tiny SD3, recovers the closed-form conditional MI of a two-part Gaussian model, and equals ``estimate_phrase_mi``
called directly with the same seed."""

from __future__ import annotations

import math

import pytest
import torch

import comfy.ops
import comfy.sd
import comfy.sd1_clip
import nodes as comfy_nodes
from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

from rfmi_core.mi.analytic import TwoPartGaussianChannel
from rfmi_core.mi.phrase_mi import estimate_phrase_mi

TINY_CLIP_CONFIG = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu",
                    "layer_norm_eps": 1e-5, "projection_dim": 64, "bos_token_id": 0, "eos_token_id": 49407,
                    "pad_token_id": 1}


class _TinyClipTarget:
    """A CLIP-L text encoder of ComfyUI's own classes (SD1 tokenizer shipped with ComfyUI), 2 layers of width 64."""

    params = {"textmodel_json_config": TINY_CLIP_CONFIG, "clip_model": comfy.sd1_clip.SDClipModel}
    clip = comfy.sd1_clip.SD1ClipModel
    tokenizer = comfy.sd1_clip.SD1Tokenizer


@pytest.fixture(scope="module")
def tiny_clip():
    clip = comfy.sd.CLIP(_TinyClipTarget, model_options={"dtype": torch.float32})
    g = torch.Generator().manual_seed(0)
    for p in clip.cond_stage_model.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.05
    return clip


@pytest.fixture(scope="module")
def tiny_sd3_for_clip():
    """The tests' tiny SD3 MMDiT with a pooled input of 64 (the tiny CLIP's), through ComfyUI's own loader."""
    net = OpenAISignatureMMDITWrapper(
        input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=2, adm_in_channels=64,
        context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 64, "out_features": 128}},
        num_patches=256, pos_embed_max_size=16, qk_norm="rms", operations=comfy.ops.disable_weight_init,
        device="cpu", dtype=torch.float32,
    )
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(v.shape, generator=g) * 0.05).contiguous() for k, v in net.state_dict().items()}
    return comfy.sd.load_diffusion_model_state_dict(state)


class TwoPartGaussianFlowNet(torch.nn.Module):
    """The exact velocities of a ``TwoPartGaussianChannel`` in ComfyUI's convention (output = −u, timestep = σ).

    Latents are [N, dim X, 1, 1]; the conditioning tensor is [N, 1, d1 + d2 + 2]: y1, y2, then a flag per part
    (1 = the part is in the prompt). y is (1, 1), y∖p1 = (0, 1), y∖p2 = (1, 0), ∅ = (0, 0).
    """

    def __init__(self, channel: TwoPartGaussianChannel):
        super().__init__()
        self.channel = channel
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, timestep, context=None, **kwargs):
        d1, d2 = self.channel.dim_y1, self.channel.dim_y2
        flat = x.reshape(x.shape[0], -1)
        t = 1 - timestep.float().reshape(-1).expand(x.shape[0])
        y1, y2 = context[:, 0, :d1], context[:, 0, d1:d1 + d2]
        has1, has2 = context[:, 0, d1 + d2] > 0.5, context[:, 0, d1 + d2 + 1] > 0.5
        u = torch.empty_like(flat)
        for a in (False, True):
            for b in (False, True):
                rows = (has1 == a) & (has2 == b)
                if bool(rows.any()):
                    u[rows] = self.channel.velocity(flat[rows], t[rows], (y1[rows] if a else None,
                                                                          y2[rows] if b else None))
        return (-u).reshape(x.shape)


def two_part_conditionings(y1: torch.Tensor, y2: torch.Tensor):
    """CONDITIONINGs y, ∅ and [y∖p1, y∖p2] for per-image (y1, y2)."""
    n = y1.shape[0]

    def cond(a: bool, b: bool):
        parts = [y1 * a, y2 * b, torch.full((n, 1), float(a)), torch.full((n, 1), float(b))]
        return [[torch.cat(parts, dim=1)[:, None, :], {}]]

    return cond(True, True), cond(False, False), [cond(False, True), cond(True, False)]


@pytest.fixture(scope="module")
def two_part(pack_import):
    channel = TwoPartGaussianChannel.random(dim_x=4, dim_y1=1, dim_y2=1, noise_scale=0.5, seed=0)
    net = TwoPartGaussianFlowNet(channel)
    return channel, pack_import("nodes.flow_model").flow_model_patcher(net, latent_channels=4)


def test_the_node_is_registered_with_its_sockets(rfmi_nodes):
    node = rfmi_nodes["RFMIPhraseMI"]
    schema = node.define_schema()
    names = [i.id for i in schema.inputs]
    assert names[:4] == ["model", "clip", "text", "latent"] and "velocity" in names and "images" in names
    assert [o.display_name for o in schema.outputs] == ["table", "phrase_mi", "phrase_min", "phrases", "heatmaps",
                                                        "scores"]
    info = node.GET_NODE_INFO_V1()  # what the server's /object_info lists for the frontend
    assert set(info["input"]["required"]) >= {"model", "clip", "text", "seed", "n_t", "velocity"}
    assert set(info["input"]["optional"]) == {"latent", "scores", "images"}
    assert info["output"] == ["STRING", "FLOAT", "FLOAT", "STRING", "MASK", "RFMI_SCORES"] and info["output_node"]
    assert info["output_is_list"] == [False, True, True, True, True, False]


def test_encoding_is_clip_text_encode(pack_import, tiny_clip):
    phrase_nodes = pack_import("nodes.phrase_mi")
    prompt = "a red square, a blue disk and a green cross"
    split, positive, negative, ablated = phrase_nodes.phrase_conditionings(tiny_clip, prompt)
    assert split.phrases == ("a red square", "a blue disk", "a green cross")
    stock = comfy_nodes.CLIPTextEncode()
    for text, ours in [(split.text, positive), ("", negative), *zip(split.ablations(), ablated)]:
        (theirs,) = stock.encode(tiny_clip, text)
        assert len(ours) == len(theirs) == 1
        assert torch.equal(ours[0][0], theirs[0][0])
        assert torch.equal(ours[0][1]["pooled_output"], theirs[0][1]["pooled_output"])
    assert not torch.equal(positive[0][0], ablated[1][0][0])


def run_node(rfmi_nodes, model, clip, text, **inputs):
    options = dict(seed=3, n_t=4, cfg=3.0, velocity="cfg", t_eps=0.99, draws_per_call=2, split_relations=False)
    return rfmi_nodes["RFMIPhraseMI"].execute(model=model, clip=clip, text=text, **{**options, **inputs})


def test_the_node_runs_on_a_tiny_sd3_with_a_real_clip(rfmi_nodes, tiny_clip, tiny_sd3_for_clip):
    latent = {"samples": torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))}
    images = torch.rand(2, 64, 64, 3)
    prompt = "a red square | left of | a blue disk"
    output = run_node(rfmi_nodes, tiny_sd3_for_clip, tiny_clip, prompt, latent=latent, images=images)
    table, phrase_mi, phrase_min, phrases, heatmaps, scores = output.result
    print(table)
    assert phrases == ["a red square", "left of", "a blue disk"]
    assert len(phrase_mi) == 6 and all(math.isfinite(v) for v in phrase_mi)
    assert phrase_min == [min(phrase_mi[0:3]), min(phrase_mi[3:6])]
    assert len(heatmaps) == 3 and all(m.shape == (2, 64, 64) for m in heatmaps)
    peaks = torch.stack([m.amax(dim=(1, 2)) for m in heatmaps]).amax(dim=0)
    assert float(peaks.min()) > 0.9 and float(min(m.min() for m in heatmaps)) >= 0
    assert "a blue disk" in table and table in output.ui.as_dict()["text"]
    # a latent's scores: ranked by the plain MI of the same draws, with the phrase MI for Rank and Pick
    assert scores.phrases == tuple(phrases) and scores.phrase_mi.flatten().tolist() == pytest.approx(phrase_mi)
    assert scores.seeds == [0, 0] and scores.batch_index == [0, 1] and scores.phrase_maps.shape == (2, 3, 8, 8)
    again = run_node(rfmi_nodes, tiny_sd3_for_clip, tiny_clip, prompt, latent=latent)
    assert again.result[1] == phrase_mi  # seeded; without images the maps stay at latent resolution
    assert all(m.shape == (2, 8, 8) for m in again.result[4])
    with pytest.raises(ValueError, match="either latent or scores"):
        run_node(rfmi_nodes, tiny_sd3_for_clip, tiny_clip, prompt)


def test_the_node_scores_best_of_n_candidates(rfmi_nodes, pack_import, tiny_clip, tiny_sd3_for_clip):
    prompt = "a red square, a blue disk"
    _, positive, negative, _ = pack_import("nodes.phrase_mi").phrase_conditionings(tiny_clip, prompt)
    _, _, scores = rfmi_nodes["RFMIBestOfN"].execute(tiny_sd3_for_clip, 5, 2, 3.0, "euler", "simple", positive,
                                                     negative, {"samples": torch.zeros(1, 16, 8, 8)}, 3, 1, 2, "cfg",
                                                     "rfmi").result
    from_scores = run_node(rfmi_nodes, tiny_sd3_for_clip, tiny_clip, prompt, scores=scores).result
    from_latent = run_node(rfmi_nodes, tiny_sd3_for_clip, tiny_clip, prompt,
                           latent={"samples": scores.latents}).result
    assert len(from_scores[1]) == 3 * 2 and from_scores[1] == from_latent[1] and from_scores[3] == ["a red square",
                                                                                                   "a blue disk"]


def test_phrase_mi_matches_the_closed_form_of_a_two_part_gaussian(pack_import, two_part):
    channel, model = two_part
    # n_t = 64: with few draws per image (n_t = 8) the draws' right skew makes the spread over images understate the
    # error (z down to −5 over seeds 31–34); at 64 the z-scores over seeds 32, 33, 35, 36 lay within ±1.7
    n = 4000
    g = torch.Generator().manual_seed(32)
    y1, y2 = channel.sample_condition(n, g)
    latent = {"samples": channel.sample_data((y1, y2), g).reshape(n, 4, 1, 1)}
    positive, negative, ablated = two_part_conditionings(y1, y2)
    estimate = pack_import("nodes.phrase_mi").score_phrases(model, latent, positive, negative, ablated, seed=32,
                                                            n_t=64, t_eps=0.99, cfg=1.0, velocity="cond",
                                                            draws_per_call=8, form="paper")
    truth = [channel.mi_y1_given_y2, channel.mi_y2_given_y1]
    for p, name in enumerate(["I(X; Y1 | Y2)", "I(X; Y2 | Y1)"]):
        values = estimate.mi[:, p]
        mean, se = float(values.mean()), float(values.std() / math.sqrt(n))
        print(f"Phrase MI node, {name}: {mean:.4f} ± {se:.4f} nats vs closed form {truth[p]:.4f}")
        assert abs(mean - truth[p]) < 3 * se
    total, total_se = float(estimate.total_mi.mean()), float(estimate.total_mi.std() / math.sqrt(n))
    print(f"Phrase MI node, I(X; Y): {total:.4f} ± {total_se:.4f} nats vs closed form {channel.true_mi:.4f}")
    assert abs(total - channel.true_mi) < 3 * total_se
    # chain rule, per image: i(x; y) − i(x; p2 | y1) estimates I(X; Y1), from the same draws
    rest = estimate.total_mi - estimate.mi[:, 1]
    mean, se = float(rest.mean()), float(rest.std() / math.sqrt(n))
    print(f"Phrase MI node, I(X; Y) − I(X; Y2 | Y1): {mean:.4f} ± {se:.4f} nats vs I(X; Y1) {channel.mi_y1:.4f}")
    assert abs(mean - channel.mi_y1) < 3 * se


def comfy_round_trip(channel: TwoPartGaussianChannel):
    """The channel's velocity as it comes back through ComfyUI in float32: the model gets σ = 1 − t (and computes
    t = 1 − σ), ComfyUI returns denoised = x − σ·output, the tap reads u = (denoised − x)/σ."""

    def velocity(x, t, c):
        sigma = (1 - t.float())[:, None]
        output = -channel.velocity(x, 1 - sigma[:, 0], c)
        return ((x - output * sigma) - x) / sigma

    return velocity


@pytest.mark.parametrize("draws_per_call", [1, 2])
@pytest.mark.parametrize("velocity,cfg,form", [("cond", 1.0, "paper"), ("cfg", 2.5, "paper"), ("cfg-y", 2.5, "paper"),
                                               ("cond", 1.0, "exact")])
def test_the_node_path_equals_estimate_phrase_mi_called_directly(pack_import, two_part, draws_per_call, velocity, cfg,
                                                                  form):
    channel, model = two_part
    n = 6
    g = torch.Generator().manual_seed(32)
    y1, y2 = channel.sample_condition(n, g)
    x1 = channel.sample_data((y1, y2), g)
    positive, negative, ablated = two_part_conditionings(y1, y2)
    ours = pack_import("nodes.phrase_mi").score_phrases(
        model, {"samples": x1.reshape(n, 4, 1, 1)}, positive, negative, ablated, seed=7, n_t=8, t_eps=0.99, cfg=cfg,
        velocity=velocity, draws_per_call=draws_per_call, form=form)
    conditions = dict(cond=(y1, y2), uncond=None, ablated=[(None, y2), (y1, None)])
    options = dict(n_t=8, t_eps=0.99, mi_velocity=velocity, cfg=cfg, draws_per_call=draws_per_call, form=form,
                   common=form == "exact")
    direct = estimate_phrase_mi(comfy_round_trip(channel), x1, **conditions,
                                generator=torch.Generator().manual_seed(7), **options)
    exact_t = estimate_phrase_mi(channel.velocity, x1, **conditions, generator=torch.Generator().manual_seed(7),
                                 **options)
    print(f"{velocity}, draws_per_call {draws_per_call}: largest |node − direct| "
          f"{float((ours.mi - direct.mi).abs().max()):.1e} nats; against the velocity at the exact t (no float32 σ "
          f"round trip) {float((ours.mi - exact_t.mi).abs().max()):.1e} (values up to "
          f"{float(direct.mi.abs().max()):.1f}, s.e. at least {float(direct.standard_error.min()):.2f})")
    torch.testing.assert_close(ours.draws, direct.draws, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.total_draws, direct.total_draws, rtol=1e-5, atol=1e-5)
    # the node's latents are [N, 4, 1, 1] (the map sums the 4 channels); the direct call's are flat [N, 4]
    torch.testing.assert_close(ours.maps.flatten(2), direct.maps.sum(dim=2, keepdim=True), rtol=1e-5, atol=1e-6)
    assert bool(((ours.mi - exact_t.mi).abs() < 0.2 * exact_t.standard_error).all())
