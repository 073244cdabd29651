"""The toy nodes in the real ComfyUI: the toy MODEL through the stock KSampler is rfmi_core's own Euler sampler on the
toy network (sign and scale of the flow wrapper), the encoder and decoder keep their contracts, and the bundled
toy_rfmi_loop.json runs the whole loop (Best-of-N → Rank and Pick → export → Train LoRA → base vs LoRA) through the
real server, with a re-queue after a pick re-running only the picker and what follows it."""

from __future__ import annotations

import json
import math

import pytest
import torch

import comfy.sample
import comfy.samplers
import nodes as comfy_nodes

from rfmi_core import sample_with_mi
from rfmi_core.toy import MAX_TOKENS, PAD_ID, tokenize_batch
from rfmi_core.toy.model import ToyFlowTransformer

PROMPT = "a red square to the left of a blue disk"


@pytest.fixture(scope="module")
def toy(rfmi_nodes):
    return rfmi_nodes["RFMIToyModelLoader"].execute("shipped").result[0]


def encode(rfmi_nodes, text):
    return rfmi_nodes["RFMIToyTextEncode"].execute(text).result[0]


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_toy_model_through_the_stock_ksampler_is_the_core_euler_sampler(rfmi_nodes, toy, cfg):
    """Same noise, same σ grid: ComfyUI's KSampler (euler) on the wrapped toy model equals rfmi_core.sample_with_mi on
    the bare toy network (u = x1 − x0, t = 1 − σ), so the wrapper's sign and time are right."""
    seed, steps = 5, 12
    latent = rfmi_nodes["RFMIToyEmptyLatent"].execute(2).result[0]
    positive, negative = encode(rfmi_nodes, PROMPT), encode(rfmi_nodes, "")
    out = comfy_nodes.KSampler().sample(toy, seed, steps, cfg, "euler", "simple", positive, negative, latent)[0]["samples"]

    wrapped = toy.model.diffusion_model  # the weights the loader read (the shipped file may be retrained meanwhile)
    net = ToyFlowTransformer(wrapped.config).eval()
    net.load_state_dict(wrapped.state_dict())
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    sigmas = comfy.samplers.calculate_sigmas(toy.get_model_object("model_sampling"), "simple", steps)
    tokens = tokenize_batch([PROMPT] * 2)
    with torch.no_grad():
        ref, _ = sample_with_mi(lambda x, t, c: net(x, t, c), noise, sigmas, tokens, torch.full_like(tokens, PAD_ID),
                                cfg=cfg)
    assert out.shape == (2, 3, 16, 16)
    assert (out - ref).abs().max().item() < 1e-4, (out - ref).abs().max().item()
    assert (ref - noise).abs().mean().item() > 0.3  # the sampler moved far from the noise (not a no-op)


def test_text_encoder_gives_word_ids_and_the_empty_prompt_is_all_padding(rfmi_nodes):
    (ids, extras), = encode(rfmi_nodes, PROMPT)
    assert ids.shape == (1, MAX_TOKENS, 1) and extras == {}
    assert ids[0, :, 0].long().tolist() == tokenize_batch([PROMPT])[0].tolist()
    (empty, _), = encode(rfmi_nodes, "")
    assert empty.eq(PAD_ID).all()
    with pytest.raises(ValueError, match="knows only these words.*yellow.*crosses") as error:
        encode(rfmi_nodes, "a purple square")
    assert "purple" in str(error.value)


def test_decode_maps_minus_one_one_to_zero_one_and_enlarges_by_whole_pixels(rfmi_nodes):
    x = torch.linspace(-1.5, 1.5, 2 * 3 * 16 * 16).reshape(2, 3, 16, 16)
    image = rfmi_nodes["RFMIToyDecode"].execute({"samples": x}, 4).result[0]
    assert image.shape == (2, 64, 64, 3)
    assert image.min().item() == 0.0 and image.max().item() == 1.0
    expected = ((x.clamp(-1, 1) + 1) / 2).movedim(1, -1)
    assert torch.equal(image[:, ::4, ::4], expected) and torch.equal(image[:, 3::4, 3::4], expected)
    with pytest.raises(ValueError, match="toy samples"):
        rfmi_nodes["RFMIToyDecode"].execute({"samples": torch.zeros(1, 16, 8, 8)}, 1)


def test_toy_model_refuses_other_conditioning(toy):
    from tiny_models import sd3_conditioning

    latent = {"samples": torch.zeros(1, 3, 16, 16)}
    with pytest.raises(ValueError, match="RFMI Toy Text Encode"):
        comfy_nodes.KSampler().sample(toy, 0, 2, 1.0, "euler", "simple", sd3_conditioning(0), sd3_conditioning(1), latent)


# ----------------------------------------------------------------------------------------------------------------------
# Rank and Pick in process


@pytest.fixture(scope="module")
def candidates(rfmi_nodes, toy):
    positive, negative = encode(rfmi_nodes, PROMPT), encode(rfmi_nodes, "")
    latent = rfmi_nodes["RFMIToyEmptyLatent"].execute(1).result[0]
    scores = rfmi_nodes["RFMIBestOfN"].execute(toy, 30, 8, 3.0, "euler", "simple", positive, negative, latent, 6, 2, 6,
                                               "cfg", "rfmi").result[2]
    all_latents = rfmi_nodes["RFMICandidates"].execute(scores).result[0]
    images = rfmi_nodes["RFMIToyDecode"].execute(all_latents, 2).result[0]
    return scores, images


def test_rank_and_pick_outputs_the_picks_in_pick_order_else_the_top_k(rfmi_nodes, candidates):
    scores, images = candidates
    node = rfmi_nodes["RFMIRankAndPick"]
    ranked = scores.mi.argsort(descending=True).tolist()
    out = node.execute(scores, images, 2, "")
    latent, picked_images, picks = out.result
    assert picks.seeds == [scores.seeds[j] for j in ranked[:2]]
    assert torch.equal(latent["samples"], scores.latents[ranked[:2]])
    assert torch.equal(picked_images, images[ranked[:2]])
    gallery = out.ui["rfmi_gallery"]
    assert [g["candidate"] for g in gallery] == [1, 2, 3, 4, 5, 6]
    assert [g["mi"] for g in gallery] == pytest.approx(scores.mi.tolist())
    assert all(g["heatmap"] is not None for g in gallery) and out.ui["rfmi_picked"] == [False]

    latent, picked_images, picks = node.execute(scores, images, 2, "5, 2 5").result
    assert picks.seeds == [scores.seeds[4], scores.seeds[1]] and torch.equal(latent["samples"], scores.latents[[4, 1]])
    assert torch.equal(picked_images, images[[4, 1]])
    with pytest.raises(ValueError, match="'7' is not a candidate number between 1 and 6"):
        node.execute(scores, images, 2, "7")
    with pytest.raises(ValueError, match="6 candidates"):
        node.execute(scores, images[:3], 2, "")


def test_best_of_n_by_phrase_pmi_compares_the_prompt_with_itself_less_each_phrase(rfmi_nodes, toy):
    """score phrase-pmi in the node: the toy CLIP's own phrase split names y∖p for each phrase, each candidate's score
    is its smallest margin log p(x|y) − log p(x|y∖p); without the clip and text the node says what to connect."""
    from rfmi_core.toy.prompts import split_toy_prompt

    clip = rfmi_nodes["RFMIToyModelLoader"].execute("shipped").result[1]
    positive, negative = encode(rfmi_nodes, PROMPT), encode(rfmi_nodes, "")
    latent = rfmi_nodes["RFMIToyEmptyLatent"].execute(1).result[0]
    node = rfmi_nodes["RFMIBestOfN"]
    scores = node.execute(toy, 30, 6, 3.0, "euler", "simple", positive, negative, latent, 4, 2, 4, "cfg",
                          "phrase-pmi", n_t=4, clip=clip, text=PROMPT).result[2]
    assert scores.rivals == tuple(split_toy_prompt(PROMPT).ablations()) and len(scores.rivals) == 3
    torch.testing.assert_close(scores.rival_margins.min(dim=1).values, scores.mi, rtol=0, atol=1e-4)
    assert scores.settings["score"] == "phrase-pmi"
    with pytest.raises(ValueError, match="connect clip .* and text"):
        node.execute(toy, 30, 6, 3.0, "euler", "simple", positive, negative, latent, 4, 2, 4, "cfg", "phrase-pmi",
                     n_t=4)


# ----------------------------------------------------------------------------------------------------------------------
# the bundled workflow through the real server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from comfy_server import ComfyServer, prepare_base

    with ComfyServer(prepare_base(tmp_path_factory.mktemp("toy_base"), tiny_model=False)) as srv:
        yield srv


def _png_pixels(server, ref: dict) -> torch.Tensor:
    import io as _io
    import urllib.parse

    import numpy as np
    from PIL import Image

    query = urllib.parse.urlencode({k: ref[k] for k in ("filename", "subfolder", "type")})
    status, body, _ = server.request(f"/view?{query}")
    assert status == 200, ref
    return torch.from_numpy(np.array(Image.open(_io.BytesIO(body)).convert("RGB"))).float() / 255


def _executed(entry: dict) -> set[str]:
    cached = {n for kind, data in entry["status"]["messages"] if kind == "execution_cached" for n in data["nodes"]}
    return set(entry["outputs"]) - cached


def test_the_toy_workflow_runs_the_whole_loop_and_a_pick_reruns_only_the_picker(server):
    from test_workflows import WORKFLOW_DIR, load
    from workflow_convert import check_links, check_widgets, to_api_prompt

    object_info = server.get_json("/object_info")
    workflow = load(WORKFLOW_DIR / "toy_rfmi_loop.json")
    assert check_links(workflow) == [] and check_widgets(workflow, object_info) == []
    prompt = to_api_prompt(workflow, object_info)
    for node in prompt.values():  # fewer steps than the user's defaults: the same loop, quicker on a shared CPU
        if node["class_type"] in ("RFMIBestOfN", "KSampler"):
            node["inputs"]["steps"] = 8
        if node["class_type"] == "RFMITrainLoRA":
            node["inputs"]["steps"] = 20
    ids = {n["type"] + ":" + n.get("title", ""): str(n["id"]) for n in workflow["nodes"]}
    pick_id = next(v for k, v in ids.items() if k.startswith("RFMIRankAndPick"))
    bon_id = next(v for k, v in ids.items() if k.startswith("RFMIBestOfN"))
    train_id = next(v for k, v in ids.items() if k.startswith("RFMITrainLoRA"))

    first = server.run_prompt(prompt, timeout=300)
    assert first["status"]["status_str"] == "success", (first["status"]["messages"][-3:], server.log_tail())
    gallery = first["outputs"][pick_id]["rfmi_gallery"]
    n = prompt[bon_id]["inputs"]["n"]
    assert [g["candidate"] for g in gallery] == list(range(1, n + 1))
    mi = [g["mi"] for g in gallery]
    assert all(math.isfinite(v) for v in mi) and mi == pytest.approx(first["outputs"][bon_id]["rfmi_mi"])
    ranked = sorted(range(n), key=lambda j: -mi[j])
    assert first["outputs"][pick_id]["rfmi_chosen"] == [j + 1 for j in ranked[:2]]  # nothing picked: top k = 2
    for g in gallery:
        pixels = _png_pixels(server, g["image"])
        assert pixels.shape[-1] == 3 and 0.0 <= pixels.min() and pixels.max() <= 1.0 and pixels.std() > 0.05
    lora = server.base / "models" / "loras" / "toy_rfmi_lora.safetensors"
    assert lora.is_file() and first["outputs"][train_id]["text"][0].startswith("toy_rfmi_lora.safetensors")
    previews = {n.get("title"): first["outputs"][str(n["id"])]["images"] for n in workflow["nodes"]
                if n["type"] == "PreviewImage"}
    assert {title: len(images) for title, images in previews.items()} == {"Picked": 2, "Base": 4, "LoRA": 4}
    base = torch.stack([_png_pixels(server, ref) for ref in previews["Base"]])
    tuned = torch.stack([_png_pixels(server, ref) for ref in previews["LoRA"]])
    assert 0.0 <= tuned.min() and tuned.max() <= 1.0
    assert (base - tuned).abs().max() > 0.05, "the LoRA changed nothing: was it applied?"  # same seeds, other model

    # the artist picks the lowest-MI candidate (set through the API, as the gallery does) and queues again
    lowest = ranked[-1] + 1
    prompt[pick_id]["inputs"]["picks"] = str(lowest)
    second = server.run_prompt(prompt, timeout=300)
    assert second["status"]["status_str"] == "success", (second["status"]["messages"][-3:], server.log_tail())
    assert second["outputs"][pick_id]["rfmi_chosen"] == [lowest]
    ran = _executed(second)
    assert bon_id not in ran and pick_id in ran and train_id in ran
    summary = json.dumps(second["outputs"])
    assert "toy_rfmi: +1" in summary
    records = [json.loads(line) for path in (server.base / "output" / "rfmi_sets" / "toy_rfmi").rglob("*.jsonl")
               for line in path.read_text().splitlines() if line.strip()]
    picked = [r for r in records if r.get("picked")]
    assert any(r["candidate_index"] == lowest - 1 for r in picked), records
