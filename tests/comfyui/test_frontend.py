"""The example workflows and the MI widget in the real ComfyUI frontend, in headless Chromium (Chrome DevTools Protocol).

Skipped unless a Chromium is installed (Debian: ``apt-get install chromium``; or set RFMI_CHROMIUM to its path). It
starts the ComfyUI server (subprocess, 127.0.0.1), opens its UI with network access outside 127.0.0.1 blocked, and:

- loads each example workflow from the server's template route with the frontend's own ``app.loadGraphData``: no
  node type is missing (no "Some Nodes Are Missing" dialog), the RFMI nodes have their widgets with the saved values,
  the frontend saves the same widgets_values back, and its ``graphToPrompt`` gives the same API prompt as
  tests/comfyui/workflow_convert.py;
- queues the tiny-model versions of the RFMI Sampler and Best-of-N workflows for the page's own client: the server's
  ``executed`` messages reach the nodes, and the MI widget (a DOM widget) shows one row per image, replaced, not
  appended, on the next run; also with the Vue node renderer switched on.

Screenshots go to RFMI_SCREENSHOT_DIR (default: the test's tmp dir). RFMI_FRONTEND_ROOT serves another frontend build
(``--front-end-root``, e.g. the static/ folder of a newer comfyui-frontend-package wheel) on the same server.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

websocket = pytest.importorskip("websocket", reason="frontend test skipped: websocket-client is not installed")

from comfy_server import PACK_NAME, ComfyServer, end_process, prepare_base  # noqa: E402
from test_workflows import WORKFLOW_DIR, WORKFLOWS, _node, load, tiny_sampler_workflow  # noqa: E402
from workflow_convert import is_model_file, link_table, to_api_prompt  # noqa: E402


def find_chromium() -> str | None:
    explicit = os.environ.get("RFMI_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip("frontend test skipped: no Chromium (apt-get install chromium, or set RFMI_CHROMIUM)",
                allow_module_level=True)

SETTINGS = {
    "Comfy.TutorialCompleted": True,  # no template browser on the first visit
    "Comfy.Workflow.ShowMissingModelsWarning": False,  # a test machine has no models; missing *nodes* stay on
    "Comfy.Workflow.ShowMissingNodesWarning": True,
    "Comfy.Workflow.Persist": False,
}
VIEW = (1600, 1000)
# Custom DOM widgets inside Vue nodes: frontend 1.27 (ComfyUI 0.3.64's) renders only its own widget types there; 1.53
# (ComfyUI 0.38's) mounts any DOM widget (its WidgetDOM component). Versions in between were not checked.
VUE_DOM_WIDGETS_SINCE = (1, 53)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Chromium:
    """Headless Chromium driven over the DevTools protocol; one page."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
             "--disable-extensions", "--mute-audio", "--remote-debugging-port=0",
             "--remote-allow-origins=http://127.0.0.1",
             # nothing but 127.0.0.1 resolves: the frontend's own calls to the internet fail fast
             "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
             "--proxy-server=direct://", "--proxy-bypass-list=*"]

    def __init__(self, executable: str, profile: Path, size=VIEW):
        self.profile = profile
        self.log = open(profile.parent / "chromium.log", "wb")
        self.process = subprocess.Popen(
            [executable, *self.FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.events: list[dict] = []
        self._id = 0
        try:
            port = self._devtools_port(timeout=30)
            targets = json.loads(_NO_PROXY.open(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next(t for t in targets if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
            for method in ("Page.enable", "Runtime.enable"):
                self.send(method)
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self._id += 1
        call_id = self._id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(method)

    def evaluate(self, expression: str, timeout: float = 60):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True,
                                                "timeout": int(timeout * 1000)}, timeout=timeout + 5)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, what: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"waited {timeout:.0f} s for {what or expression}")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        out = []
        for event in self.events:
            if event["method"] == "Runtime.exceptionThrown":
                details = event["params"]["exceptionDetails"]
                out.append("exception: " + (details.get("exception", {}).get("description") or details.get("text", "")))
            elif event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] in ("error", "assert"):
                args = event["params"].get("args", [])
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in args))
        return out

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            end_process(self.process, timeout=10)
            self.log.close()


# --- page-side helpers (plain JS strings; `app` is the frontend's app object) ---
APP = "window.comfyAPI.app.app"
READY = """(() => {
  const app = window.comfyAPI?.app?.app;
  const types = window.LiteGraph?.registered_node_types;
  return !!(app?.graph && app.canvas && types?.RFMISampler &&
            types.RFMISampler.prototype.onExecuted?.rfmi === "show the MI values");
})()"""
PROBE = f"""(() => {{
  const app = {APP};
  if (!window.__rfmiProbe) {{
    window.__rfmiProbe = true;
    app.registerExtension({{ name: "RFMI.TestProbe",
      afterConfigureGraph(missing) {{ window.__rfmiMissing = (missing || []).map(m => typeof m === "string" ? m : m.type); }} }});
  }}
  return true;
}})()"""


FIT_VIEW = """function fitView(app) {
  // every node on screen, clear of the side bar and the top menu
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const n of app.graph.nodes) {
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const el = app.canvas.canvas, left = 90, top = 110, pad = 30;
  const scale = Math.min((el.clientWidth - left - pad) / (x1 - x0), (el.clientHeight - top - pad) / (y1 - y0), 1);
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [left / scale - x0, top / scale - y0];
  app.graph.setDirtyCanvas(true, true);
}"""


def load_workflow_js(name: str) -> str:
    return f"""(async () => {{
  {FIT_VIEW}
  const app = {APP};
  const response = await fetch("/api/workflow_templates/{PACK_NAME}/{name}.json");
  const workflow = await response.json();
  // on a loaded machine the frontend's own start-up graph (its default workflow) can land after ours and replace
  // it: load until the page holds this workflow's nodes twice in a row, 0.5 s apart
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const ids = nodes => JSON.stringify(nodes.map(n => Number(n.id)).sort((a, b) => a - b));
  const expected = ids(workflow.nodes);
  for (let attempt = 0; attempt < 6; attempt++) {{
    window.__rfmiMissing = null;
    await app.loadGraphData(workflow, true, true, "{name}");
    await sleep(500);
    if (ids(app.graph.nodes) === expected) {{
      await sleep(500);
      if (ids(app.graph.nodes) === expected) break;
    }}
  }}
  fitView(app);
  await sleep(300);
  const dialogs = [...document.querySelectorAll(".p-dialog")].map(d => d.innerText);
  const nodes = app.graph.nodes.map(n => ({{ id: n.id, type: n.type, has_errors: !!n.has_errors,
    widgets: (n.widgets || []).map(w => ({{ name: w.name, type: w.type, value: w.value ?? null }})) }}));
  return {{ missing: window.__rfmiMissing, dialogs, nodes, serialized: app.graph.serialize(),
           prompt: (await app.graphToPrompt()).output, clientId: window.comfyAPI.api.api.clientId }};
}})()"""


def js_json(value) -> str:
    """A JS string literal holding ``value`` as JSON.stringify writes it (no spaces), to compare on the page."""
    return json.dumps(json.dumps(value, separators=(",", ":")))


def mi_widget_js(node_id: int) -> str:
    return f"""(() => {{
  const node = {APP}.graph.getNodeById({node_id});
  const widgets = (node?.widgets || []).filter(w => w.name === "rfmi_mi");
  const el = widgets[0]?.element;
  const rows = el ? [...el.querySelectorAll("tr")].slice(1).map(tr => [...tr.children].map(td => td.textContent)) : [];
  const box = el?.getBoundingClientRect();
  return {{ count: widgets.length, rows, inDocument: !!el && document.body.contains(el),
           visible: !!box && box.width > 0 && box.height > 0,
           scrolls: !!el && el.scrollHeight > el.clientHeight + 1,
           best: el ? el.querySelectorAll('tr[data-best="true"]').length : 0,
           serialized: node ? node.serialize().widgets_values : null }};
}})()"""


@contextmanager
def frontend_session(base: Path, ready: tuple[str, ...] = ()):
    """The real ComfyUI server on ``base`` (frontend: RFMI_FRONTEND_ROOT or the installed package) and a headless
    Chromium on its page, once the frontend and the RFMI extension are up and each JS expression in ``ready`` is true."""
    frontend = os.environ.get("RFMI_FRONTEND_ROOT")
    server = ComfyServer(base, extra_args=["--front-end-root", frontend] if frontend else [])
    browser = None
    try:
        server.start()
        browser = Chromium(CHROMIUM, base.parent / (base.name + "_chromium_profile"))
        browser.send("Page.navigate", {"url": server.url + "/"})
        browser.wait_for(READY, timeout=90, what="the ComfyUI frontend with the RFMI extension")
        for expression in ready:
            browser.wait_for(expression, timeout=30)
        browser.evaluate(PROBE)
        yield server, browser
    finally:
        if browser is not None:
            browser.close()
        server.stop()


def screenshot_dir(tmp_path_factory, name: str) -> Path:
    """RFMI_SCREENSHOT_DIR when set (artefacts to keep), else a fresh tmp dir."""
    explicit = os.environ.get("RFMI_SCREENSHOT_DIR")
    return Path(explicit) if explicit else tmp_path_factory.mktemp(name)


def use_renderer(browser, vue_nodes: bool, what: str) -> str:
    """Switches the page to the Vue node renderer or the classic canvas; skips the test (saying how to check ``what``)
    on a frontend whose Vue nodes show no custom DOM widgets. Returns the screenshot suffix."""
    version = browser.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || ''")
    if vue_nodes and tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < VUE_DOM_WIDGETS_SINCE:
        pytest.skip(f"frontend {version} renders no custom DOM widgets in its (experimental) Vue nodes; "
                    f"set RFMI_FRONTEND_ROOT to a frontend >= 1.53 to check {what}")
    browser.evaluate(f"{APP}.extensionManager.setting.set('Comfy.VueNodes.Enabled', {str(vue_nodes).lower()})")
    return "_vue" if vue_nodes else ""


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    base = prepare_base(tmp_path_factory.mktemp("comfy_ui_base"), settings=SETTINGS)
    with frontend_session(base) as (server, browser):
        yield server, browser, server.get_json("/object_info")


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    return screenshot_dir(tmp_path_factory, "screens")


def _linked_inputs(workflow: dict) -> set:
    links = link_table(workflow)
    return {(lid, link["origin_id"], link["origin_slot"], link["target_id"],
             next(i["name"] for i in next(n for n in workflow["nodes"] if n["id"] == link["target_id"])["inputs"]
                  if i.get("link") == lid)) for lid, link in links.items()}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_in_the_frontend(path, ui, screens):
    server, browser, object_info = ui
    workflow = load(path)
    page = browser.evaluate(load_workflow_js(path.stem), timeout=60)
    browser.screenshot(screens / f"{path.stem}.png")

    assert page["missing"] == [], f"the frontend found no node type for {page['missing']}"
    assert not any("Missing" in text for text in page["dialogs"]), page["dialogs"]
    # newer frontends flag loaders whose model file is not installed (none is, here); nothing else may be flagged
    flagged = [n for n in page["nodes"] if n["has_errors"]
               and not any(is_model_file(w["value"]) for w in n["widgets"])]
    assert not flagged
    by_id = {int(n["id"]): n for n in page["nodes"]}
    assert set(by_id) == {n["id"] for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        shown = by_id[node["id"]]
        assert shown["type"] == node["type"]
        if node["type"].startswith("RFMI"):
            # the node's widgets in the schema's order, holding the saved values
            expected = [w for w in node["widgets_values"]]
            assert [w["value"] for w in shown["widgets"]][: len(expected)] == expected, shown["widgets"]
    saved = {int(n["id"]): n for n in page["serialized"]["nodes"]}
    for node in workflow["nodes"]:
        assert saved[node["id"]].get("widgets_values", []) == node["widgets_values"], node["type"]
    assert _linked_inputs(page["serialized"]) == _linked_inputs(workflow)
    ours = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in to_api_prompt(workflow, object_info).items()}
    theirs = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in page["prompt"].items()}
    assert ours == theirs
    errors = [e for e in browser.console_errors() if "rfmi" in e.lower()]
    assert errors == []


def _queue_for_page(server, browser, prompt: dict, client_id: str) -> dict:
    """Queues a prompt as the page's own client, so the frontend receives its executed messages."""
    entry = server.run_prompt(prompt, timeout=120, client_id=client_id)
    assert entry["status"]["status_str"] == "success", (entry["status"], server.log_tail())
    return entry


def _tiny_best_of_n_workflow(seed: int, n: int = 4, k: int = 2) -> dict:
    from test_workflows import _remove_links, _replace

    workflow = json.loads((WORKFLOW_DIR / "best_of_n_sd35.json").read_text(encoding="utf-8"))
    ckpt = _node(workflow, "CheckpointLoaderSimple")
    _remove_links(workflow, set(ckpt["outputs"][1]["links"] or []) | set(ckpt["outputs"][2]["links"] or []))
    _replace(workflow, ckpt, "UNETLoader", ["tiny_sd3.safetensors", "default"])
    ckpt["outputs"] = ckpt["outputs"][:1]
    clip = _node(workflow, "TripleCLIPLoader")
    _remove_links(workflow, set(clip["outputs"][0]["links"] or []))
    workflow["nodes"].remove(clip)
    for i, encoder in enumerate(nd for nd in list(workflow["nodes"]) if nd["type"] == "CLIPTextEncode"):
        _replace(workflow, encoder, "RFMITestConditioning", [200 + i, "fixed"])
    _replace(workflow, _node(workflow, "VAEDecode"), "EmptyImage", [128, 128, k, 0])
    _node(workflow, "EmptySD3LatentImage")["widgets_values"] = [128, 128, 1]
    values = _node(workflow, "RFMIBestOfN")["widgets_values"]
    values[0], values[1], values[2], values[6], values[7], values[8] = seed, "fixed", 2, n, k, 2
    return workflow


@pytest.mark.parametrize("vue_nodes", [False, True], ids=["litegraph_nodes", "vue_nodes"])
def test_mi_widget_shows_the_servers_values_and_is_replaced_on_rerun(ui, screens, vue_nodes):
    server, browser, object_info = ui
    suffix = use_renderer(browser, vue_nodes, "them")

    # RFMI Sampler: the original workflow on the page, its tiny twin queued for the page's client id
    page = browser.evaluate(load_workflow_js("rfmi_sampler_sd35"))
    sampler_id = _node(load(WORKFLOW_DIR / "rfmi_sampler_sd35.json"), "RFMISampler")["id"]
    for run, seed in enumerate((11, 12)):
        workflow = tiny_sampler_workflow(seed=seed)
        entry = _queue_for_page(server, browser, to_api_prompt(workflow, object_info), page["clientId"])
        mi = entry["outputs"][str(sampler_id)]["rfmi_mi"]
        shown = browser.wait_for(
            f"(() => {{ const s = {mi_widget_js(sampler_id)}; "
            f"return JSON.stringify(s.rows.map(r => r[1])) === {js_json([f'{v:.3f}' for v in mi])} ? s : null; }})()",
            timeout=30, what=f"the MI widget of run {run}")
        assert shown["count"] == 1 and shown["inDocument"]
        assert shown["rows"] == [[str(i + 1), f"{v:.3f}"] for i, v in enumerate(mi)]
        # not saved into the workflow: the saved widgets_values are those of the file
        assert shown["serialized"] == _node(load(WORKFLOW_DIR / "rfmi_sampler_sd35.json"), "RFMISampler")["widgets_values"]
    browser.evaluate(f"(() => {{ {FIT_VIEW}; fitView({APP}); }})()")
    # the frontend lays DOM widgets out on its next frames (slower on a loaded machine): wait for it, then assert
    browser.wait_for(f"(() => {{ const s = {mi_widget_js(sampler_id)}; return s.visible && !s.scrolls; }})()",
                     timeout=15, what="the MI widget laid out visible, with no scroll bar, after fitting the view")
    browser.screenshot(screens / f"rfmi_sampler_sd35_executed{suffix}.png")

    # Best-of-N: ranked, the kept ones starred, each candidate with its seed
    page = browser.evaluate(load_workflow_js("best_of_n_sd35"))
    bon_id = _node(load(WORKFLOW_DIR / "best_of_n_sd35.json"), "RFMIBestOfN")["id"]
    n, k, seed = 4, 2, 40
    for run in range(2):
        workflow = _tiny_best_of_n_workflow(seed + run, n=n, k=k)
        entry = _queue_for_page(server, browser, to_api_prompt(workflow, object_info), page["clientId"])
        out = entry["outputs"][str(bon_id)]
        assert len(out["rfmi_mi"]) == n and len(out["rfmi_best"]) == k
        ranked = sorted(range(n), key=lambda j: -out["rfmi_mi"][j])
        # wait for this run's table, all of its MI column: the previous run's table can share its first row
        expected = [f"{out['rfmi_mi'][j]:.3f}" for j in ranked]
        shown = browser.wait_for(
            f"(() => {{ const s = {mi_widget_js(bon_id)}; "
            f"return JSON.stringify(s.rows.map(r => r[4])) === {js_json(expected)} ? s : null; }})()",
            timeout=30, what=f"the Best-of-N widget of run {run}")
        assert shown["count"] == 1 and shown["best"] == k
        # columns: star, rank, candidate, seed, MI — highest first; the seeds are those of rfmi_best
        assert [row[3] for row in shown["rows"][:k]] == [str(s) for s in out["rfmi_best"]]
        assert [row[4] for row in shown["rows"]] == [f"{out['rfmi_mi'][j]:.3f}" for j in ranked]
        assert [row[2] for row in shown["rows"]] == [str(j + 1) for j in ranked]
    browser.evaluate(f"(() => {{ {FIT_VIEW}; fitView({APP}); }})()")
    time.sleep(0.5)
    browser.screenshot(screens / f"best_of_n_sd35_executed{suffix}.png")
    assert not [e for e in browser.console_errors() if "rfmi" in e.lower()]
