"""V3 schema fields that only newer ComfyUI has, used where the ComfyUI at hand has them: detected from its own classes
(``io.Schema``'s dataclass fields, the inputs' constructor signatures), never from a version number."""

from __future__ import annotations

import dataclasses
import inspect

from comfy_api.latest import io


def schema_has(field: str) -> bool:
    """Whether this ComfyUI's ``io.Schema`` declares ``field``."""
    return field in {f.name for f in dataclasses.fields(io.Schema)}


def schema_fields(**wanted) -> dict:
    """The ``wanted`` Schema fields this ComfyUI declares (e.g. ``search_aliases``); the others are left out."""
    return {name: value for name, value in wanted.items() if schema_has(name)}


def interactive_node() -> dict:
    """Schema fields of a node whose UI the user operates (Rank and Pick's gallery): ``has_intermediate_output`` where
    ComfyUI has it (its UI is kept and resent, and it runs when an output needs it, like ComfyUI's Image Crop and
    Painter); else an output node, so that its UI is shown at all."""
    if schema_has("has_intermediate_output"):
        return {"has_intermediate_output": True}
    return {"is_output_node": True}


def advanced() -> dict:
    """``advanced=True`` for an input where this ComfyUI's inputs take it (shown under the node's advanced settings)."""
    return {"advanced": True} if "advanced" in inspect.signature(io.Int.Input.__init__).parameters else {}
