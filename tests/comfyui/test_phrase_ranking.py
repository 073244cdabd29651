"""Ranking by phrase MI inside ComfyUI's sampler (Best-of-N and RFMI Sampler, score phrase-min / phrase-mean) with
the toy model and its CLIP: the images stay bitwise those of the stock KSampler, each candidate's phrase MI is what
rfmi_core's own Euler sampler reads on the bare toy network (sample_with_phrase_mi), and the phrase MI reaches Rank
and Pick's gallery, from Best-of-N and from RFMI Phrase MI."""

from __future__ import annotations

import pytest
import torch

import comfy.sample
import comfy.samplers
import nodes as comfy_nodes

from rfmi_core.mi.phrase_mi import sample_with_phrase_mi
from rfmi_core.toy import PAD_ID, tokenize_batch
from rfmi_core.toy.model import ToyFlowTransformer

PROMPT = "a red square to the left of a blue disk"
PHRASES = ["a red square", "to the left of", "a blue disk"]
ABLATED = ["to the left of a blue disk", "a red square and a blue disk", "a red square to the left of"]


@pytest.fixture(scope="module")
def toy(rfmi_nodes):
    model, clip = rfmi_nodes["RFMIToyModelLoader"].execute("shipped").result
    positive = comfy_nodes.CLIPTextEncode().encode(clip, PROMPT)[0]  # the stock encoder on the toy CLIP
    negative = comfy_nodes.CLIPTextEncode().encode(clip, "")[0]
    return model, clip, positive, negative


def best_of_n(rfmi_nodes, toy, score, *, n=4, k=2, batch_size=3, seed=40, steps=8, cfg=3.0, text=PROMPT, clip=True):
    model, toy_clip, positive, negative = toy
    latent = rfmi_nodes["RFMIToyEmptyLatent"].execute(1).result[0]
    return rfmi_nodes["RFMIBestOfN"].execute(model, seed, steps, cfg, "euler", "simple", positive, negative, latent, n,
                                             k, batch_size, "cfg", score, clip=toy_clip if clip else None,
                                             text=text).result


def test_the_toy_clip_encodes_as_toy_text_encode(rfmi_nodes, toy):
    _, _, positive, _ = toy
    (ours, _), = positive
    (theirs, _), = rfmi_nodes["RFMIToyTextEncode"].execute(PROMPT).result[0]
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("score", ["phrase-min", "phrase-mean"])
def test_best_of_n_by_phrase_keeps_the_stock_images_and_ranks_by_the_phrase_score(rfmi_nodes, toy, score):
    plain_best, _, plain = best_of_n(rfmi_nodes, toy, "rfmi")
    best, best_mi, scores = best_of_n(rfmi_nodes, toy, score)
    assert torch.equal(scores.latents, plain.latents)  # bitwise: the extra passes never touch the sampler's result
    torch.testing.assert_close(scores.result.mi, plain.mi)  # the plain MI is still read, from the same evaluations
    assert scores.phrases == tuple(PHRASES) and scores.phrase_mi.shape == (4, 3)
    assert scores.phrase_maps.shape == (4, 3, 16, 16) and bool((scores.phrase_maps >= 0).all())
    expected = scores.phrase_mi.amin(dim=1) if score == "phrase-min" else scores.phrase_mi.mean(dim=1)
    assert torch.equal(scores.mi, expected)
    order = expected.argsort(descending=True)[:2]
    assert best_mi == [float(v) for v in expected[order]] and torch.equal(best["samples"], plain.latents[order])
    # candidate j is the stock KSampler's image for seed + j (batch 1 there, 3 here: equal up to batched kernels' last
    # bits, as Best-of-N's description says; RFMI Sampler's test below compares the same batch bitwise)
    model, _, positive, negative = toy
    latent = rfmi_nodes["RFMIToyEmptyLatent"].execute(1).result[0]
    stock = comfy_nodes.KSampler().sample(model, 42, 8, 3.0, "euler", "simple", positive, negative, latent)[0]
    torch.testing.assert_close(stock["samples"][0], scores.latents[2], rtol=0, atol=1e-4)


def test_phrase_mi_through_comfyuis_sampler_is_the_core_euler_samplers(rfmi_nodes, toy):
    """Same noise, same σ grid: the phrase MI that Best-of-N reads in ComfyUI's sampler (u_{y∖p} from calc_cond_batch
    in the post-CFG hook) equals sample_with_phrase_mi on the bare toy network with the toy model's own y∖p."""
    seed, steps, cfg, n = 40, 8, 3.0, 4
    _, _, scores = best_of_n(rfmi_nodes, toy, "phrase-min", n=n, batch_size=n, seed=seed, steps=steps, cfg=cfg)
    model = toy[0]
    wrapped = model.model.diffusion_model
    net = ToyFlowTransformer(wrapped.config).eval()
    net.load_state_dict(wrapped.state_dict())
    noise = torch.cat([comfy.sample.prepare_noise(torch.zeros(1, 3, 16, 16), seed + j) for j in range(n)])
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", steps)
    tokens = lambda text: tokenize_batch([text] * n)  # noqa: E731
    with torch.no_grad():
        x, plain, phrases = sample_with_phrase_mi(lambda x, t, c: net(x, t, c), noise, sigmas, tokens(PROMPT),
                                                  torch.full_like(tokens(PROMPT), PAD_ID),
                                                  [tokens(a) for a in ABLATED], cfg=cfg)
    print(f"toy phrase MI (nats), ComfyUI vs core: {scores.phrase_mi.tolist()} vs {phrases.mi.tolist()}")
    assert (scores.latents - x).abs().max().item() < 1e-3
    torch.testing.assert_close(scores.phrase_mi, phrases.mi, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(scores.result.mi, plain.mi, rtol=1e-3, atol=1e-2)
    assert float(phrases.mi.abs().max()) > 1  # the toy model's phrases carry nats, not a comparison of zeros


def test_rfmi_sampler_by_phrase_keeps_the_stock_images(rfmi_nodes, toy):
    model, clip, positive, negative = toy
    latent = rfmi_nodes["RFMIToyEmptyLatent"].execute(2).result[0]
    node = rfmi_nodes["RFMISampler"]
    plain = node.execute(model, 9, 6, 3.0, "euler", "simple", positive, negative, latent, 1.0, "cfg", "rfmi").result
    phrase = node.execute(model, 9, 6, 3.0, "euler", "simple", positive, negative, latent, 1.0, "cfg", "phrase-min",
                          clip=clip, text=PROMPT).result
    stock = comfy_nodes.KSampler().sample(model, 9, 6, 3.0, "euler", "simple", positive, negative, latent)[0]
    assert torch.equal(phrase[0]["samples"], plain[0]["samples"]) and torch.equal(phrase[0]["samples"],
                                                                                     stock["samples"])
    assert phrase[1] == [float(v) for v in phrase[2].phrase_mi.amin(dim=1)] and phrase[2].phrases == tuple(PHRASES)


def test_ranking_by_phrase_without_clip_or_text_says_what_to_connect(rfmi_nodes, toy):
    with pytest.raises(ValueError, match="score 'phrase-min' ranks by the MI of each phrase.*connect clip.*give text"):
        best_of_n(rfmi_nodes, toy, "phrase-min", clip=False)
    with pytest.raises(ValueError, match="connect clip.*give text"):
        best_of_n(rfmi_nodes, toy, "phrase-mean", text="  ")
    with pytest.raises(ValueError, match="not a binding, spatial or numeracy prompt"):
        best_of_n(rfmi_nodes, toy, "phrase-min", text="a red square near a blue disk")


def gallery_of(rfmi_nodes, scores):
    latents = rfmi_nodes["RFMICandidates"].execute(scores).result[0]
    images = rfmi_nodes["RFMIToyDecode"].execute(latents, 2).result[0]
    return rfmi_nodes["RFMIRankAndPick"].execute(scores, images, 1, "").ui


def test_rank_and_pick_gets_each_candidates_phrase_mi_and_heatmaps(rfmi_nodes, toy):
    _, _, scores = best_of_n(rfmi_nodes, toy, "phrase-min")
    ui = gallery_of(rfmi_nodes, scores)
    assert ui["rfmi_phrases"] == PHRASES
    for j, entry in enumerate(ui["rfmi_gallery"]):
        assert entry["phrase_mi"] == pytest.approx(scores.phrase_mi[j].tolist())
        assert entry["mi"] == pytest.approx(min(entry["phrase_mi"]))
        assert [ref["filename"].startswith(f"rfmi_gallery_phrase{p + 1}") for p, ref in
                enumerate(entry["phrase_heatmaps"])] == [True] * 3
    _, _, plain = best_of_n(rfmi_nodes, toy, "rfmi")
    plain_ui = gallery_of(rfmi_nodes, plain)
    assert plain_ui["rfmi_phrases"] == [] and "phrase_mi" not in plain_ui["rfmi_gallery"][0]


def test_rfmi_phrase_mi_on_the_toy_splits_by_the_toy_phrases_and_feeds_rank_and_pick(rfmi_nodes, toy):
    model, clip, _, _ = toy
    _, _, scores = best_of_n(rfmi_nodes, toy, "rfmi")
    out = rfmi_nodes["RFMIPhraseMI"].execute(model=model, clip=clip, text=PROMPT, seed=1, n_t=4, cfg=3.0,
                                             velocity="cfg", t_eps=0.99, draws_per_call=4, split_relations=False,
                                             scores=scores).result
    table, phrase_mi, _, phrases, _, scored = out
    assert phrases == PHRASES and len(phrase_mi) == 4 * 3
    assert torch.equal(scored.mi, scores.mi) and torch.equal(scored.latents, scores.latents)  # ranking kept
    assert scored.phrase_mi.flatten().tolist() == pytest.approx(phrase_mi)
    ui = gallery_of(rfmi_nodes, scored)
    assert ui["rfmi_phrases"] == PHRASES and len(ui["rfmi_gallery"][0]["phrase_heatmaps"]) == 3
