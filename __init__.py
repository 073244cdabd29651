"""ComfyUI-RFMI: ComfyUI's entry point for the pack (V3 node API).

ComfyUI imports this file from custom_nodes/<pack>/ and awaits ``comfy_entrypoint``. The import of the nodes (and so of
ComfyUI's own modules) waits until then, so this file stays importable anywhere (pytest imports it as a package).
The headless estimator lives in ``rfmi_core`` (no ComfyUI import); ``nodes/`` is thin glue; ``web/`` the frontend.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes.extension import RFMIExtension

    return RFMIExtension()


__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
