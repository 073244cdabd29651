"""The node help pages (web/docs/<NodeId>.md) and the template thumbnails (example_workflows/<name>.jpg) in the real
ComfyUI server and frontend, in headless Chromium (the DevTools-protocol driver of test_frontend.py).

- every RFMI node the server lists has a help page, served where the frontend looks for it
  (/extensions/<pack>/docs/<NodeId>.md), naming each of the node's inputs and outputs, with an example and the units;
- the frontend's node library opens RFMI Sampler's help page: the page fetches our file and renders it (headings,
  the input list), in the node library as its help button does and in the node info panel where there is one;
- the template browser lists the pack's workflows and each card's thumbnail image loads.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("websocket", reason="browser test skipped: websocket-client is not installed")

from test_frontend import APP, SETTINGS, frontend_session, screenshot_dir  # noqa: E402

from comfy_server import PACK_NAME, prepare_base  # noqa: E402
from test_workflows import WORKFLOW_DIR, WORKFLOWS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "web" / "docs"
HELP_NODE = "RFMISampler"
SECTIONS = ("## Inputs", "## Outputs", "## Example", "## Units")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    base = prepare_base(tmp_path_factory.mktemp("help_base"), tiny_model=False, settings=SETTINGS)
    with frontend_session(base) as (server, browser):
        yield server, browser, server.get_json("/object_info")


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    return screenshot_dir(tmp_path_factory, "help_screens")


def frontend_version(browser) -> str:
    return browser.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || ''")


def test_every_rfmi_node_has_a_served_help_page_naming_its_inputs_and_outputs(session):
    server, _, object_info = session
    ours = sorted(name for name, info in object_info.items() if name.startswith("RFMI")
                  and info.get("python_module", "").endswith(PACK_NAME))
    assert len(ours) >= 14 and HELP_NODE in ours
    assert sorted(p.stem for p in DOCS.glob("*.md")) == ours  # one page per node, no stray page
    for name in ours:
        status, body, _ = server.request(f"/extensions/{PACK_NAME}/docs/{name}.md")
        assert status == 200, name
        text = body.decode("utf-8")
        assert text == (DOCS / f"{name}.md").read_text(encoding="utf-8")
        info = object_info[name]
        assert text.startswith(f"# {info['display_name']}\n") and f"`{name}`" in text
        assert all(section in text for section in SECTIONS), name
        assert "nats" in text.split("## Units", 1)[1], name
        inputs = [i for kind in ("required", "optional") for i in info["input"].get(kind, {})]
        rows = set(re.findall(r"^- \*\*`([^`]+)`\*\*", text, flags=re.M))  # "- **`name`** (TYPE …): what"
        assert set(inputs) | set(info["output_name"]) <= rows, (name, set(inputs) | set(info["output_name"]) - rows)


PINIA = 'document.querySelector("#vue-app")?.__vue_app__?.config.globalProperties.$pinia'
# the page's fetches from here on are listed (the default buffer of 250 entries is full after loading frontend 1.27)
WATCH_FETCHES = "performance.setResourceTimingBufferSize(100000); performance.clearResourceTimings();"
# the frontend's own stores (Pinia) and the calls its buttons make
OPEN_IN_NODE_LIBRARY = f"""(async () => {{
  const pinia = {PINIA}, settings = {APP}.extensionManager.setting;
  if (!pinia) return "no Vue app with a Pinia store on #vue-app";
  {WATCH_FETCHES}
  // frontends >= 1.49 have a redesigned library (the default in 1.58) without help pages; the classic one has them
  if (settings.get("Comfy.NodeLibrary.NewDesign") !== undefined) await settings.set("Comfy.NodeLibrary.NewDesign", false);
  const tabs = [...pinia._s.values()].find(s => "activeSidebarTabId" in s);
  if (tabs?.activeSidebarTabId !== "node-library")
    await {APP}.extensionManager.command.execute("Workspace.ToggleSidebarTab.node-library");
  for (let i = 0; i < 100 && !pinia._s.get("nodeHelp"); i++) await new Promise(r => setTimeout(r, 100));
  const help = pinia._s.get("nodeHelp"), def = pinia._s.get("nodeDef")?.nodeDefsByName["{HELP_NODE}"];
  if (!help || !def) return "no node help store or no {HELP_NODE} definition";
  help.openHelp(def);  // what the help button of a node in the library calls
  return "";
}})()"""
OPEN_IN_INFO_PANEL = f"""(async () => {{
  const pinia = {PINIA}, app = {APP};
  const panel = pinia?._s.get("rightSidePanel");
  if (!panel?.openPanel) return null;  // no node info panel on this frontend
  pinia._s.get("nodeHelp")?.closeHelp();  // only the panel's page on screen
  {WATCH_FETCHES}
  const node = window.LiteGraph.createNode("{HELP_NODE}");
  node.pos = [200, 200];
  app.graph.add(node);
  app.canvas.selectNode(node);
  panel.openPanel("info");  // the Info tab of the selected node
  return "";
}})()"""
HELP_SHOWN = """(() => {
  const visible = el => !!el && el.getClientRects().length > 0;
  const units = [...document.querySelectorAll("h2")].find(h => h.textContent.trim() === "Units" && visible(h));
  if (!units) return null;
  let page = units.parentElement;
  while (page && !page.querySelector("li code")) page = page.parentElement;
  if (!page) return null;
  return { title: page.querySelector("h1")?.textContent.trim() ?? null,
           headings: [...page.querySelectorAll("h2")].map(h => h.textContent.trim()),
           cells: [...page.querySelectorAll("li code")].map(c => c.textContent),
           nats: page.textContent.includes("nats"),
           fetched: performance.getEntriesByType("resource").map(e => e.name).filter(n => n.includes("/docs/")) };
})()"""


def assert_help_page(browser, object_info: dict, shown: dict) -> None:
    assert shown["title"] == object_info[HELP_NODE]["display_name"]
    assert shown["headings"][:4] == ["Inputs", "Outputs", "Example", "Units"]
    assert {"velocity", "score", "latent_image", "mi"} <= set(shown["cells"]) and shown["nats"]
    assert any(url.endswith(f"/extensions/{PACK_NAME}/docs/{HELP_NODE}.md") for url in shown["fetched"]), shown


def test_the_frontend_shows_the_help_page_of_an_rfmi_node(session, screens):
    """In the node library (every frontend), then in the selected node's info panel where the frontend has one (1.3x
    on; CI's tiers count a skip as a failure, so the panel is checked inside this test rather than skipped apart)."""
    _, browser, object_info = session
    assert browser.evaluate(OPEN_IN_NODE_LIBRARY) == ""
    shown = browser.wait_for(HELP_SHOWN, timeout=30, what=f"the help page of {HELP_NODE} in the node library")
    browser.screenshot(screens / f"help_{HELP_NODE}_node_library.png")
    assert_help_page(browser, object_info, shown)

    if browser.evaluate(OPEN_IN_INFO_PANEL) is None:
        return  # frontend 1.27 (ComfyUI 0.3.64's): no node info panel
    shown = browser.wait_for(HELP_SHOWN, timeout=30, what=f"the help page of {HELP_NODE} in the node info panel")
    browser.screenshot(screens / f"help_{HELP_NODE}_info_panel.png")
    assert_help_page(browser, object_info, shown)


OPEN_TEMPLATES = f"""(async () => {{
  {WATCH_FETCHES}
  await {APP}.extensionManager.command.execute("Comfy.BrowseTemplates");
  return true;
}})()"""
# the pack's category in the template browser's navigation: named after the pack, under "Custom Nodes" (1.27) or
# "Extensions" (1.49 on); /*act*/ is where a caller puts what to do with it
FIND_CATEGORY = f"""(() => {{
  const dialog = document.querySelector(".p-dialog, [role='dialog']");
  if (!dialog) return null;
  const wanted = ["{PACK_NAME}", "Extensions"];
  const items = [...dialog.querySelectorAll("li, button, a, [role='option'], [role='button'], [role='tab'], div, span")];
  for (const name of wanted) {{
    const item = items.find(el => el.children.length <= 2 && el.textContent.trim() === name);
    if (item) {{ item.scrollIntoView({{block: "center"}}); /*act*/ const b = item.getBoundingClientRect();
                 return {{ name, x: b.x + b.width / 2, y: b.y + b.height / 2 }}; }}
  }}
  return null;
}})()"""


def thumbnails_js(names: list[str]) -> str:
    """Each of the pack's template cards on screen: its name and whether its thumbnail <img> has loaded, and which
    thumbnail URLs the page fetched (newer frontends show a fetched blob: URL, older ones the URL itself)."""
    return f"""(() => {{
  const names = {json.dumps(names)}, prefix = "/workflow_templates/{PACK_NAME}/";
  const cards = new Map();  // name -> the widest loaded image of its card (a card may hold placeholders too)
  for (const img of document.querySelectorAll("img")) {{
    let el = img, name = null;
    while (el && !name) {{
      const found = names.filter(n => (el.textContent || "").includes(n));
      if (found.length > 1) break;  // walked past the card
      name = found[0] || null;
      el = el.parentElement;
    }}
    if (!name) continue;
    const width = img.complete ? img.naturalWidth : 0;
    if (!width) img.scrollIntoView({{block: "center"}});
    cards.set(name, Math.max(cards.get(name) || 0, width));
  }}
  const fetched = performance.getEntriesByType("resource").map(e => e.name).filter(u => u.includes(prefix))
    .map(u => decodeURIComponent(u.split(prefix)[1]));
  return {{ cards: [...cards].map(([name, width]) => ({{ name, loaded: width > 0, width }})), fetched }};
}})()"""


def settled_position(browser, expression: str, what: str, timeout: float = 30) -> tuple[float, float]:
    """Where ``expression`` places its element, once two reads 0.3 s apart agree (the dialog opens with a zoom)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        found = browser.evaluate(expression)
        here = (round(found["x"]), round(found["y"])) if found else None
        if here is not None and here == last:
            return found["x"], found["y"]
        last = here
        time.sleep(0.3)
    raise TimeoutError(f"waited {timeout:.0f} s for {what} to stop moving")


def test_the_template_browser_shows_each_workflows_thumbnail(session, screens):
    server, browser, _ = session
    names = sorted(p.stem for p in WORKFLOWS)
    for name in names:  # the files are there and served where the browser asks for them
        status, body, kind = server.request(f"/api/workflow_templates/{PACK_NAME}/{name}.jpg")
        assert status == 200 and body[:3] == b"\xff\xd8\xff" and "jpeg" in kind, name
        assert body == (WORKFLOW_DIR / f"{name}.jpg").read_bytes()
    browser.evaluate(OPEN_TEMPLATES)
    settled_position(browser, FIND_CATEGORY, "the pack's category in the template browser")
    assert browser.evaluate(FIND_CATEGORY.replace("/*act*/", "item.click();"))  # the list's own click handler

    shown = {"cards": [], "fetched": []}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # cards scroll into view and load lazily
        shown = browser.evaluate(thumbnails_js(names))
        if {c["name"] for c in shown["cards"] if c["loaded"]} >= set(names):
            break
        time.sleep(0.3)
    browser.screenshot(screens / "template_browser.png")
    loaded = {c["name"]: c["width"] for c in shown["cards"] if c["loaded"]}
    assert set(loaded) == set(names), (frontend_version(browser), shown)
    assert all(width == 512 for width in loaded.values()), loaded  # our 512 × 512 pictures, not a placeholder
    assert {f"{n}.jpg" for n in names} <= set(shown["fetched"]), shown["fetched"]
