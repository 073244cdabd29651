"""Research code apart from the product: studies, probes, recipes and experiment notes (``research/notes``).

Run from the repository root as modules, e.g. ``python -m research.toy_oracle_recipes --help``. Nothing here ships to
ComfyUI users (.comfyignore leaves this folder out) and nothing in ``rfmi_core`` or ``nodes`` imports it.
"""
