"""The example workflows against the real ComfyUI server (a subprocess on 127.0.0.1, this pack installed).

(a) every example_workflows/*.json uses only registered node types, valid widget values in the frontend's order, and
    consistent links; its API conversion passes ComfyUI's own prompt validation except for the model files, which a
    test machine does not have;
(b) the server lists the workflows as templates and the pack's JS as extensions;
(c) rfmi_sampler_sd35.json, with its checkpoint and text encoders swapped for a tiny SD3 and test conditioning, runs
    to success through POST /prompt, and RFMI Sampler reports a finite MI per image;
(d) rfmi_finetune_sd35.json (Best-of-N → Export → Train LoRA → base vs LoRA), swapped likewise, runs to success:
    the set holds each prompt's best, the LoRA file loads with every key mapped, and base and LoRA images differ.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from comfy_server import PACK_NAME, REPO, TINY_SD3, ComfyServer, prepare_base
from workflow_convert import (FRONTEND_ONLY_TYPES, check_links, check_widgets, is_model_file, link_table,
                              node_types, to_api_prompt)

WORKFLOW_DIR = REPO / "example_workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
EXPECTED = {
    "best_of_n_sd35",
    "rfmi_finetune_sd35",
    "rfmi_sampler_flux",
    "rfmi_sampler_sd35",
    "score_latent_sd35",
    "toy_rfmi_loop",
}
WEB_FILES = {"rfmi_mi_display.js", "rfmi_format.js", "rfmi_gallery.js", "rfmi_gallery_logic.js", "rfmi_node_ui.js"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(prepare_base(tmp_path_factory.mktemp("comfy_base"))) as srv:
        yield srv


@pytest.fixture(scope="module")
def object_info(server) -> dict:
    return server.get_json("/object_info")


def test_the_expected_workflows_exist():
    assert {p.stem for p in WORKFLOWS} == EXPECTED


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_valid_for_this_comfyui(path, object_info):
    workflow = load(path)
    assert workflow.get("version") == 0.4 and isinstance(workflow.get("nodes"), list)
    missing = node_types(workflow) - set(object_info) - FRONTEND_ONLY_TYPES
    assert not missing, f"node types not registered in ComfyUI: {sorted(missing)}"
    assert any(t.startswith("RFMI") for t in node_types(workflow))
    assert check_links(workflow) == []
    assert check_widgets(workflow, object_info) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_passes_comfyuis_validation_but_for_model_files(path, server, object_info):
    """POST /prompt validates the whole graph (types, links, required inputs, values); only the absent model files
    may fail it. Validation fails, so nothing is executed. A workflow that names no model file (the toy model ships
    with the pack) passes validation whole: it is queued, then cancelled."""
    prompt = to_api_prompt(load(path), object_info)
    model_files = [v for node in prompt.values() for v in node["inputs"].values() if is_model_file(v)]
    status, answer = server.post_json("/prompt", {"prompt": prompt, "client_id": "rfmi-tests"})
    if status == 200:
        server.post_json("/queue", {"delete": [answer["prompt_id"]]})
        server.post_json("/interrupt", {})
        assert not model_files, f"the workflow was queued though the test machine lacks {model_files}"
        return
    assert status == 400, answer
    errors = answer.get("node_errors") or {}
    assert errors, answer
    for node_id, entry in errors.items():
        for error in entry["errors"]:
            name = error.get("extra_info", {}).get("input_name")
            value = prompt[node_id]["inputs"].get(name)
            assert error["type"] == "value_not_in_list" and is_model_file(value), (node_id, entry["class_type"], error)


def test_server_lists_the_workflows_and_the_javascript(server):
    templates = server.get_json("/workflow_templates")
    assert set(templates.get(PACK_NAME, [])) == EXPECTED
    for name in EXPECTED:
        served = server.get_json(f"/api/workflow_templates/{PACK_NAME}/{name}.json")
        assert served == load(WORKFLOW_DIR / f"{name}.json")
    extensions = server.get_json("/extensions")
    ours = {e.rsplit("/", 1)[1] for e in extensions if e.startswith(f"/extensions/{PACK_NAME}/")}
    assert ours == WEB_FILES
    status, body, content_type = server.request(f"/extensions/{PACK_NAME}/rfmi_mi_display.js")
    assert status == 200 and "javascript" in content_type and b"registerExtension" in body


# ----------------------------------------------------------------------------------------------------------------------
# running rfmi_sampler_sd35.json on a tiny model


def _node(workflow: dict, node_type: str, title_contains: str = "") -> dict:
    found = [n for n in workflow["nodes"] if n["type"] == node_type and title_contains in n.get("title", "")]
    assert len(found) == 1, (node_type, title_contains, [n["id"] for n in found])
    return found[0]


def _remove_links(workflow: dict, link_ids: set[int]) -> None:
    table = link_table(workflow)
    workflow["links"] = [link for link in workflow["links"] if link[0] not in link_ids]
    for node in workflow["nodes"]:
        for inp in node.get("inputs") or []:
            if inp.get("link") in link_ids:
                inp["link"] = None
        for out in node.get("outputs") or []:
            if out.get("links"):
                out["links"] = [lid for lid in out["links"] if lid not in link_ids] or None
    assert all(lid in table for lid in link_ids)


def _replace(workflow: dict, node: dict, new_type: str, widgets: list, keep_inputs: tuple = ()) -> None:
    """node becomes new_type with these widget values; links into inputs not kept are removed (outputs stay)."""
    dropped = {inp["link"] for inp in node.get("inputs") or [] if inp["name"] not in keep_inputs and inp.get("link")}
    _remove_links(workflow, dropped)
    node["inputs"] = [inp for inp in node.get("inputs") or [] if inp["name"] in keep_inputs]
    slots = {inp["link"]: slot for slot, inp in enumerate(node["inputs"]) if inp.get("link") is not None}
    for link in workflow["links"]:  # kept inputs move up: their links follow
        if link[0] in slots:
            link[4] = slots[link[0]]
    node["type"], node["widgets_values"] = new_type, widgets
    node["properties"] = {"Node name for S&R": new_type}


def tiny_sampler_workflow(seed: int = 7, steps: int = 3, batch: int = 2) -> dict:
    """rfmi_sampler_sd35.json with a tiny SD3 for the checkpoint, test conditioning for the text encoders, and an
    EmptyImage (128 px, the tiny latent's size ×8) for the VAE decode. Everything else as the user gets it."""
    workflow = copy.deepcopy(load(WORKFLOW_DIR / "rfmi_sampler_sd35.json"))
    nodes = workflow["nodes"]
    _swap_checkpoint_for_tiny_sd3(workflow)
    for i, encoder in enumerate(n for n in list(nodes) if n["type"] == "CLIPTextEncode"):
        _replace(workflow, encoder, "RFMITestConditioning", [100 + i, "fixed"])
    decode = _node(workflow, "VAEDecode")
    _replace(workflow, decode, "EmptyImage", [128, 128, batch, 0])
    _node(workflow, "EmptySD3LatentImage")["widgets_values"] = [128, 128, batch]
    sampler = _node(workflow, "RFMISampler")
    values = sampler["widgets_values"]
    values[0], values[1], values[2] = seed, "fixed", steps
    return workflow


def run_to_success(server, workflow: dict, object_info: dict, timeout: float) -> dict:
    """Checks the workflow's links and widgets, converts it to an API prompt (no stock model loader may be left: the
    tiny models stand in), runs it through the server and returns its /history entry, asserted successful."""
    assert check_links(workflow) == []
    assert check_widgets(workflow, object_info) == []
    prompt = to_api_prompt(workflow, object_info)
    assert not {"CheckpointLoaderSimple", "TripleCLIPLoader", "VAEDecode"} & {n["class_type"] for n in prompt.values()}
    entry = server.run_prompt(prompt, timeout=timeout)
    status = entry["status"]
    assert status["status_str"] == "success", (json.dumps(status["messages"], indent=1)[-4000:], server.log_tail())
    return entry


def test_rfmi_sampler_workflow_runs_on_a_tiny_sd3(server, object_info):
    workflow = tiny_sampler_workflow()
    entry = run_to_success(server, workflow, object_info, timeout=120)
    sampler_id = str(_node(workflow, "RFMISampler")["id"])
    mi = entry["outputs"][sampler_id]["rfmi_mi"]
    assert len(mi) == 2 and all(isinstance(v, float) and math.isfinite(v) for v in mi), mi
    preview_id = str(_node(workflow, "PreviewImage")["id"])
    assert len(entry["outputs"][preview_id]["images"]) == 2  # the heatmap overlay of both images
    save_id = str(_node(workflow, "SaveImage")["id"])
    assert len(entry["outputs"][save_id]["images"]) == 2


# ----------------------------------------------------------------------------------------------------------------------
# running rfmi_finetune_sd35.json on a tiny model: Best-of-N → Export → Train LoRA → base vs LoRA


def _swap_checkpoint_for_tiny_sd3(workflow: dict) -> None:
    """CheckpointLoaderSimple → UNETLoader(tiny SD3) (its CLIP and VAE links dropped); TripleCLIPLoader removed."""
    ckpt = _node(workflow, "CheckpointLoaderSimple")
    _remove_links(workflow, set(ckpt["outputs"][1]["links"] or []) | set(ckpt["outputs"][2]["links"] or []))
    _replace(workflow, ckpt, "UNETLoader", [TINY_SD3, "default"])
    ckpt["outputs"] = ckpt["outputs"][:1]
    clip = _node(workflow, "TripleCLIPLoader")
    _remove_links(workflow, set(clip["outputs"][0]["links"] or []))
    workflow["nodes"].remove(clip)


def tiny_finetune_workflow(train_steps: int = 6) -> dict:
    """rfmi_finetune_sd35.json on the tiny SD3: test conditioning (per prompt text) for the encoders, a latent shown
    as an image for the VAE decodes, 128 px, 3 sampling steps, Best-of-2, and a short, fast LoRA training."""
    workflow = copy.deepcopy(load(WORKFLOW_DIR / "rfmi_finetune_sd35.json"))
    _swap_checkpoint_for_tiny_sd3(workflow)
    for encoder in [n for n in workflow["nodes"] if n["type"] == "CLIPTextEncode"]:
        _replace(workflow, encoder, "RFMITestConditioning", [100, "fixed"], keep_inputs=("text",))
        for inp in encoder["inputs"]:
            inp.pop("widget", None)
    for decode in [n for n in workflow["nodes"] if n["type"] == "VAEDecode"]:
        _replace(workflow, decode, "RFMITestLatentImage", [], keep_inputs=("samples",))
    _node(workflow, "RFMIPromptList")["widgets_values"][1] = "a red cube\n# a comment\ntwo green balls"
    _node(workflow, "EmptySD3LatentImage")["widgets_values"] = [128, 128, 1]
    best_of_n = _node(workflow, "RFMIBestOfN")["widgets_values"]
    best_of_n[2], best_of_n[6], best_of_n[8] = 3, 2, 2  # steps, n, batch_size
    train = _node(workflow, "RFMITrainLoRA")
    values = dict(zip(["set_name", "lora_name", "steps", "learning_rate", "rank", "alpha", "warmup_steps"],
                      train["widgets_values"][:7]))
    assert values["steps"] == 2000 and values["rank"] == 32  # the paper's Table 2 as the user gets it
    train["widgets_values"][2:7] = [train_steps, 1e-2, 4, 4.0, 0]
    train["widgets_values"][9] = 1.0  # max_grad_norm: the tiny run must move visibly in a few steps
    for sampler in [n for n in workflow["nodes"] if n["type"] == "KSampler"]:
        sampler["widgets_values"][2] = 3
    return workflow


def _saved_images(base: Path, images: list[dict]) -> list[np.ndarray]:
    return [np.asarray(Image.open(base / "output" / i["subfolder"] / i["filename"]), dtype=np.float64)
            for i in images]


def test_finetune_workflow_trains_a_lora_that_changes_the_images(server, object_info):
    workflow = tiny_finetune_workflow()
    entry = run_to_success(server, workflow, object_info, timeout=300)

    # the set: each prompt's best of 2, with its own conditioning
    from rfmi_core import FinetuneSet

    set_name, lora_name = _node(workflow, "RFMITrainLoRA")["widgets_values"][:2]
    kept = FinetuneSet.open(server.base / "output" / "rfmi_sets" / set_name).records()
    assert sorted(r.prompt for r in kept) == ["a red cube", "two green balls"]
    assert len({r.prompt_conditioning for r in kept}) == 2

    # Train LoRA ran once, after both exports, and wrote a LoRA whose every module the stock loader maps
    train_id = str(_node(workflow, "RFMITrainLoRA")["id"])
    assert len(entry["outputs"][train_id]["text"]) == 1, entry["outputs"][train_id]
    assert "6 steps" in entry["outputs"][train_id]["text"][0]
    path = server.base / "models" / "loras" / f"{lora_name}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        lora = {k: f.get_tensor(k) for k in f.keys()}
    from tiny_models import tiny_sd3_state_dict

    attention = re.compile(r"joint_blocks\.\d+\.(?:context_block|x_block)\.attn\.(?:qkv|proj)")
    expected = {k[: -len(".weight")] for k in tiny_sd3_state_dict() if k.endswith(".weight")
                and attention.fullmatch(k[: -len(".weight")])}
    assert {k.split(".", 1)[1].rsplit(".lora_", 1)[0].rsplit(".alpha", 1)[0] for k in lora} == expected
    assert len(lora) == 3 * len(expected) and all(k.startswith("diffusion_model.") for k in lora)
    assert max(float(v.abs().max()) for k, v in lora.items() if k.endswith("lora_B.weight")) > 0
    assert "lora key not loaded" not in server.log_tail(200_000)

    # base vs LoRA, same seed, side by side for each prompt: (base, LoRA) pairs that differ
    save_id = str(_node(workflow, "SaveImage")["id"])
    images = _saved_images(server.base, entry["outputs"][save_id]["images"])
    assert len(images) == 4 and all(i.shape == (128, 128, 3) for i in images)
    for base_image, lora_image in (images[0:2], images[2:4]):
        change = np.abs(base_image - lora_image).mean()
        print(f"finetune workflow: mean |base − LoRA| = {change:.2f} of 255")
        assert change > 0.5
    assert np.abs(images[0] - images[2]).mean() > 0.5  # the two prompts' conditionings differ
    loss_id = str(_node(workflow, "PreviewImage", "Loss")["id"])
    assert len(entry["outputs"][loss_id]["images"]) == 1
