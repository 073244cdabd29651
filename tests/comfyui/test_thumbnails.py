"""The template thumbnails (example_workflows/<name>.jpg, made by thumbnails.py) show their workflow: every node's
box inside the picture at a legible size, every third of the picture used, and no two pictures alike."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from PIL import Image

import thumbnails
from test_workflows import WORKFLOW_DIR, WORKFLOWS

NAMES = [p.stem for p in WORKFLOWS]
# the pack's display names as its schemas declare them (the stock nodes' come from thumbnails.TITLES or their type)
DISPLAY = dict(re.findall(r'node_id="(RFMI\w+)",\s*display_name="([^"]+)"',
                          "".join(p.read_text(encoding="utf-8") for p in (WORKFLOW_DIR.parent / "nodes").glob("*.py"))))


def pixels(name: str) -> np.ndarray:
    return np.asarray(Image.open(WORKFLOW_DIR / f"{name}.jpg").convert("L"), dtype=np.float64)


def test_each_workflow_has_a_square_jpeg_thumbnail():
    for name in NAMES:
        with Image.open(WORKFLOW_DIR / f"{name}.jpg") as image:
            assert image.format == "JPEG" and image.size == (thumbnails.SIZE, thumbnails.SIZE), name


@pytest.mark.parametrize("name", NAMES)
def test_the_graph_fits_its_picture_with_every_title_legible(name):
    workflow = json.loads((WORKFLOW_DIR / f"{name}.json").read_text(encoding="utf-8"))
    height = thumbnails.SIZE - (thumbnails.OUTPUT_H if name in thumbnails.RUNS_HERE else 0)
    drawn = thumbnails.layout_graph(workflow, DISPLAY, thumbnails.SIZE, height)
    boxes = drawn["boxes"]
    assert len(DISPLAY) >= 14
    assert set(boxes) == {n["id"] for n in workflow["nodes"] if n["type"] not in ("Note", "MarkdownNote")}
    assert drawn["font"] >= 10  # px in a 512 px picture: still readable when the template card shows it at 256
    for box in boxes.values():
        assert 0 <= box["x"] and box["x"] + box["w"] <= thumbnails.SIZE
        assert 0 <= box["y"] and box["y"] + box["h"] <= height
        assert 1 <= len(box["title"]) <= 2
    for a, b in itertools.combinations(boxes.values(), 2):  # no two boxes overlap
        assert (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])


@pytest.mark.parametrize("name", NAMES)
def test_no_third_of_a_thumbnail_is_empty(name):
    image = pixels(name)
    drawn = np.abs(image - np.median(image)) > 12  # anything that is not the background (node bodies: +22)
    thirds = np.array_split(np.arange(thumbnails.SIZE), 3)
    for part in thirds:
        assert drawn[part].mean() > 0.05, (name, "rows", part[0])
        assert drawn[:, part].mean() > 0.05, (name, "columns", part[0])


def test_no_two_thumbnails_look_alike():
    images = {name: pixels(name) for name in NAMES}
    for a, b in itertools.combinations(NAMES, 2):
        assert np.abs(images[a] - images[b]).mean() > 8, (a, b)  # grey levels of 255, averaged over the picture
