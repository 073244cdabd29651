"""Headless commands fail like commands: a mistake in their input is one line on stderr saying what to do, exit
status 2, no traceback; ``--debug`` shows the traceback (rfmi_core.cli_help.run_cli)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rfmi_core.util.cli_help import UsageError, error_line, run_cli

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], env=ENV, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def one_error_line(done: subprocess.CompletedProcess, prog: str) -> str:
    """The single stderr line of a failed command, after checking its exit status and that nothing else was printed."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"{prog}: error: ")
    return lines[0]


def test_train_given_a_folder_that_is_not_a_set_says_what_to_give(tmp_path):
    line = one_error_line(command("rfmi_core.train", str(tmp_path), "--model", "toy", "--out",
                                  str(tmp_path / "lora.safetensors")), "python -m rfmi_core.train")
    assert f"{tmp_path} is not a fine-tune set (no set.json)" in line
    assert "Export Fine-tune Set" in line and "--debug" in line
    assert not (tmp_path / "lora.safetensors").exists()


def test_train_with_a_model_that_cannot_be_imported_names_the_module(tmp_path):
    line = one_error_line(command("rfmi_core.train", str(tmp_path), "--model", "no_such_pkg.models:load", "--out",
                                  str(tmp_path / "lora.safetensors")), "python -m rfmi_core.train")
    assert "--model no_such_pkg.models:load: cannot import no_such_pkg.models" in line


def test_train_with_missing_toy_weights_says_how_to_make_them(tmp_path):
    missing = tmp_path / "toy.safetensors"
    line = one_error_line(command("rfmi_core.train", str(tmp_path), "--model", "toy", "--model-kwargs",
                                  f'{{"weights": "{missing}"}}', "--out", str(tmp_path / "lora.safetensors")),
                          "python -m rfmi_core.train")
    assert str(missing) in line and "research.toy.train_recipe" in line


def test_a_bad_flag_is_one_line_pointing_to_help(tmp_path):
    line = one_error_line(command("rfmi_core.train", str(tmp_path), "--model", "toy", "--out", "x.safetensors",
                                  "--no-such-flag"), "python -m rfmi_core.train")
    assert line == ("python -m rfmi_core.train: error: unrecognized arguments: --no-such-flag; "
                    "see python -m rfmi_core.train --help")


def test_debug_shows_the_traceback(tmp_path):
    done = command("rfmi_core.train", str(tmp_path), "--model", "toy", "--out", "x.safetensors", "--debug")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "rfmi_core.util.cli_help.UsageError" in done.stderr and "is not a fine-tune set" in done.stderr


def test_phrase_report_on_a_folder_without_prompt_lists(tmp_path):
    line = one_error_line(command("rfmi_core.phrase_report", str(tmp_path)), "python -m rfmi_core.phrase_report")
    assert f"no prompt lists (CATEGORY_*.txt) in {tmp_path}" in line


def test_run_cli_turns_user_errors_into_one_line_and_lets_bugs_through(capsys):
    def fails(error):
        def main(argv):
            assert argv == ["--keep"]  # --debug never reaches main
            raise error
        return main

    for error in (UsageError("give a set"), FileNotFoundError(2, "No such file or directory", "/x/set.json"),
                  ValueError("k > N:\n  k=5, N=4")):
        with pytest.raises(SystemExit) as stop:
            run_cli(fails(error), "prog", ["--keep"])
        assert stop.value.code == 2
        assert capsys.readouterr().err == error_line("prog", error) + "\n"
    assert error_line("prog", ValueError("k > N:\n  k=5, N=4")) == \
        "prog: error: k > N: k=5, N=4 (run again with --debug for the traceback)"
    assert "/x/set.json" in error_line("prog", FileNotFoundError(2, "No such file or directory", "/x/set.json"))
    with pytest.raises(UsageError):
        run_cli(fails(UsageError("give a set")), "prog", ["--keep", "--debug"])
    with pytest.raises(RuntimeError):  # a bug is not a user error: its traceback stays
        run_cli(fails(RuntimeError("bug")), "prog", ["--keep"])
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda argv: 3, "prog", [])
    assert stop.value.code == 3


@pytest.mark.parametrize("module", ["research.toy.train_model", "research.toy.train_recipe", "rfmi_core.toy.evaluate",
                                    "rfmi_core.toy.demo", "research.toy.judge_report", "research.toy.selection_study"])
def test_toy_commands_refuse_a_bad_flag_in_one_line(module):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", module, "--no-such-flag"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    prog = f"python -m {module}"
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"{prog}: error: ") and line.endswith(f"; see {prog} --help")
    assert "unrecognized arguments: --no-such-flag" in line or "required: weights" in line  # evaluate needs weights


def test_toy_evaluate_names_missing_weights_in_one_line(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "none.safetensors"
    done = subprocess.run([sys.executable, "-m", "rfmi_core.toy.evaluate", str(missing)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert f"no toy weights at {missing}" in done.stderr and "research.toy.train_recipe" in done.stderr
