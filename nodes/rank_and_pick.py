"""Rank and Pick: the artist sees all candidates sorted by MI in a gallery and overrules the ranking.

The gallery (web/rfmi_gallery.js) is a DOM widget fed by this node's ui message; clicks write the ``picks`` widget, an
ordinary STRING input, so the workflow JSON saves the picks and the HTTP API can set them. Queueing again re-runs only
this node and what follows it (ComfyUI caches everything upstream); nothing waits or blocks.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import folder_paths
from comfy_api.latest import io

from ..rfmi_core.heatmap import normalise_map, overlay, upsample_map
from ..rfmi_core.picks import chosen_indices
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
        array = np.clip(255.0 * image[..., :3].cpu().numpy(), 0, 255).astype(np.uint8)  # as ComfyUI's SaveImage
        Image.fromarray(array).save(os.path.join(folder, name), compress_level=1)
        refs.append({"filename": name, "subfolder": subfolder, "type": "temp"})
    return refs


def heatmap_overlays(scores, images: torch.Tensor) -> torch.Tensor | None:
    """The MI heatmap over each image (as the MI heatmap node makes it), or None when the scores carry no map."""
    mi_map = None if scores.result is None else scores.result.map
    if mi_map is None or mi_map.ndim != 3:
        return None
    mask = upsample_map(normalise_map(mi_map.cpu()), images.shape[1], images.shape[2])
    return overlay(images[..., :3].cpu().float(), mask, 0.7)


class RFMIRankAndPick(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIRankAndPick",
            display_name="Rank and Pick",
            category=CATEGORY,
            description="Shows all candidates of Best-of-N sorted by MI, with their MI and heatmap; click thumbnails "
                        "(or press 1–9 over the gallery) to pick, then queue again: only this node and what follows "
                        "re-run. Outputs the picks in pick order, or the top k by MI when nothing is picked.",
            inputs=[
                Scores.Input("scores", tooltip="All candidates of Best-of-N by MI (all_scores)."),
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
            is_output_node=True,
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
        gallery = [{"candidate": j + 1, "seed": int(scores.seeds[j]), "mi": float(scores.mi[j]),
                    "image": thumbs[j], "heatmap": heat_refs[j]} for j in range(n)]
        index = torch.tensor(order, dtype=torch.long)
        latent = {"samples": chosen.latents}
        ui = {"rfmi_gallery": gallery, "rfmi_chosen": [j + 1 for j in order], "rfmi_picked": [picked], "rfmi_k": [k]}
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
