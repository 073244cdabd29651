"""MI heatmap: where the prompt shaped each image (the per-position t/(1 − t)·‖u_y − u_∅‖² map), as MASK and overlay."""

from __future__ import annotations

from comfy_api.latest import io

from ..rfmi_core.present.heatmap import normalise_map, overlay, upsample_map
from .sockets import CATEGORY, Scores


class RFMIHeatmap(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIHeatmap",
            display_name="MI heatmap",
            category=CATEGORY,
            description="Where the prompt shaped the image: the per-position squared-form MI map of an RFMI Sampler or "
                        "Best-of-N run, upsampled to the images, as a MASK (each image scaled to its own maximum) "
                        "and a colour overlay.",
            inputs=[
                Scores.Input("scores"),
                io.Image.Input("images", tooltip="The decoded images, in the same order as the scores."),
                io.Float.Input("strength", default=0.6, min=0.0, max=1.0, step=0.05),
            ],
            outputs=[io.Mask.Output(display_name="MASK"), io.Image.Output(display_name="overlay")],
        )

    @classmethod
    def execute(cls, scores, images, strength) -> io.NodeOutput:
        if scores.result is None or scores.result.map is None:
            raise ValueError("these scores carry no per-position map: connect the scores of RFMI Sampler or Best-of-N "
                             "(Score by MI estimates MI without a trajectory, so it has no map)")
        mi_map = scores.result.map
        if mi_map.ndim != 3:
            raise ValueError(f"the map must be one 2-D map per image; this model's latents give shape {tuple(mi_map.shape)}")
        if mi_map.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {mi_map.shape[0]} scored candidates: connect the images "
                             "decoded from the same latents (for Best-of-N, all N)")
        mask = upsample_map(normalise_map(mi_map.cpu()), images.shape[1], images.shape[2]).to(images.device)
        return io.NodeOutput(mask, overlay(images[..., :3], mask, strength))
