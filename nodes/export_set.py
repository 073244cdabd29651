"""Export Fine-tune Set: appends each prompt's best candidates (or the artist's picks) to a named set (Algorithm 1)."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io, ui

from ..rfmi_core import FinetuneSet, top_k
from ..rfmi_core.finetune.finetune_set import candidate_records
from ..rfmi_core.text.prompts import resolve_inside
from .conditioning import conditioning_tensors, model_identity
from .sockets import CATEGORY, Scores

SETS_FOLDER = "rfmi_sets"


def set_path(name: str) -> str:
    """<output>/rfmi_sets/<name>; a name that would leave that folder is refused."""
    root = os.path.join(folder_paths.get_output_directory(), SETS_FOLDER)
    os.makedirs(root, exist_ok=True)
    return resolve_inside(root, name)


class RFMIExportFinetuneSet(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIExportFinetuneSet",
            display_name="Export Fine-tune Set",
            category=CATEGORY,
            description="Keeps the top-k candidates by MI of one prompt (or the picks, when connected) and appends them, "
                        "with the prompt's conditioning, to a fine-tune set under output/rfmi_sets/<set_name>. Safe to "
                        "run from several ComfyUI instances at once into the same set.",
            inputs=[
                Scores.Input("scores", tooltip="All candidates of Best-of-N by MI (with their latents)."),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.String.Input("prompt", multiline=True, default="", tooltip="The prompt text (the set's key)."),
                io.String.Input("negative_prompt", default=""),
                io.String.Input("set_name", default="rfmi_set"),
                io.Int.Input("k", default=1, min=1, max=4096, tooltip="Candidates kept per prompt (paper: 1)."),
                io.Model.Input("model", optional=True, tooltip="Names the set's model identity (else model_name)."),
                io.String.Input("model_name", default="", optional=True),
                Scores.Input("picks", optional=True, tooltip="The artist's picks: exported instead of the top-k."),
            ],
            outputs=[io.String.Output(display_name="summary"),
                     io.String.Output(display_name="set_name", tooltip="The set written to: connect it to Train LoRA's "
                                                                       "set_name so training runs after the export.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, scores, positive, negative, prompt, negative_prompt, set_name, k, model=None, model_name="",
                picks=None) -> io.NodeOutput:
        if not prompt.strip():
            raise ValueError("prompt is empty: give the prompt text the candidates were made from (it keys the set)")
        chosen = picks if picks is not None else scores.select(top_k(scores.mi, min(k, len(scores))))
        if chosen.latents is None:
            raise ValueError("these scores carry no latents: connect Best-of-N's all_scores (or the picker's picks)")
        identity = model_identity(model) if model is not None else (model_name.strip() or "unnamed-model")
        finetune_set = FinetuneSet.open(set_path(set_name), create=True, top_k=k)
        records = candidate_records(chosen, prompt, negative_prompt, identity, picked=picks is not None)
        conditioning = {prompt.strip(): conditioning_tensors(positive), negative_prompt.strip(): conditioning_tensors(negative)}
        added = finetune_set.append(records, chosen.latents, conditioning)
        info = finetune_set.summary()
        text = (f"{set_name}: +{len(added)} ({len(records) - len(added)} already there); {info['records']} images for "
                f"{info['prompts']} prompts; MI {info['mi_min']:.3f} … {info['mi_max']:.3f} nats")
        return io.NodeOutput(text, set_name, ui=ui.PreviewText(text))
