"""ComfyUI-RFMI: ComfyUI's entry point for the pack (V3 node API).

ComfyUI imports this file from custom_nodes/<pack>/ and calls ``comfy_entrypoint``. The headless estimator lives in
``rfmi_core`` (no ComfyUI import); the nodes in ``nodes/`` are thin glue over it; ``web/`` is the frontend extension.
"""

from .nodes.extension import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
