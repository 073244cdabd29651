"""Every numeric flag of every command has a declared range, and a value outside it is one error line (exit status 2,
naming the command the user typed) before any work: each numeric flag is fed 0, −1 and a non-number."""

from __future__ import annotations

import importlib

import pytest

from rfmi_core.util.cli_help import NUMBER_TYPES

# module, the arguments its parser requires, the command the user types
COMMANDS = [
    ("rfmi_core.toy.demo", [], "python -m rfmi_core.toy.demo"),
    ("rfmi_core.toy.evaluate", ["weights.safetensors"], "python -m rfmi_core.toy.evaluate"),
    ("rfmi_core.toy.compare", ["lora.safetensors"], "python -m rfmi_core.toy.compare"),
    ("rfmi_core.toy.prompt_list", [], "python -m rfmi_core.toy.prompt_list"),
    ("research.toy.selection_study", [], "python -m research.toy.selection_study"),
    ("research.toy.train_model", [], "python -m research.toy.train_model"),
    ("research.toy.train_recipe", [], "python -m research.toy.train_recipe"),
    ("research.toy.judge_report", [], "python -m research.toy.judge_report"),
    ("rfmi_core.build_set", ["--prompts", "p.txt", "--set", "s"], "python -m rfmi_core.build_set"),
    ("rfmi_core.rivals", ["a red cube"], "python -m rfmi_core.rivals"),
    ("rfmi_core.phrase_report", ["prompt_lists"], "python -m rfmi_core.phrase_report"),
    ("rfmi_core.bench.synthetic", [], "python -m rfmi_core.bench.synthetic"),
    ("rfmi_core.train.cli", ["--model", "toy", "--out", "x.safetensors"], "python -m rfmi_core.train"),
]
VALUES = ("0", "-1", "x")


def numeric_actions(parser):
    return [a for a in parser._actions if a.option_strings and a.type not in (None, str) and a.choices is None]


def one_line(capsys, prog: str, flag: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog}: error: argument {flag}"), lines[0]
    return lines[0]


@pytest.mark.parametrize("module, required, prog", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_each_numeric_flag_has_a_range_and_refuses_what_is_outside_it_in_one_line(module, required, prog, capsys):
    mod = importlib.import_module(module)
    actions = numeric_actions(mod.build_parser())
    refused = 0
    for action in actions:
        flag = action.option_strings[0]
        if module == "rfmi_core.train.cli" and action.type in (int, float):
            continue  # TrainConfig's settings: their ranges are checked by TrainConfig (next test)
        assert action.type in NUMBER_TYPES, f"{module} {flag}: a bare {action.type.__name__} has no range"
        for value in VALUES:
            try:
                action.type(value)
                continue  # in range: the flag takes it
            except Exception:  # noqa: BLE001 - argparse's ArgumentTypeError
                pass
            with pytest.raises(SystemExit) as stop:
                mod.main([*required, flag, value])
            assert stop.value.code == 2
            one_line(capsys, prog, flag)
            refused += 1
    assert refused >= len([a for a in actions if a.type in NUMBER_TYPES])  # at least the non-number, each


def test_trainconfig_flags_refuse_out_of_range_values_before_any_work(capsys):
    """The trainer's settings flags (declared once in TrainConfig) are read into a TrainConfig before anything is
    loaded: 0, −1 and a non-number are either in range or one error line."""
    from rfmi_core.util.cli_help import run_cli
    from rfmi_core.train.cli import build_parser, main

    parser = build_parser()
    for action in numeric_actions(parser):
        if action.type not in (int, float):
            continue
        flag = action.option_strings[0]
        for value in VALUES:
            args = ["--model", "toy", "--out", "x.safetensors", "--data", "no_such_module:data"]
            args += [flag, value, value] if action.nargs == 2 else [flag, value]
            with pytest.raises(SystemExit) as stop:
                run_cli(main, "python -m rfmi_core.train", args)  # as python -m rfmi_core.train runs it
            assert stop.value.code == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
            # in range, the run goes on to the data factory, which cannot be imported: that line, not a setting's
            assert err.startswith("python -m rfmi_core.train: error: "), err


@pytest.mark.parametrize("argv, message", [
    (["--steps", "-3"], "argument --steps: -3 is not a whole number ≥ 1"),
    (["--steps", "0"], "argument --steps: 0 is not a whole number ≥ 1"),
    (["--threads", "0"], "argument --threads: 0 is not a whole number ≥ 1"),
    (["--m", "0"], "argument --m: 0 is not a whole number ≥ 1"),
    (["--k", "-1"], "argument --k: -1 is not a whole number ≥ 1"),
    (["--ft-steps", "-1"], "argument --ft-steps: -1 is not a whole number ≥ 1"),
    (["--k", "9", "--m", "8"], "--k (9) cannot exceed --m (8)"),
    (["--analytic", "--images", "-1"], "argument --images: -1 is not a whole number ≥ 1"),
])
def test_the_main_job_names_the_command_the_user_typed(argv, message, capsys):
    from rfmi_core.demo import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith("python -m rfmi_core.demo"), err
