"""The Rank and Pick gallery in the real ComfyUI frontend, in headless Chromium (the DevTools-protocol driver of
test_frontend.py, pointed at the Debian Chromium).

The bundled toy_rfmi_loop.json is loaded with the frontend's own loader and queued with its own queue button logic
(``app.queuePrompt``): the gallery shows the N candidates in MI order with their MI values; a real mouse click on a
thumbnail writes the pick into the node's picks widget; queueing again re-runs Rank and Pick (Best-of-N comes from
the cache) and exactly that candidate reaches the output — by number and by pixels. Screenshots are kept as
artefacts in RFMI_SCREENSHOT_DIR (default: the test's tmp dir; the path is printed).
"""

from __future__ import annotations

import io
import json
import time
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("websocket", reason="browser test skipped: websocket-client is not installed")

from test_frontend import (APP, FIT_VIEW, SETTINGS, Chromium, frontend_session, load_workflow_js,  # noqa: E402
                           screenshot_dir, use_renderer)

from comfy_server import ComfyServer, prepare_base  # noqa: E402
from rfmi_core.finetune.picks import parse_picks  # noqa: E402
from test_workflows import WORKFLOW_DIR, _node, load  # noqa: E402

WORKFLOW = "toy_rfmi_loop"
FAST_STEPS = {"RFMIBestOfN": 8, "KSampler": 8, "RFMITrainLoRA": 20}  # the user's loop, fewer steps on a shared CPU


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    base = prepare_base(tmp_path_factory.mktemp("gallery_base"), tiny_model=False, settings=SETTINGS)
    with frontend_session(base, ready=("!!window.LiteGraph?.registered_node_types?.RFMIRankAndPick",)) as session:
        yield session


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    return screenshot_dir(tmp_path_factory, "gallery_screens")


def gallery_js(node_id: int) -> str:
    return f"""(() => {{
  const node = {APP}.graph.getNodeById({node_id});
  const el = node?.widgets?.find(w => w.name === "rfmi_gallery")?.element;
  const cards = el ? [...el.querySelectorAll(".rfmi-card")] : [];
  return {{
    inDocument: !!el && document.body.contains(el),
    cards: cards.map(c => {{ const b = c.getBoundingClientRect(); const img = c.querySelector("img");
      return {{ ...c.dataset, x: b.x + b.width / 2, y: b.y + b.height / 2, w: b.width, h: b.height,
                loaded: !!img && img.complete && img.naturalWidth > 0, src: img?.getAttribute("src") }}; }}),
    status: el?.querySelector(".rfmi-gallery-status")?.textContent ?? null,
    picks: node?.widgets?.find(w => w.name === "picks")?.value ?? null,
    saved: node ? node.serialize().widgets_values : null,
  }};
}})()"""


def settled_gallery(browser, node_id: int, timeout: float = 15) -> dict:
    """The gallery once the frontend has stopped moving it (it places and resizes DOM widgets over the canvas on its
    next frames, later on a loaded machine): two reads 0.3 s apart with the same thumbnail boxes, each over 40 px."""
    deadline, previous = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        gallery = browser.evaluate(gallery_js(node_id))
        boxes = [(c["x"], c["y"], c["w"], c["h"]) for c in gallery["cards"]]
        if boxes and boxes == previous and all(w > 40 and h > 40 for _, _, w, h in boxes):
            return gallery
        previous = boxes
        time.sleep(0.3)
    raise TimeoutError(f"the gallery's thumbnails did not settle within {timeout:.0f} s (last boxes: {previous})")


def focus_js(node_id: int, scale: float = 1.0) -> str:
    """Puts the node's left edge 100 px right of the side bar, its title under the top menu, at ``scale``."""
    return f"""(() => {{
  const app = {APP}; const node = app.graph.getNodeById({node_id});
  app.canvas.ds.scale = {scale};
  app.canvas.ds.offset = [100 / {scale} - node.pos[0], 120 / {scale} - node.pos[1]];
  app.graph.setDirtyCanvas(true, true);
  return true;
}})()"""


def queue_from_the_page(server: ComfyServer, browser: Chromium) -> dict:
    """Queues the page's graph as the queue button does and returns the finished history entry."""
    before = set(server.get_json("/history"))
    browser.evaluate(f"(async () => {{ await {APP}.queuePrompt(0, 1); return true; }})()")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        history = server.get_json("/history")
        new = [entry for key, entry in history.items() if key not in before]
        if new and new[0].get("status", {}).get("completed") is not None and (
                new[0]["status"]["completed"] or new[0]["status"].get("status_str") == "error"):
            assert new[0]["status"]["status_str"] == "success", (new[0]["status"]["messages"][-3:], server.log_tail())
            return new[0]
        time.sleep(0.3)
    raise TimeoutError(f"the queued workflow did not finish:\n{server.log_tail()}")


def pixels(server: ComfyServer, ref: dict):
    import numpy as np
    from PIL import Image

    query = urllib.parse.urlencode({k: ref[k] for k in ("filename", "subfolder", "type")})
    status, body, _ = server.request(f"/view?{query}")
    assert status == 200, ref
    return np.array(Image.open(io.BytesIO(body)).convert("RGB"))


def click(browser: Chromium, x: float, y: float) -> None:
    """A real left click at (x, y) in CSS pixels, through the browser's input pipeline."""
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})


@pytest.mark.parametrize("vue_nodes", [False, True], ids=["litegraph_nodes", "vue_nodes"])
def test_gallery_ranks_by_mi_and_a_click_sends_that_candidate_to_the_output(page, screens, vue_nodes):
    server, browser = page
    suffix = use_renderer(browser, vue_nodes, "the gallery there")
    workflow = load(WORKFLOW_DIR / f"{WORKFLOW}.json")
    pick_id = _node(workflow, "RFMIRankAndPick")["id"]
    bon = _node(workflow, "RFMIBestOfN")
    n, k = bon["widgets_values"][6], _node(workflow, "RFMIRankAndPick")["widgets_values"][0]

    loaded = browser.evaluate(load_workflow_js(WORKFLOW), timeout=60)
    assert loaded["missing"] == [] and not any("Missing" in d for d in loaded["dialogs"])
    browser.evaluate(f"""(() => {{ for (const node of {APP}.graph.nodes) {{
        const steps = {json.dumps(FAST_STEPS)}[node.type];
        const widget = node.widgets?.find(w => w.name === "steps");
        if (steps && widget) widget.value = steps; }} return true; }})()""")

    # run 1: nothing picked — the gallery shows all N by MI, the node outputs the top k
    first = queue_from_the_page(server, browser)
    out = first["outputs"][str(pick_id)]
    mi = {g["candidate"]: g["mi"] for g in out["rfmi_gallery"]}
    ranked = sorted(mi, key=lambda c: (-mi[c], c))
    assert out["rfmi_chosen"] == ranked[:k]
    browser.evaluate(focus_js(pick_id))
    shown = browser.wait_for(
        f"(() => {{ const g = {gallery_js(pick_id)}; return g.cards.length === {n} && g.cards.every(c => c.loaded) "
        f"&& g.cards[0].candidate === '{ranked[0]}' ? g : null; }})()", timeout=30, what="the gallery of run 1")
    shown = settled_gallery(browser, pick_id)
    assert shown["inDocument"]
    assert [int(c["candidate"]) for c in shown["cards"]] == ranked
    assert [c["mi"] for c in shown["cards"]] == [f"{mi[c]:.3f}" for c in ranked]
    assert [c["chosen"] for c in shown["cards"]] == ["true"] * k + ["false"] * (n - k)
    assert all(c["picked"] == "false" for c in shown["cards"]) and shown["picks"] == ""
    assert all(c["w"] > 40 and c["h"] > 40 for c in shown["cards"])
    first_shot = browser.screenshot(screens / f"rank_and_pick_gallery{suffix}.png")

    # a real click on the lowest-MI thumbnail: a pick the ranking would never make
    target = shown["cards"][-1]
    hit = browser.evaluate(f"document.elementFromPoint({target['x']}, {target['y']})?.closest('.rfmi-card')?.dataset.candidate")
    assert hit == target["candidate"], "the thumbnail is not the element under the pointer"
    click(browser, target["x"], target["y"])
    after = browser.wait_for(f"(() => {{ const g = {gallery_js(pick_id)}; return g.picks === '{target['candidate']}' ? g : null; }})()",
                             timeout=10, what="the pick in the picks widget")
    picked_card = next(c for c in after["cards"] if c["candidate"] == target["candidate"])
    assert picked_card["picked"] == "true" and picked_card["chosen"] == "true"
    assert [c["candidate"] for c in after["cards"] if c["chosen"] == "true"] == [target["candidate"]]
    assert target["candidate"] in after["saved"]  # the workflow saves the pick (widgets_values: k, picks)

    # run 2: only Rank and Pick and what follows re-run; exactly the clicked candidate is the output
    second = queue_from_the_page(server, browser)
    cached = {n for kind, data in second["status"]["messages"] if kind == "execution_cached" for n in data["nodes"]}
    assert str(bon["id"]) in cached and str(pick_id) not in cached
    out2 = second["outputs"][str(pick_id)]
    assert out2["rfmi_chosen"] == [int(target["candidate"])]
    assert {g["candidate"]: g["mi"] for g in out2["rfmi_gallery"]} == mi  # the same candidates, from the cache
    preview_id = next(nd["id"] for nd in workflow["nodes"] if nd["type"] == "PreviewImage" and nd.get("title") == "Picked")
    picked_images = second["outputs"][str(preview_id)]["images"]
    assert len(picked_images) == 1
    thumb = next(g["image"] for g in out2["rfmi_gallery"] if g["candidate"] == int(target["candidate"]))
    output = pixels(server, picked_images[0])
    assert (output == pixels(server, thumb)).all()  # that very image at the output, and no other candidate's
    others = [g["image"] for g in out2["rfmi_gallery"] if g["candidate"] != int(target["candidate"])]
    assert all((output != pixels(server, ref)).any() for ref in others)
    browser.evaluate(f"(() => {{ {FIT_VIEW}; return true; }})()")
    browser.evaluate(focus_js(pick_id, 0.9))
    time.sleep(0.5)
    second_shot = browser.screenshot(screens / f"rank_and_pick_after_pick{suffix}.png")

    # heatmap on hover: the hovered thumbnail shows its heatmap image
    card = browser.wait_for(f"(() => {{ const g = {gallery_js(pick_id)}; return g.cards.length === {n} ? g.cards[0] : null; }})()",
                            timeout=10)
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": card["x"], "y": card["y"]})
    hovered = browser.wait_for(f"(() => {{ const c = {gallery_js(pick_id)}.cards[0]; return c.src.includes('heat') ? c : null; }})()",
                               timeout=10, what="the heatmap on hover")
    assert "rfmi_gallery_heat" in hovered["src"]
    # keys 1-9 over the gallery toggle the thumbnails in MI order: "1" picks the top one after the clicked one
    browser.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "1", "text": "1", "code": "Digit1",
                                            "windowsVirtualKeyCode": 49})
    browser.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "1", "code": "Digit1", "windowsVirtualKeyCode": 49})
    keyed = browser.wait_for(f"(() => {{ const g = {gallery_js(pick_id)}; return g.picks.includes(',') ? g : null; }})()",
                             timeout=10, what="key 1 adding the top candidate")
    assert keyed["picks"] == f"{target['candidate']},{ranked[0]}"
    still = browser.wait_for(f"(() => {{ const c = {gallery_js(pick_id)}.cards[0]; return c.loaded ? c : null; }})()", timeout=10)
    assert "rfmi_gallery_heat" in still["src"]  # still the heatmap under the pointer after the re-render
    hover_shot = browser.screenshot(screens / f"rank_and_pick_heatmap_hover{suffix}.png")
    browser.evaluate(f"""(() => {{ const node = {APP}.graph.getNodeById({pick_id});
        node.widgets.find(w => w.name === "rfmi_gallery").element.querySelector(".rfmi-reset").click(); return true; }})()""")
    reset = browser.evaluate(gallery_js(pick_id))
    assert reset["picks"] == "" and [c["chosen"] for c in reset["cards"]] == ["true"] * k + ["false"] * (n - k)

    # a picks text the node would refuse (a candidate past N): the gallery shows the node's own refusal, word for word
    bad = f"{ranked[0]},{n + 1}"
    browser.evaluate(f"""(() => {{ const w = {APP}.graph.getNodeById({pick_id}).widgets.find(w => w.name === "picks");
        w.value = {json.dumps(bad)}; w.callback?.(w.value); return true; }})()""")
    refusal = browser.wait_for(f"""(() => {{ const el = {APP}.graph.getNodeById({pick_id}).widgets
        .find(w => w.name === "rfmi_gallery").element.querySelector(".rfmi-gallery-error");
        const box = el?.getBoundingClientRect(); return box && box.width > 0 && box.height > 0 ? el.textContent : null; }})()""",
                               timeout=10, what="the gallery's refusal of the picks text")
    with pytest.raises(ValueError) as python_refusal:
        parse_picks(bad, n)
    assert refusal == f"⚠ {python_refusal.value}"
    assert all(c["picked"] == "false" for c in browser.evaluate(gallery_js(pick_id))["cards"])
    browser.screenshot(screens / f"rank_and_pick_refused_picks{suffix}.png")
    assert not [e for e in browser.console_errors() if "rfmi" in e.lower()]
    print(f"\ngallery screenshots: {first_shot} {second_shot} {hover_shot}")


PHRASES = ["a red square", "to the left of", "a blue disk"]  # the toy phrases of the workflow's prompt


def upstream_of(workflow: dict, node_id: int) -> set[int]:
    """The node and every node that feeds it, through the workflow's links."""
    feeds = {}
    for _, source, _, target, *_ in workflow["links"]:
        feeds.setdefault(target, set()).add(source)
    seen, todo = set(), [node_id]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(feeds.get(current, ()))
    return seen


def bars_js(node_id: int) -> str:
    return f"""(() => {{
  const el = {APP}.graph.getNodeById({node_id})?.widgets?.find(w => w.name === "rfmi_gallery")?.element;
  return [...(el?.querySelectorAll(".rfmi-card") ?? [])].map(c => {{ const img = c.querySelector("img");
    return {{ candidate: c.dataset.candidate, src: img?.getAttribute("src"),
              loaded: !!img && img.complete && img.naturalWidth > 0,
              bars: [...c.querySelectorAll(".rfmi-phrase-bar")].map(b => {{ const r = b.getBoundingClientRect();
                return {{ ...b.dataset, x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width, h: r.height,
                          fill: b.querySelector(".rfmi-phrase-fill")?.getBoundingClientRect().width ?? 0 }}; }}) }}; }});
}})()"""


@pytest.mark.parametrize("vue_nodes", [False, True], ids=["litegraph_nodes", "vue_nodes"])
def test_gallery_shows_a_bar_per_phrase_marks_the_weakest_and_hovering_shows_its_heatmap(page, screens, vue_nodes):
    """Best-of-N ranking by phrase-min (the toy CLIP and the prompt connected in the page): each thumbnail gets one
    bar per phrase in phrase order with its MI, the weakest marked; hovering a bar shows that phrase's heatmap."""
    server, browser = page
    suffix = use_renderer(browser, vue_nodes, "the phrase bars there")
    workflow = load(WORKFLOW_DIR / f"{WORKFLOW}.json")
    pick_id = _node(workflow, "RFMIRankAndPick")["id"]
    preview_id = next(nd["id"] for nd in workflow["nodes"] if nd["type"] == "PreviewImage" and nd.get("title") == "Picked")
    keep = upstream_of(workflow, pick_id) | {preview_id}
    ids = dict(bon=_node(workflow, "RFMIBestOfN")["id"], loader=_node(workflow, "RFMIToyModelLoader")["id"],
               prompt=_node(workflow, "PrimitiveStringMultiline")["id"])
    n = _node(workflow, "RFMIBestOfN")["widgets_values"][6]

    loaded = browser.evaluate(load_workflow_js(WORKFLOW), timeout=60)
    assert loaded["missing"] == [] and not any("Missing" in d for d in loaded["dialogs"])
    wired = browser.evaluate(f"""(() => {{
  const app = {APP}; const graph = app.graph; const ids = {json.dumps(ids)};
  const keep = {json.dumps([str(i) for i in sorted(keep)])};
  for (const node of [...graph.nodes]) if (!keep.includes(String(node.id)) && node.type !== "Note")
    graph.remove(node);  // the loop after the gallery (export, training, comparison) is not needed here
  const bon = graph.getNodeById(ids.bon), loader = graph.getNodeById(ids.loader), prompt = graph.getNodeById(ids.prompt);
  bon.widgets.find(w => w.name === "score").value = "phrase-min";
  bon.widgets.find(w => w.name === "steps").value = {FAST_STEPS["RFMIBestOfN"]};
  loader.connect(loader.outputs.findIndex(o => o.type === "CLIP"), bon, bon.inputs.findIndex(i => i.name === "clip"));
  prompt.connect(0, bon, bon.inputs.findIndex(i => i.name === "text"));
  graph.setDirtyCanvas(true, true);
  return ["clip", "text"].map(name => bon.inputs.find(i => i.name === name)?.link != null);
}})()""")
    assert wired == [True, True], "the toy CLIP and the prompt were not connected to Best-of-N's clip and text"

    out = queue_from_the_page(server, browser)["outputs"][str(pick_id)]
    assert out["rfmi_phrases"] == PHRASES
    values = {g["candidate"]: g["phrase_mi"] for g in out["rfmi_gallery"]}
    assert all(len(v) == 3 for v in values.values()) and len(values) == n
    assert all(g["mi"] == pytest.approx(min(g["phrase_mi"])) for g in out["rfmi_gallery"])  # ranked by phrase-min
    browser.evaluate(focus_js(pick_id))
    browser.wait_for(f"(() => {{ const g = {bars_js(pick_id)}; return g.length === {n} && g.every(c => c.loaded "
                     f"&& c.bars.length === 3) ? g : null; }})()", timeout=30, what="the gallery's phrase bars")
    settled_gallery(browser, pick_id)
    cards = browser.evaluate(bars_js(pick_id))
    for card in cards:
        mi = values[int(card["candidate"])]
        weakest = min(range(3), key=lambda p: (mi[p], p))
        assert [b["phrase"] for b in card["bars"]] == PHRASES and [b["index"] for b in card["bars"]] == ["0", "1", "2"]
        assert [b["mi"] for b in card["bars"]] == [f"{v:.3f}" for v in mi]
        assert [b["weakest"] for b in card["bars"]] == ["true" if p == weakest else "false" for p in range(3)]
        assert all(b["w"] > 20 and b["h"] > 4 for b in card["bars"])
    widest = max(abs(v) for mi in values.values() for v in mi)  # the bars share one scale: the largest |MI| fills one
    assert max(b["fill"] / b["w"] for c in cards for b in c["bars"]) == pytest.approx(1.0, abs=0.02)
    first = cards[0]
    longest = max(range(3), key=lambda p: abs(values[int(first["candidate"])][p]))
    assert first["bars"][longest]["fill"] / first["bars"][longest]["w"] == pytest.approx(
        abs(values[int(first["candidate"])][longest]) / widest, abs=0.02)

    for p in (2, 0):  # hover one bar, then another: that phrase's heatmap over the thumbnail
        bar = first["bars"][p]
        hit = browser.evaluate(f"document.elementFromPoint({bar['x']}, {bar['y']})?.closest('.rfmi-phrase-bar')?.dataset.index")
        assert hit == str(p), "the phrase bar is not the element under the pointer"
        browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": bar["x"], "y": bar["y"]})
        shown = browser.wait_for(f"(() => {{ const c = {bars_js(pick_id)}[0]; return c.loaded && c.src.includes("
                                 f"'rfmi_gallery_phrase{p + 1}_') ? c : null; }})()", timeout=10,
                                 what=f"phrase {p + 1}'s heatmap on hover")
        assert shown["candidate"] == first["candidate"]
    shot = browser.screenshot(screens / f"rank_and_pick_phrase_bars{suffix}.png")
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 5, "y": 5})
    browser.wait_for(f"(() => {{ const c = {bars_js(pick_id)}[0]; return !c.src.includes('heat') && "
                     f"!c.src.includes('phrase') ? c : null; }})()", timeout=10, what="the image again after the hover")
    assert not [e for e in browser.console_errors() if "rfmi" in e.lower()]
    print(f"\nphrase bars screenshot: {shot}")


def rivals_js(node_id: int) -> str:
    return f"""(() => {{
  const el = {APP}.graph.getNodeById({node_id})?.widgets?.find(w => w.name === "rfmi_gallery")?.element;
  const panel = el?.querySelector(".rfmi-rivals");
  const box = (sel) => {{ const b = panel?.querySelector(sel)?.getBoundingClientRect();
    return b ? {{ x: b.x + b.width / 2, y: b.y + b.height / 2, w: b.width, h: b.height }} : null; }};
  return {{
    status: el?.querySelector(".rfmi-gallery-status")?.textContent ?? null,
    list: panel?.querySelector(".rfmi-rivals-list")?.textContent ?? null,
    edit: box(".rfmi-rivals-edit"), text: box(".rfmi-rivals-text"), apply: box(".rfmi-rivals-apply"),
    se: [...el.querySelectorAll(".rfmi-card")].map(c => c.dataset.se),
    message: panel?.querySelector(".rfmi-rivals-message")?.textContent ?? null,
    typed: panel?.querySelector(".rfmi-rivals-text")?.value ?? null,
  }};
}})()"""


@pytest.mark.parametrize("vue_nodes", [False, True], ids=["litegraph_nodes", "vue_nodes"])
def test_gallery_names_the_contrast_shows_its_rivals_and_an_edited_rival_rescores(page, screens, vue_nodes):
    """Best-of-N ranking by contrast (the toy CLIP and the prompt connected): the header names the score, each
    thumbnail carries its standard error, the rivals line lists the editor's rivals; editing them in the gallery
    (real clicks and typing) writes Best-of-N's rivals widget, and queueing again scores against the typed rival."""
    server, browser = page
    suffix = use_renderer(browser, vue_nodes, "the rivals line there")
    workflow = load(WORKFLOW_DIR / f"{WORKFLOW}.json")
    pick_id = _node(workflow, "RFMIRankAndPick")["id"]
    preview_id = next(nd["id"] for nd in workflow["nodes"] if nd["type"] == "PreviewImage" and nd.get("title") == "Picked")
    keep = upstream_of(workflow, pick_id) | {preview_id}
    ids = dict(bon=_node(workflow, "RFMIBestOfN")["id"], loader=_node(workflow, "RFMIToyModelLoader")["id"],
               prompt=_node(workflow, "PrimitiveStringMultiline")["id"])
    loaded = browser.evaluate(load_workflow_js(WORKFLOW), timeout=60)
    assert loaded["missing"] == [] and not any("Missing" in d for d in loaded["dialogs"])
    wired = browser.evaluate(f"""(() => {{
  const app = {APP}; const graph = app.graph; const ids = {json.dumps(ids)};
  const keep = {json.dumps([str(i) for i in sorted(keep)])};
  for (const node of [...graph.nodes]) if (!keep.includes(String(node.id)) && node.type !== "Note") graph.remove(node);
  const bon = graph.getNodeById(ids.bon), loader = graph.getNodeById(ids.loader), prompt = graph.getNodeById(ids.prompt);
  bon.widgets.find(w => w.name === "score").value = "contrast";
  bon.widgets.find(w => w.name === "steps").value = {FAST_STEPS["RFMIBestOfN"]};
  bon.widgets.find(w => w.name === "n_t").value = 4;
  bon.widgets.find(w => w.name === "rivals").value = "";
  loader.connect(loader.outputs.findIndex(o => o.type === "CLIP"), bon, bon.inputs.findIndex(i => i.name === "clip"));
  prompt.connect(0, bon, bon.inputs.findIndex(i => i.name === "text"));
  graph.setDirtyCanvas(true, true);
  return ["clip", "text"].map(name => bon.inputs.find(i => i.name === name)?.link != null);
}})()""")
    assert wired == [True, True]
    from rfmi_core.text.counterfactuals import counterfactuals

    suggested = [str(r) for r in counterfactuals(PROMPT_TEXT)]
    out = queue_from_the_page(server, browser)["outputs"][str(pick_id)]
    assert out["rfmi_score"] == ["contrast"] and out["rfmi_rivals"] == suggested
    assert all(len(g["margins"]) == len(suggested) and g["se"] > 0 for g in out["rfmi_gallery"])
    assert all(g["mi"] == pytest.approx(min(g["margins"]), abs=1e-3) for g in out["rfmi_gallery"])
    browser.evaluate(focus_js(pick_id))
    settled_gallery(browser, pick_id)
    shown = browser.wait_for(f"(() => {{ const r = {rivals_js(pick_id)}; return r.list && r.edit ? r : null; }})()",
                             timeout=15, what="the rivals line")
    assert "by contrast vs rivals (nats)" in shown["status"] and all(s for s in shown["se"])
    assert shown["list"] == "rivals: " + " · ".join(suggested)

    click(browser, shown["edit"]["x"], shown["edit"]["y"])
    editor = browser.wait_for(f"(() => {{ const r = {rivals_js(pick_id)}; return r.text && r.apply ? r : null; }})()",
                              timeout=10, what="the rivals editor")
    click(browser, editor["text"]["x"], editor["text"]["y"])
    browser.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "a", "code": "KeyA", "modifiers": 2,
                                            "commands": ["selectAll"]})  # Ctrl+A
    browser.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "a", "code": "KeyA", "modifiers": 2})
    browser.send("Input.insertText", {"text": TYPED_RIVAL})
    typed = browser.evaluate(rivals_js(pick_id))
    assert typed["typed"] == TYPED_RIVAL and typed["message"].startswith("writes "), typed
    click(browser, editor["apply"]["x"], editor["apply"]["y"])
    written = browser.wait_for(f"(() => {{ const w = {APP}.graph.getNodeById({ids['bon']}).widgets.find(w => w.name === "
                               f"'rivals'); return w.value === {json.dumps(TYPED_RIVAL)} ? w.value : null; }})()",
                               timeout=10, what="Best-of-N's rivals widget written by the gallery")
    assert written == TYPED_RIVAL
    again = queue_from_the_page(server, browser)["outputs"][str(pick_id)]
    assert again["rfmi_rivals"] == [TYPED_RIVAL] and all(len(g["margins"]) == 1 for g in again["rfmi_gallery"])
    browser.wait_for(f"(() => {{ const r = {rivals_js(pick_id)}; return r.list === 'rivals: {TYPED_RIVAL}' ? r : null; "
                     "})()", timeout=15, what="the typed rival in the gallery")
    shot = browser.screenshot(screens / f"rank_and_pick_rivals{suffix}.png")
    assert not [e for e in browser.console_errors() if "rfmi" in e.lower()]
    print(f"\nrivals screenshot: {shot}")


PROMPT_TEXT = "a red square to the left of a blue disk"
TYPED_RIVAL = "a blue square to the right of a red disk"
