"""``python -m rfmi_core.train``: the headless RFMI FT command (``rfmi_core.train.cli``); a mistake in its input is
one line on stderr (``--debug`` for the traceback)."""

from ..util.cli_help import run_cli
from .cli import main

run_cli(main, "python -m rfmi_core.train")
