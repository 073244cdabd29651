"""The example workflows against the real ComfyUI server (a subprocess on 127.0.0.1, this pack installed).

(a) every example_workflows/*.json uses only registered node types, valid widget values in the frontend's order, and
    consistent links; its API conversion passes ComfyUI's own prompt validation except for the model files, which a
    test machine does not have;
(b) the server lists the workflows as templates and the pack's JS as extensions;
(c) rfmi_sampler_sd35.json, with its checkpoint and text encoders swapped for a tiny SD3 and test conditioning, runs
    to success through POST /prompt, and RFMI Sampler reports a finite MI per image.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from comfy_server import PACK_NAME, REPO, TINY_SD3, ComfyServer, prepare_base
from workflow_convert import (FRONTEND_ONLY_TYPES, check_links, check_widgets, is_model_file, link_table,
                              node_types, to_api_prompt)

WORKFLOW_DIR = REPO / "example_workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
EXPECTED = {"rfmi_sampler_sd35", "best_of_n_sd35", "score_latent_sd35", "rfmi_sampler_flux"}
WEB_FILES = {"rfmi_mi_display.js", "rfmi_format.js"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = prepare_base(tmp_path_factory.mktemp("comfy_base"))
    srv = ComfyServer(base)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


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
    may fail it. Validation fails, so nothing is executed."""
    prompt = to_api_prompt(load(path), object_info)
    status, answer = server.post_json("/prompt", {"prompt": prompt, "client_id": "rfmi-tests"})
    if status == 200:
        server.post_json("/interrupt", {})
        pytest.fail("the workflow was queued: a model file was unexpectedly present")
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
    node["type"], node["widgets_values"] = new_type, widgets
    node["properties"] = {"Node name for S&R": new_type}


def tiny_sampler_workflow(seed: int = 7, steps: int = 3, batch: int = 2) -> dict:
    """rfmi_sampler_sd35.json with a tiny SD3 for the checkpoint, test conditioning for the text encoders, and an
    EmptyImage (128 px, the tiny latent's size ×8) for the VAE decode. Everything else as the user gets it."""
    workflow = copy.deepcopy(load(WORKFLOW_DIR / "rfmi_sampler_sd35.json"))
    nodes = workflow["nodes"]
    ckpt = _node(workflow, "CheckpointLoaderSimple")
    _remove_links(workflow, set(ckpt["outputs"][1]["links"] or []) | set(ckpt["outputs"][2]["links"] or []))
    _replace(workflow, ckpt, "UNETLoader", [TINY_SD3, "default"])
    ckpt["outputs"] = ckpt["outputs"][:1]
    clip = _node(workflow, "TripleCLIPLoader")
    _remove_links(workflow, set(clip["outputs"][0]["links"] or []))
    nodes.remove(clip)
    for i, encoder in enumerate(n for n in list(nodes) if n["type"] == "CLIPTextEncode"):
        _replace(workflow, encoder, "RFMITestConditioning", [100 + i, "fixed"])
    decode = _node(workflow, "VAEDecode")
    _replace(workflow, decode, "EmptyImage", [128, 128, batch, 0])
    _node(workflow, "EmptySD3LatentImage")["widgets_values"] = [128, 128, batch]
    sampler = _node(workflow, "RFMISampler")
    values = sampler["widgets_values"]
    values[0], values[1], values[2] = seed, "fixed", steps
    return workflow


def test_rfmi_sampler_workflow_runs_on_a_tiny_sd3(server, object_info):
    workflow = tiny_sampler_workflow()
    assert check_links(workflow) == []
    assert check_widgets(workflow, object_info) == []
    prompt = to_api_prompt(workflow, object_info)
    assert not {"CheckpointLoaderSimple", "TripleCLIPLoader", "VAEDecode"} & {n["class_type"] for n in prompt.values()}
    entry = server.run_prompt(prompt, timeout=120)
    status = entry["status"]
    assert status["status_str"] == "success", (json.dumps(status["messages"], indent=1)[-4000:], server.log_tail())
    sampler_id = str(_node(workflow, "RFMISampler")["id"])
    mi = entry["outputs"][sampler_id]["rfmi_mi"]
    assert len(mi) == 2 and all(isinstance(v, float) and math.isfinite(v) for v in mi), mi
    preview_id = str(_node(workflow, "PreviewImage")["id"])
    assert len(entry["outputs"][preview_id]["images"]) == 2  # the heatmap overlay of both images
    save_id = str(_node(workflow, "SaveImage")["id"])
    assert len(entry["outputs"][save_id]["images"]) == 2
