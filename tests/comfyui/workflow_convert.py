"""UI-format workflows (what the ComfyUI frontend saves) → API-format prompts (what POST /prompt takes), and checks.

Test helper with no ComfyUI import: it needs only the server's ``/object_info`` (a dict of node id → definition) and
mirrors what the frontend does (``app.graphToPrompt``, frontend 1.27):

- ``widgets_values`` holds one value per widget, in the order of the node's inputs (``input_order``: required, then
  optional), for every input that is a widget (INT, FLOAT, STRING, BOOLEAN, COMBO; not ``forceInput``).
- Extra widgets that only the frontend has also save a value: after an INT with ``control_after_generate`` (or,
  without that key, an INT named ``seed`` or ``noise_seed``) the control mode ("randomize", "fixed", ...); after a
  COMBO with ``control_after_generate`` the mode and a filter string; after an ``image_upload`` COMBO the upload
  button's "image". They are never sent in the prompt.
- A widget converted to an input (an ``inputs`` entry with ``"widget": {"name": ...}``) keeps its value in
  ``widgets_values``; a link into it wins.
- Frontend-only nodes: ``Note``/``MarkdownNote`` are dropped, ``Reroute`` is followed, a ``PrimitiveNode`` gives its
  value to the widgets it feeds. Muted nodes (mode 2) are dropped; bypassed ones (mode 4) pass their first input of the
  same type through, as the frontend does.
"""

from __future__ import annotations

import math
from typing import Any

CONTROL = "control_after_generate"
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize", "increment-wrap")
COMBO_FILTER = "control_filter_list"
UPLOAD = "upload"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_TYPES = {"Note", "MarkdownNote"}
FRONTEND_ONLY_TYPES = NOTE_TYPES | {"Reroute", "PrimitiveNode"}
MODEL_FILE_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")
MODE_MUTED, MODE_BYPASS = 2, 4


class WorkflowError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------------------------------
# node definitions (/object_info)


def ordered_inputs(info: dict) -> list[tuple[str, list, str]]:
    """(name, spec, section) of a node's required and optional inputs, in the server's input_order."""
    sections = info.get("input", {})
    order = info.get("input_order") or {s: list(sections.get(s, {})) for s in ("required", "optional")}
    return [(name, sections[s][name], s) for s in ("required", "optional") for name in order.get(s, [])
            if name in sections.get(s, {})]


def spec_type(spec: list) -> str:
    """INT/FLOAT/STRING/BOOLEAN/COMBO or the socket type; a V1 combo is a list of options, a V3 one is "COMBO"."""
    return "COMBO" if isinstance(spec[0], list) else str(spec[0])


def spec_options(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_values(spec: list) -> list:
    return list(spec[0]) if isinstance(spec[0], list) else list(spec_options(spec).get("options", []))


def is_widget(spec: list) -> bool:
    return spec_type(spec) in WIDGET_TYPES and not spec_options(spec).get("forceInput", False)


def widget_layout(info: dict) -> list[tuple[str, str | None]]:
    """One (kind, input name) per saved widget value: kind "input" for an input's value, else the frontend-only
    widget that follows it (CONTROL, COMBO_FILTER, UPLOAD), with the input it belongs to."""
    layout: list[tuple[str, str | None]] = []
    for name, spec, _ in ordered_inputs(info):
        if not is_widget(spec):
            continue
        kind, options = spec_type(spec), spec_options(spec)
        layout.append(("input", name))
        if kind == "INT" and options.get(CONTROL, name in ("seed", "noise_seed")):
            layout.append((CONTROL, name))
        elif kind == "COMBO" and options.get(CONTROL):
            layout += [(CONTROL, name), (COMBO_FILTER, name)]
        if kind == "COMBO" and options.get("image_upload"):
            layout.append((UPLOAD, name))
    return layout


def widget_values(node: dict, info: dict) -> dict[str, Any]:
    """The node's widget values by input name (frontend-only widgets left out)."""
    values = node.get("widgets_values") or []
    if isinstance(values, dict):  # some custom frontends save a name → value dict
        return dict(values)
    layout = widget_layout(info)
    if len(values) != len(layout):
        raise WorkflowError(f"node {node['id']} ({node['type']}): {len(values)} widgets_values but the definition has "
                            f"{len(layout)} widget slots {[f'{k}:{n}' for k, n in layout]}")
    return {name: value for (kind, name), value in zip(layout, values) if kind == "input"}


# ----------------------------------------------------------------------------------------------------------------------
# links


def link_table(workflow: dict) -> dict[int, dict]:
    """link id → {origin_id, origin_slot, target_id, target_slot, type}; accepts the list and the object form."""
    table = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            entry = {k: link[k] for k in ("origin_id", "origin_slot", "target_id", "target_slot", "type")}
            table[link["id"]] = entry
        else:
            lid, origin_id, origin_slot, target_id, target_slot, type_ = link[:6]
            table[lid] = dict(origin_id=origin_id, origin_slot=origin_slot, target_id=target_id,
                              target_slot=target_slot, type=type_)
    return table


def check_links(workflow: dict) -> list[str]:
    """Every way the links and the nodes' inputs/outputs can disagree; an empty list when consistent."""
    problems = []
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    if len(nodes) != len(workflow.get("nodes", [])):
        problems.append("duplicate node ids")
    links = link_table(workflow)
    if len(links) != len(workflow.get("links", [])):
        problems.append("duplicate link ids")
    if nodes and workflow.get("last_node_id", 0) < max(nodes):
        problems.append(f"last_node_id {workflow.get('last_node_id')} < highest node id {max(nodes)}")
    if links and workflow.get("last_link_id", 0) < max(links):
        problems.append(f"last_link_id {workflow.get('last_link_id')} < highest link id {max(links)}")
    for lid, link in links.items():
        src, dst = nodes.get(link["origin_id"]), nodes.get(link["target_id"])
        if src is None or dst is None:
            problems.append(f"link {lid}: node {link['origin_id'] if src is None else link['target_id']} does not exist")
            continue
        outputs, inputs = src.get("outputs") or [], dst.get("inputs") or []
        if not 0 <= link["origin_slot"] < len(outputs):
            problems.append(f"link {lid}: node {src['id']} has no output slot {link['origin_slot']}")
        else:
            out = outputs[link["origin_slot"]]
            if lid not in (out.get("links") or []):
                problems.append(f"link {lid}: not listed in node {src['id']} output {out['name']!r} links")
            if link["type"] not in (out["type"], "*") and out["type"] != "*":
                problems.append(f"link {lid}: type {link['type']} but node {src['id']} output {out['name']!r} is {out['type']}")
        if not 0 <= link["target_slot"] < len(inputs):
            problems.append(f"link {lid}: node {dst['id']} has no input slot {link['target_slot']}")
        else:
            inp = inputs[link["target_slot"]]
            if inp.get("link") != lid:
                problems.append(f"link {lid}: node {dst['id']} input {inp['name']!r} holds link {inp.get('link')}")
            types = {link["type"], "*"}
            if inp["type"] not in types and not set(str(inp["type"]).split(",")) & types:
                problems.append(f"link {lid}: type {link['type']} into node {dst['id']} input {inp['name']!r} of type {inp['type']}")
    for node in nodes.values():
        for slot, inp in enumerate(node.get("inputs") or []):
            lid = inp.get("link")
            if lid is not None and (lid not in links or links[lid]["target_id"] != node["id"]
                                    or links[lid]["target_slot"] != slot):
                problems.append(f"node {node['id']} input {inp['name']!r} refers to link {lid}, which does not end there")
        for out in node.get("outputs") or []:
            for lid in out.get("links") or []:
                if lid not in links or links[lid]["origin_id"] != node["id"]:
                    problems.append(f"node {node['id']} output {out['name']!r} lists link {lid}, which does not start there")
    return problems


# ----------------------------------------------------------------------------------------------------------------------
# widget values


def is_model_file(value: Any) -> bool:
    return isinstance(value, str) and value.lower().endswith(MODEL_FILE_SUFFIXES)


def check_widget_value(name: str, spec: list, value: Any) -> str | None:
    """Why the value is not valid for the input, or None. Model file names need not be installed."""
    kind, options = spec_type(spec), spec_options(spec)
    if kind == "COMBO":
        allowed = combo_values(spec)
        if value not in allowed and not is_model_file(value):
            return f"{name}={value!r} is not one of {allowed[:12]}{' ...' if len(allowed) > 12 else ''}"
        return None
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name}={value!r} is not a number"
        if kind == "INT" and value != int(value):
            return f"{name}={value!r} is not an integer"
        lo, hi = options.get("min", -math.inf), options.get("max", math.inf)
        if not lo <= value <= hi:
            return f"{name}={value!r} is outside [{lo}, {hi}]"
        return None
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}={value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{name}={value!r} is not a string"
    return None


def check_widgets(workflow: dict, object_info: dict) -> list[str]:
    """Every node's widgets_values against its definition: count, order (by type), combo options, ranges."""
    problems = []
    for node in workflow.get("nodes", []):
        if node["type"] in FRONTEND_ONLY_TYPES:
            continue
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"node {node['id']}: unknown node type {node['type']!r}")
            continue
        values = node.get("widgets_values") or []
        layout = widget_layout(info)
        if len(values) != len(layout):
            problems.append(f"node {node['id']} ({node['type']}): {len(values)} widgets_values, expected {len(layout)}: "
                            f"{[n if k == 'input' else f'({k})' for k, n in layout]}")
            continue
        specs = {name: spec for name, spec, _ in ordered_inputs(info)}
        for (kind, name), value in zip(layout, values):
            where = f"node {node['id']} ({node['type']})"
            if kind == "input":
                problem = check_widget_value(name, specs[name], value)
            elif kind == CONTROL:
                problem = None if value in CONTROL_VALUES else f"{CONTROL} after {name} is {value!r}"
            elif kind == UPLOAD:
                problem = None if value == "image" else f"upload widget after {name} is {value!r}"
            else:
                problem = None if isinstance(value, str) else f"{kind} after {name} is {value!r}"
            if problem:
                problems.append(f"{where}: {problem}")
        for inp in node.get("inputs") or []:
            widget = inp.get("widget")
            if widget and widget.get("name") not in specs:
                problems.append(f"node {node['id']} ({node['type']}): converted widget {widget.get('name')!r} is not an input")
    return problems


def node_types(workflow: dict) -> set[str]:
    return {n["type"] for n in workflow.get("nodes", [])}


# ----------------------------------------------------------------------------------------------------------------------
# conversion


def to_api_prompt(workflow: dict, object_info: dict) -> dict[str, dict]:
    """The API-format prompt the frontend would queue for this workflow."""
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    links = link_table(workflow)

    def source(link_id: int, want_type: str | None = None, seen: frozenset = frozenset()):
        """The real (origin node, slot) behind a link, following reroutes and bypassed nodes; or ("value", v)."""
        link = links[link_id]
        node = nodes[link["origin_id"]]
        if node["id"] in seen:
            raise WorkflowError(f"cycle through node {node['id']}")
        seen = seen | {node["id"]}
        if node["type"] == "Reroute":
            upstream = (node.get("inputs") or [{}])[0].get("link")
            return None if upstream is None else source(upstream, want_type, seen)
        if node["type"] == "PrimitiveNode":
            return ("value", (node.get("widgets_values") or [None])[0])
        if node.get("mode") == MODE_MUTED:
            return None
        if node.get("mode") == MODE_BYPASS:
            out_type = (node.get("outputs") or [])[link["origin_slot"]]["type"]
            for inp in node.get("inputs") or []:
                if inp.get("link") is not None and inp["type"] in (out_type, want_type):
                    return source(inp["link"], want_type, seen)
            return None
        return ("node", str(node["id"]), int(link["origin_slot"]))

    prompt: dict[str, dict] = {}
    for node in workflow.get("nodes", []):
        if node["type"] in FRONTEND_ONLY_TYPES or node.get("mode") in (MODE_MUTED, MODE_BYPASS):
            continue
        info = object_info.get(node["type"])
        if info is None:
            raise WorkflowError(f"node {node['id']}: unknown node type {node['type']!r}")
        inputs: dict[str, Any] = dict(widget_values(node, info))
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            resolved = source(inp["link"], inp.get("type"))
            if resolved is None:
                continue
            if resolved[0] == "value":
                inputs[inp["name"]] = resolved[1]
            else:
                inputs[inp["name"]] = [resolved[1], resolved[2]]
        entry = {"inputs": inputs, "class_type": node["type"]}
        entry["_meta"] = {"title": node.get("title") or info.get("display_name") or node["type"]}
        prompt[str(node["id"])] = entry
    return prompt
