"""Rank and Pick: the artist sees all candidates sorted by MI in a gallery and overrules the ranking.

The gallery (web/rfmi_gallery.js) is a DOM widget fed by this node's ui message; clicks write the ``picks`` widget, an
ordinary STRING input, so the workflow JSON saves the picks and the HTTP API can set them. Queueing again re-runs only
this node and what follows it (ComfyUI caches everything upstream); nothing waits or blocks.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

import folder_paths
from comfy_api.latest import io

from ..rfmi_core.present.plot import save_png
from ..rfmi_core.present.heatmap import normalise_map, overlay, upsample_map
from ..rfmi_core.present.phrase_table import phrase_masks
from ..rfmi_core.finetune.picks import chosen_indices
from .schema_compat import interactive_node, schema_fields
from .sockets import CATEGORY, Scores

THUMBNAIL = 256  # px, longest side of the gallery's images


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [B, H, W, C] shrunk (area) so the longest side is at most THUMBNAIL; small images stay as they are."""
    h, w = images.shape[1:3]
    if max(h, w) <= THUMBNAIL:
        return images
    size = (max(1, round(h * THUMBNAIL / max(h, w))), max(1, round(w * THUMBNAIL / max(h, w))))
    return F.interpolate(images.movedim(-1, 1), size=size, mode="area").movedim(1, -1)


def save_temp_pngs(images: torch.Tensor, prefix: str) -> list[dict]:
    """Each image as a PNG in ComfyUI's temp folder; the /view references ({filename, subfolder, type})."""
    folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(
        prefix, folder_paths.get_temp_directory(), images.shape[2], images.shape[1])
    refs = []
    for i, image in enumerate(images):
        name = f"{stem}_{counter + i:05}_.png"
        save_png(image, os.path.join(folder, name))
        refs.append({"filename": name, "subfolder": subfolder, "type": "temp"})
    return refs


def heatmap_overlays(scores, images: torch.Tensor) -> torch.Tensor | None:
    """The MI heatmap over each image (as the MI heatmap node makes it), or None when the scores carry no map."""
    mi_map = None if scores.result is None else scores.result.map
    if mi_map is None or mi_map.ndim != 3:
        return None
    mask = upsample_map(normalise_map(mi_map.cpu()), images.shape[1], images.shape[2])
    return overlay(images[..., :3].cpu().float(), mask, 0.7)


def phrase_overlays(scores, images: torch.Tensor) -> list[torch.Tensor]:
    """Per phrase, where it shaped each image (``phrase_masks``: each candidate scaled to its peak over all phrases)
    over the images; none when the scores carry no phrase maps."""
    if scores.phrase_maps is None or scores.phrase_maps.ndim != 4:
        return []
    masks = phrase_masks(scores.phrase_maps.cpu(), images.shape[1], images.shape[2])
    return [overlay(images[..., :3].cpu().float(), mask, 0.7) for mask in masks]


def phrase_entries(scores, images: torch.Tensor) -> list[dict]:
    """Each candidate's phrase MI (nats, in phrase order) and phrase heatmaps (/view references, or None without
    maps) for the gallery's phrase bars; {} per candidate when the scores carry no phrase MI."""
    if scores.phrase_mi is None:
        return [{} for _ in range(len(scores))]
    heat = [save_temp_pngs(o, f"rfmi_gallery_phrase{p + 1}") for p, o in enumerate(phrase_overlays(scores, images))]
    return [{"phrase_mi": [float(v) for v in scores.phrase_mi[j]],
             "phrase_heatmaps": [refs[j] for refs in heat] if heat else [None] * len(scores.phrases)}
            for j in range(len(scores))]


def score_entries(scores, j: int) -> dict:
    """Candidate j's standard error of its score (None when the score has none) and its margin against each rival
    (log p(x|y) − log p(x|y′), nats; [] without rivals), for the gallery."""
    se = None if scores.mi_standard_error is None else float(scores.mi_standard_error[j])
    margins = [] if scores.rival_margins is None else [float(v) for v in scores.rival_margins[j]]
    return {"se": se if se is not None and math.isfinite(se) else None, "margins": margins}


class RFMIRankAndPick(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIRankAndPick",
            display_name="Rank and Pick",
            category=CATEGORY,
            description="Shows all candidates of Best-of-N sorted by their score (named in the header, ± its standard "
                        "error), with their heatmap (and, for scores with phrase MI, a bar per phrase with its heatmap "
                        "on hover, the weakest marked; for a contrast, the rival prompts, editable); click "
                        "thumbnails (or press 1–9 over the gallery) to pick, then queue again: only this node and what "
                        "follows re-run. Outputs the picks in pick order, or the top k by MI when nothing is picked.",
            inputs=[
                Scores.Input("scores", tooltip="All candidates of Best-of-N by MI (all_scores), or RFMI Phrase MI's "
                                               "scores (the same, with each phrase's MI)."),
                io.Image.Input("images", tooltip="The N candidates decoded, in the scores' order (decode the "
                                                 "latent of RFMI Candidates)."),
                io.Int.Input("k", default=1, min=1, max=4096, tooltip="Output when nothing is picked: the top k by MI."),
                io.String.Input("picks", default="",
                                tooltip="Candidate numbers (the c-numbers on the thumbnails: candidate j has seed "
                                        "seed + j − 1), comma-separated, in pick order; the gallery writes this. "
                                        "Empty: the top k by MI."),
            ],
            outputs=[
                io.Latent.Output(display_name="latent"),
                io.Image.Output(display_name="images"),
                Scores.Output(display_name="picks", tooltip="The chosen candidates: connect to Export Fine-tune Set's picks."),
            ],
            **interactive_node(),  # its gallery is operated: intermediate output where ComfyUI has it
            **schema_fields(search_aliases=["pick", "image ranking", "best of n", "gallery"]),
        )

    @classmethod
    def execute(cls, scores, images, k, picks) -> io.NodeOutput:
        n = len(scores)
        if images.shape[0] != n:
            raise ValueError(f"{images.shape[0]} images but {n} candidates: connect all N candidates decoded in the "
                             "scores' order (RFMI Candidates → decode), not Best-of-N's best")
        if scores.latents is None:
            raise ValueError("these scores carry no latents: connect Best-of-N's all_scores")
        order, picked = chosen_indices(picks, scores.mi.cpu(), k)
        chosen = scores.select(order)
        small = thumbnails(images.float())
        thumbs = save_temp_pngs(small, "rfmi_gallery")
        heat = heatmap_overlays(scores, small)
        heat_refs = save_temp_pngs(heat, "rfmi_gallery_heat") if heat is not None else [None] * n
        phrases = phrase_entries(scores, small)
        gallery = [{"candidate": j + 1, "seed": int(scores.seeds[j]), "mi": float(scores.mi[j]),
                    "image": thumbs[j], "heatmap": heat_refs[j], **phrases[j], **score_entries(scores, j)}
                   for j in range(n)]
        index = torch.tensor(order, dtype=torch.long)
        latent = {"samples": chosen.latents}
        ui = {"rfmi_gallery": gallery, "rfmi_chosen": [j + 1 for j in order], "rfmi_picked": [picked], "rfmi_k": [k],
              "rfmi_phrases": list(scores.phrases), "rfmi_score": [str(scores.settings.get("score", "rfmi"))],
              "rfmi_rivals": list(scores.rivals)}
        return io.NodeOutput(latent, images.index_select(0, index.to(images.device)), chosen, ui=ui)


class RFMICandidates(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMICandidates",
            display_name="RFMI Candidates",
            category=CATEGORY,
            description="All candidates of Best-of-N as one LATENT batch, in candidate order (seed, seed + 1, …): "
                        "decode it for Rank and Pick's gallery.",
            inputs=[Scores.Input("scores")],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, scores) -> io.NodeOutput:
        if scores.latents is None:
            raise ValueError("these scores carry no latents: connect Best-of-N's all_scores")
        return io.NodeOutput({"samples": scores.latents})
