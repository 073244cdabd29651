"""Makes the template thumbnails: example_workflows/<name>.jpg beside each <name>.json (what ComfyUI's template
browser shows for a custom node's template: /api/workflow_templates/<pack>/<name>.jpg).

    COMFYUI_PATH=/path/to/ComfyUI /path/to/ComfyUI/venv/bin/python tests/comfyui/thumbnails.py [NAME ...]

A workflow that runs here (the toy loop: toy model, CPU, no download) gets a picture of a real run through the ComfyUI
server: its Best-of-N candidates ranked by MI (nats under each), and the same seeds before and after the LoRA. The
others (SD3.5, FLUX: weights this machine does not have) get a clean drawing of the graph (matplotlib): every node
where the workflow puts it, titled as in ComfyUI, RFMI nodes highlighted, links coloured by type. The template
browser names each card, so the pictures carry no title.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKFLOW_DIR = REPO / "example_workflows"
RUNS_HERE = {"toy_rfmi_loop"}  # workflows whose models ship with the pack
SIZE = 512  # px, square: the template cards crop to a square

BACKGROUND, NODE, TITLE, RFMI_TITLE, TEXT = "#1f1f1f", "#353535", "#2b2b2b", "#2d5b8a", "#e8e8e8"
LINK_COLOURS = {"MODEL": "#b39ddb", "CLIP": "#ffd500", "VAE": "#ff6e6e", "CONDITIONING": "#ffa931",
                "LATENT": "#ff9cf9", "IMAGE": "#64b5f6", "MASK": "#81c784", "FLOAT": "#aaee88", "INT": "#29b6f6",
                "STRING": "#9ccc65", "RFMI_SCORES": "#4dd0e1"}


def display_names(object_info: dict) -> dict[str, str]:
    return {name: info.get("display_name") or name for name, info in object_info.items()}


# --- a drawing of the graph ------------------------------------------------------------------------------------------
def draw_graph(workflow: dict, names: dict[str, str], path: Path) -> Path:
    """The workflow's nodes and links, scaled into a SIZE × SIZE picture, as a JPEG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, PathPatch
    from matplotlib.path import Path as MplPath

    title_h = 30
    nodes = {n["id"]: n for n in workflow["nodes"] if n["type"] != "Note"}
    x0 = min(n["pos"][0] for n in nodes.values())
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes.values())
    y0 = min(n["pos"][1] - title_h for n in nodes.values())
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    span = max(x1 - x0, (y1 - y0) * 1.0) * 1.06
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2

    fig = plt.figure(figsize=(SIZE / 100, SIZE / 100), dpi=100, facecolor=BACKGROUND)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_facecolor(BACKGROUND)
    ax.set_xlim(cx - span / 2, cx + span / 2)
    ax.set_ylim(cy + span / 2, cy - span / 2)  # y down, as on the canvas
    ax.set_aspect("equal")
    ax.axis("off")
    font = max(5.5, min(9.0, 3400 / span))
    char = 0.6 * font * (100 / 72) * span / SIZE  # one character's width in canvas units

    for link in workflow["links"]:
        _, origin, out_slot, target, in_slot, kind = link[:6]
        if origin not in nodes or target not in nodes:
            continue
        a, b = nodes[origin], nodes[target]
        start = (a["pos"][0] + a["size"][0], a["pos"][1] + 14 + 20 * out_slot)
        end = (b["pos"][0], b["pos"][1] + 14 + 20 * in_slot)
        bend = max(40.0, abs(end[0] - start[0]) / 2)
        curve = MplPath([start, (start[0] + bend, start[1]), (end[0] - bend, end[1]), end],
                        [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4])
        ax.add_patch(PathPatch(curve, facecolor="none", edgecolor=LINK_COLOURS.get(str(kind), "#9e9e9e"),
                               linewidth=1.6, alpha=0.9))
    for node in nodes.values():
        (x, y), (w, h) = node["pos"], node["size"]
        ours = node["type"].startswith("RFMI")
        ax.add_patch(FancyBboxPatch((x, y - title_h), w, h + title_h, boxstyle="round,pad=0,rounding_size=8",
                                    facecolor=NODE, edgecolor="#5aa0e6" if ours else "#4a4a4a", linewidth=1.4))
        ax.add_patch(FancyBboxPatch((x, y - title_h), w, title_h, boxstyle="round,pad=0,rounding_size=8",
                                    facecolor=RFMI_TITLE if ours else TITLE, edgecolor="none"))
        label = node.get("title") or names.get(node["type"], node["type"])
        limit = max(4, int((w - 16) / char))
        label = label if len(label) <= limit else label[: limit - 1] + "…"
        ax.text(x + 8, y - title_h / 2, label, color=TEXT, fontsize=font, va="center", ha="left",
                fontweight="bold" if ours else "normal", clip_on=True)
    return _save_jpeg(fig, path)


def _save_jpeg(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor=fig.get_facecolor())
    plt.close(fig)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").resize((SIZE, SIZE)).save(path, "JPEG", quality=88, optimize=True)
    return path


# --- a picture of a real run -----------------------------------------------------------------------------------------
def _pixels(server, ref: dict):
    import numpy as np
    from PIL import Image

    query = urllib.parse.urlencode({k: ref[k] for k in ("filename", "subfolder", "type")})
    status, body, _ = server.request(f"/view?{query}")
    if status != 200:
        raise RuntimeError(f"/view answered {status} for {ref}")
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def run_picture(server, workflow: dict, object_info: dict, path: Path, caption: str) -> Path:
    """Runs the workflow on the server as saved and draws its candidates (ranked by MI) and base vs LoRA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from workflow_convert import to_api_prompt

    entry = server.run_prompt(to_api_prompt(workflow, object_info), timeout=900)
    if entry["status"]["status_str"] != "success":
        raise RuntimeError(f"the workflow failed: {entry['status']['messages'][-3:]}\n{server.log_tail()}")
    by_type = {n["type"]: str(n["id"]) for n in workflow["nodes"]}
    gallery = sorted(entry["outputs"][by_type["RFMIRankAndPick"]]["rfmi_gallery"], key=lambda g: -g["mi"])
    previews = {n.get("title"): entry["outputs"][str(n["id"])]["images"] for n in workflow["nodes"]
                if n["type"] == "PreviewImage"}
    rows = [("ranked by MI (nats)", [(_pixels(server, g["image"]), f"{g['mi']:.1f}") for g in gallery]),
            ("base", [(_pixels(server, ref), "") for ref in previews["Base"]]),
            ("after RFMI FT (LoRA)", [(_pixels(server, ref), "") for ref in previews["LoRA"]])]
    per_row, cell = 4, 0.19  # figure fractions: 4 columns; 8 candidates on 2 lines, then base and LoRA
    left = (1 - per_row * cell) / 2
    fig = plt.figure(figsize=(SIZE / 100, SIZE / 100), dpi=100, facecolor=BACKGROUND)
    # text on the right: the template browser lays its badge over the top-left corner
    fig.text(1 - left, 0.975, caption, color=TEXT, fontsize=9, ha="right", va="center")
    top = 0.935
    for label, images in rows:
        fig.text(1 - left, top - 0.005, label, color=TEXT, fontsize=8, ha="right", va="top")
        top -= 0.035
        for start in range(0, len(images), per_row):
            for c, (pixels, mi) in enumerate(images[start:start + per_row]):
                ax = fig.add_axes((left + c * cell + 0.004, top - cell + 0.004, cell - 0.008, cell - 0.008))
                ax.imshow(pixels, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if mi:
                    ax.text(0.05, 0.07, mi, transform=ax.transAxes, color="white", fontsize=7,
                            bbox=dict(facecolor="black", alpha=0.65, pad=1.2, edgecolor="none"))
            top -= cell
    return _save_jpeg(fig, path)


def main(names: list[str]) -> None:
    sys.path.insert(0, str(HERE))
    import conftest  # noqa: F401  (ComfyUI first on sys.path, as in the tests)
    from comfy_server import ComfyServer, prepare_base

    wanted = names or sorted(p.stem for p in WORKFLOW_DIR.glob("*.json"))
    with tempfile.TemporaryDirectory() as tmp, ComfyServer(prepare_base(Path(tmp) / "base", tiny_model=False)) as server:
        object_info = server.get_json("/object_info")
        for name in wanted:
            workflow = json.loads((WORKFLOW_DIR / f"{name}.json").read_text(encoding="utf-8"))
            path = WORKFLOW_DIR / f"{name}.jpg"
            if name in RUNS_HERE:
                run_picture(server, workflow, object_info, path, "a real run on CPU")
            else:
                draw_graph(workflow, display_names(object_info), path)
            print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1:])
