"""``python -m rfmi_core.train``: the headless RFMI FT command (``rfmi_core.train.cli``)."""

from .cli import main

main()
