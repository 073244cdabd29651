"""ComfyUI glue for RFMI: thin V3 nodes over ``rfmi_core``. Loaded by ComfyUI as part of the pack, never installed."""
