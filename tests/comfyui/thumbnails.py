"""Makes the template thumbnails: example_workflows/<name>.jpg beside each <name>.json (what ComfyUI's template
browser shows for a custom node's template: /api/workflow_templates/<pack>/<name>.jpg).

    COMFYUI_PATH=/path/to/ComfyUI /path/to/ComfyUI/venv/bin/python tests/comfyui/thumbnails.py [NAME ...]

Each picture is the workflow's graph, legible at the size of a template card: the columns its author laid out,
folded into bands (odd bands right to left, so a chain runs on), every node titled on at most two lines with a line of
its settings (model file, N and score, steps and cfg), RFMI nodes in blue, links coloured by type. A workflow that
runs here (the toy loop: toy model, CPU, no download) runs through the ComfyUI server, and its output goes under its
graph: the candidates in the order of their score (the score under each), and the same seeds before and after the
LoRA. The template browser names each card, so the pictures carry no title. ``test_thumbnails.py`` checks them.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
import textwrap
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKFLOW_DIR = REPO / "example_workflows"
RUNS_HERE = {"toy_rfmi_loop"}  # workflows whose models ship with the pack
SIZE = 512  # px, square: the template cards crop to a square

BACKGROUND, NODE, TITLE, RFMI_TITLE, TEXT, DETAIL = "#1f1f1f", "#353535", "#262626", "#2d5b8a", "#f0f0f0", "#bdbdbd"
LINK_COLOURS = {"MODEL": "#b39ddb", "CLIP": "#ffd500", "VAE": "#ff6e6e", "CONDITIONING": "#ffa931",
                "LATENT": "#ff9cf9", "IMAGE": "#64b5f6", "MASK": "#81c784", "FLOAT": "#aaee88", "INT": "#29b6f6",
                "STRING": "#9ccc65", "RFMI_SCORES": "#4dd0e1"}


def display_names(object_info: dict) -> dict[str, str]:
    return {name: info.get("display_name") or name for name, info in object_info.items()}


# --- a drawing of the graph ------------------------------------------------------------------------------------------
PER_BAND = 3  # columns per band; a longer graph folds into bands that read left to right, then right to left
MARGIN, GAP, BAND_GAP = 14.0, 16.0, 22.0  # px at SIZE
FONT_PX = (14.0, 13.0, 12.0, 11.0, 10.0, 9.0)  # the largest that fits is used


def _stem(name: object) -> str:
    return Path(str(name)).stem


def _quoted(text: object, limit: int = 38) -> str:
    text = " ".join(str(text).split())
    return "" if not text else "“" + (text if len(text) <= limit else text[: limit - 1] + "…") + "”"


def _prompt_count(text: object) -> str:
    lines = [s for s in str(text).splitlines() if s.strip() and not s.lstrip().startswith("#")]
    return f"{len(lines)} prompts"


# what each node's picture says under its title, from its widget values (the templates' own widget order)
DETAILS = {
    "CheckpointLoaderSimple": lambda w: _stem(w[0]),
    "UNETLoader": lambda w: _stem(w[0]),
    "VAELoader": lambda w: _stem(w[0]),
    "TripleCLIPLoader": lambda w: " · ".join(_stem(v) for v in w[:3]),
    "DualCLIPLoader": lambda w: " · ".join(_stem(v) for v in w[:2]),
    "CLIPTextEncode": lambda w: _quoted(w[0]),
    "PrimitiveStringMultiline": lambda w: _quoted(w[0]),
    "EmptySD3LatentImage": lambda w: f"{w[0]}×{w[1]}, batch {w[2]}",
    "FluxGuidance": lambda w: f"guidance {w[0]:g}",
    "LoadImage": lambda w: str(w[0]),
    "SaveImage": lambda w: str(w[0]),
    "KSampler": lambda w: f"seed {w[0]}, {w[2]} steps, cfg {w[3]:g}",
    "RFMIPromptList": lambda w: _prompt_count(w[1]),
    "RFMIBestOfN": lambda w: f"N = {w[6]}, keep {w[7]}, score {w[10]}",
    "RFMISampler": lambda w: f"{w[2]} steps, cfg {w[3]:g}, score {w[8]}",
    "RFMIScoreLatent": lambda w: f"score {w[7]}, n_t {w[2]}",
    "RFMIExportFinetuneSet": lambda w: f"rfmi_sets/{w[2]}, top {w[3]}",
    "RFMITrainLoRA": lambda w: f"{w[2]} steps, rank {w[4]}, lr {w[3]:g}",
    "RFMIRankAndPick": lambda w: f"keep {w[0]}: click to overrule",
    "RFMIToyEmptyLatent": lambda w: f"batch {w[0]}",
    "RFMIHeatmap": lambda w: "where the prompt acted",
}


# shorter names for the stock nodes whose display name is a class name
TITLES = {"EmptySD3LatentImage": "Empty Latent (SD3)", "TripleCLIPLoader": "Triple CLIP Loader",
          "DualCLIPLoader": "Dual CLIP Loader", "PrimitiveStringMultiline": "String"}


def node_text(node: dict, names: dict[str, str]) -> tuple[str, str]:
    """(title, detail) of a node's picture: its title less any parenthesis, and a line of its settings."""
    title = node.get("title") or TITLES.get(node["type"]) or names.get(node["type"], node["type"])
    short = re.sub(r"\s*\([^)]*\)", "", title).strip() or title
    try:
        detail = DETAILS[node["type"]](node.get("widgets_values") or []) if node["type"] in DETAILS else ""
    except (IndexError, TypeError, ValueError):
        detail = ""
    return short, detail


def graph_columns(workflow: dict) -> list[list[dict]]:
    """The workflow's nodes (less notes) in the columns its author laid them out in (x positions within 120 px of
    each other share one), each column top to bottom."""
    nodes = sorted((n for n in workflow["nodes"] if n["type"] not in ("Note", "MarkdownNote")),
                   key=lambda n: n["pos"][0])
    columns: list[list[dict]] = []
    for node in nodes:
        if columns and node["pos"][0] - columns[-1][0]["pos"][0] < 120:
            columns[-1].append(node)
        else:
            columns.append([node])
    return [sorted(c, key=lambda n: n["pos"][1]) for c in columns]


def _wrap(text: str, width_px: float, char_px: float, lines: int) -> list[str]:
    if not text:
        return []
    out = textwrap.wrap(text, max(4, int(width_px / char_px)), break_long_words=True)
    return out if len(out) <= lines else out[: lines - 1] + [out[lines - 1][:-1] + "…"]


def _measure(columns: list[list[dict]], names: dict[str, str], per_band: int, font: float, details: bool,
             width: float) -> dict:
    """Each node's box (height, wrapped title and detail) and each band's natural height at one font size."""
    bands = [columns[i:i + per_band] for i in range(0, len(columns), per_band)]
    col_w = (width - 2 * MARGIN - (per_band - 1) * GAP) / per_band
    line, char, pad = font * 1.25, font * 0.56, font * 0.45
    boxes = {}
    for column in columns:
        for node in column:
            title, detail = node_text(node, names)
            t_lines = _wrap(title, col_w - 2 * pad, char * 1.05, 2)
            d_lines = _wrap(detail, col_w - 2 * pad, char * 0.92, 2) if details else []
            h = 2 * pad + line * len(t_lines) + 0.9 * line * len(d_lines) + (pad * 0.6 if d_lines else 0)
            boxes[node["id"]] = dict(h=h, title=t_lines, detail=d_lines)
    natural = [max(sum(boxes[n["id"]]["h"] for n in c) + GAP * 0.6 * (len(c) - 1) for c in band) for band in bands]
    return dict(bands=bands, per_band=per_band, col_w=col_w, boxes=boxes, natural=natural, font=font, line=line,
                pad=pad, height=sum(natural) + BAND_GAP * (len(bands) - 1))


def layout_graph(workflow: dict, names: dict[str, str], width: float, height: float) -> dict:
    """Where each node goes in a width × height px area (y down): the columns folded into bands of PER_BAND or one
    more (odd bands right to left, so a chain runs on without crossing back), every title on at most two lines at
    the largest font that fits (the settings lines dropped only when even the smallest does not), spare height
    spread through the columns (a column shorter than its band spans it)."""
    columns = graph_columns(workflow)
    tries = [(details, font, per) for details in (True, False) for font in FONT_PX
             for per in (PER_BAND, PER_BAND + 1) if per <= max(PER_BAND, len(columns))]
    m = next((m for m in (_measure(columns, names, min(per, len(columns)), font, details, width)
                          for details, font, per in tries) if m["height"] <= height - 2 * MARGIN), None)
    m = m or _measure(columns, names, min(PER_BAND + 1, len(columns)), FONT_PX[-1], False, width)
    bands, boxes, natural, line = m["bands"], m["boxes"], m["natural"], m["line"]
    rows = [max(len(c) for c in band) for band in bands]
    spare = max(0.0, height - 2 * MARGIN - m["height"])
    extra = min(spare, 2 * line * sum(rows))
    top = MARGIN + (spare - extra) / 2
    for b, band in enumerate(bands):
        band_h = natural[b] + extra * rows[b] / sum(rows)
        for c, column in enumerate(band):
            slot = c if b % 2 == 0 else m["per_band"] - 1 - c
            used = sum(boxes[n["id"]]["h"] for n in column)
            gap = (band_h - used) / (len(column) - 1) if len(column) > 1 else 0.0
            y = top if len(column) > 1 else top + (band_h - used) / 2
            for node in column:
                box = boxes[node["id"]]
                box.update(x=MARGIN + slot * (m["col_w"] + GAP), y=y, w=m["col_w"], rtl=b % 2 == 1)
                y += box["h"] + gap
        top += band_h + BAND_GAP
    return dict(boxes=boxes, font=m["font"], line=line, pad=m["pad"])


def draw_graph_into(ax, workflow: dict, names: dict[str, str], width: float, height: float) -> None:
    """The workflow as boxes and links in an axes spanning width × height px (y down); RFMI nodes in blue."""
    from matplotlib.patches import FancyBboxPatch, PathPatch
    from matplotlib.path import Path as MplPath

    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    drawn = layout_graph(workflow, names, width, height)
    boxes, font, line, pad = drawn["boxes"], drawn["font"], drawn["line"], drawn["pad"]
    point = 72 / 100  # px → pt at the figure's 100 dpi
    for link in workflow["links"]:
        _, origin, out_slot, target, in_slot, kind = link[:6]
        if origin not in boxes or target not in boxes:
            continue
        a, b = boxes[origin], boxes[target]
        out_right, in_left = not a["rtl"], not b["rtl"]
        start = (a["x"] + (a["w"] if out_right else 0), a["y"] + min(a["h"] - 4, line * 0.5 + 5 * out_slot + 4))
        end = (b["x"] + (0 if in_left else b["w"]), b["y"] + min(b["h"] - 4, line * 0.5 + 5 * in_slot + 4))
        bend = max(24.0, abs(end[0] - start[0]) / 2, abs(end[1] - start[1]) / 3)
        out_bend = bend if out_right == in_left else min(bend, MARGIN + 10)  # a U-turn stays in the frame
        curve = MplPath([start, (start[0] + (out_bend if out_right else -out_bend), start[1]),
                         (end[0] - (out_bend if in_left else -out_bend), end[1]), end],
                        [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4])
        ax.add_patch(PathPatch(curve, facecolor="none", edgecolor=LINK_COLOURS.get(str(kind), "#9e9e9e"),
                               linewidth=1.5, alpha=0.85, zorder=1))
    for node_id, box in boxes.items():
        node = next(n for n in workflow["nodes"] if n["id"] == node_id)
        ours = node["type"].startswith("RFMI") and not node["type"].startswith("RFMIToy")  # the method's nodes
        title_h = pad + line * len(box["title"]) + pad * 0.4
        ax.add_patch(FancyBboxPatch((box["x"], box["y"]), box["w"], box["h"], boxstyle="round,pad=0,rounding_size=5",
                                    facecolor=NODE, edgecolor="#5aa0e6" if ours else "#555555", linewidth=1.3,
                                    zorder=2))
        ax.add_patch(FancyBboxPatch((box["x"], box["y"]), box["w"], title_h, boxstyle="round,pad=0,rounding_size=5",
                                    facecolor=RFMI_TITLE if ours else TITLE, edgecolor="none", zorder=3))
        for i, text in enumerate(box["title"]):
            ax.text(box["x"] + pad, box["y"] + pad + line * (i + 0.5), text, color=TEXT, fontsize=font * point,
                    va="center", ha="left", fontweight="bold", zorder=4)
        for i, text in enumerate(box["detail"]):
            ax.text(box["x"] + pad, box["y"] + title_h + pad * 0.3 + 0.9 * line * (i + 0.5), text, color=DETAIL,
                    fontsize=font * 0.92 * point, va="center", ha="left", zorder=4)


def draw_graph(workflow: dict, names: dict[str, str], path: Path) -> Path:
    """The workflow's graph filling a SIZE × SIZE picture, as a JPEG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(SIZE / 100, SIZE / 100), dpi=100, facecolor=BACKGROUND)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_facecolor(BACKGROUND)
    draw_graph_into(ax, workflow, names, SIZE, SIZE)
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


OUTPUT_H = 176  # px of a run's picture given to its output, under the graph


def run_picture(server, workflow: dict, object_info: dict, path: Path) -> Path:
    """Runs the workflow on the server as saved; draws its graph above what it made: the candidates in the order
    of their score (the score under each) and the same seeds before and after the LoRA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from workflow_convert import to_api_prompt

    entry = server.run_prompt(to_api_prompt(workflow, object_info), timeout=900)
    if entry["status"]["status_str"] != "success":
        raise RuntimeError(f"the workflow failed: {entry['status']['messages'][-3:]}\n{server.log_tail()}")
    by_type = {n["type"]: str(n["id"]) for n in workflow["nodes"]}
    shown = entry["outputs"][by_type["RFMIRankAndPick"]]
    gallery = sorted(shown["rfmi_gallery"], key=lambda g: -g["mi"])
    score = (shown.get("rfmi_score") or ["MI"])[0]
    previews = {n.get("title"): entry["outputs"][str(n["id"])]["images"] for n in workflow["nodes"]
                if n["type"] == "PreviewImage"}
    fig = plt.figure(figsize=(SIZE / 100, SIZE / 100), dpi=100, facecolor=BACKGROUND)
    graph = fig.add_axes((0, OUTPUT_H / SIZE, 1, 1 - OUTPUT_H / SIZE))
    draw_graph_into(graph, workflow, display_names(object_info), SIZE, SIZE - OUTPUT_H)
    point, label_px, cell = 72 / 100, 13, (SIZE - 2 * MARGIN) / 8

    def tile(x: float, y: float, pixels, badge: str = "") -> None:  # x, y: px from the top left
        ax = fig.add_axes((x / SIZE, 1 - (y + cell) / SIZE, (cell - 4) / SIZE, (cell - 4) / SIZE))
        ax.imshow(pixels, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        if badge:
            ax.text(0.04, 0.06, badge, transform=ax.transAxes, color="white", fontsize=9 * point,
                    bbox=dict(facecolor="black", alpha=0.7, pad=1.0, edgecolor="none"))

    def label(x: float, y: float, text: str) -> None:
        fig.text(x / SIZE, 1 - y / SIZE, text, color=TEXT, fontsize=label_px * point, va="top", ha="left")

    top = SIZE - OUTPUT_H + 4
    label(MARGIN, top, f"a real run on CPU: the {len(gallery)} candidates ranked by {score} (nats)")
    for i, g in enumerate(gallery[:8]):
        tile(MARGIN + i * cell, top + label_px + 6, _pixels(server, g["image"]), f"{g['mi']:.1f}")
    top += label_px + 10 + cell
    label(MARGIN, top, "the same seeds: base  |  after RFMI FT (LoRA)")
    for i, ref in enumerate(previews["Base"][:4] + previews["LoRA"][:4]):
        tile(MARGIN + i * cell + (6 if i >= 4 else 0), top + label_px + 6, _pixels(server, ref))
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
                run_picture(server, workflow, object_info, path)
            else:
                draw_graph(workflow, display_names(object_info), path)
            print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1:])
