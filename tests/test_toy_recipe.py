"""The one-command toy training recipe: stages chained, paused and resumed, skipped when done, refused when stale."""

import json
import os
import shlex

import pytest
from safetensors import safe_open

from research.toy.train_model import DEFAULT_WEIGHTS, build_parser
from research.toy.train_recipe import SHIPPED, Stage, completed_steps, run_recipe

SMALL = ("--width", "16", "--depth", "1", "--heads", "1", "--batch", "4", "--save-every", "100")
TINY = (
    Stage("base", ("--steps", "4", *SMALL), pauses=(2,)),
    Stage("layout", ("--init", "{work}/base.safetensors", "--prompt-slots", "--categories", "spatial", "--stf", "3",
                     "--low-t-share", "1", "--decay", "none", "--ema", "0", "--steps", "2", *SMALL)),
)


def _metadata(path):
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def test_recipe_runs_each_stage_pauses_resumes_and_copies_the_last_file(tmp_path):
    work, out = str(tmp_path / "work dir"), str(tmp_path / "out" / "toy.safetensors")  # a space in the path
    ran = run_recipe(TINY, work, out)
    assert [("--stop-after" in argv, "--resume" in argv, argv[argv.index("--out") + 1]) for argv in ran] == [
        (True, False, f"{work}/base.safetensors"), (False, True, f"{work}/base.safetensors"),
        (False, False, f"{work}/layout.safetensors")]
    assert completed_steps(f"{work}/base.safetensors") == 4 and completed_steps(out) == 2
    assert open(out, "rb").read() == open(f"{work}/layout.safetensors", "rb").read()
    assert json.loads(_metadata(out)["config"])["prompt_slots"] is True
    assert _metadata(out)["init"] == f"{work}/base.safetensors"


def test_rerun_skips_finished_stages_and_resumes_an_interrupted_one(tmp_path):
    work, out = str(tmp_path / "work"), str(tmp_path / "toy.safetensors")
    run_recipe(TINY, work, out)
    base_bytes = open(f"{work}/base.safetensors", "rb").read()
    assert run_recipe(TINY, work, out) == []
    os.remove(f"{work}/layout.safetensors")
    (again,) = run_recipe(TINY, work, out)
    assert again[again.index("--out") + 1] == f"{work}/layout.safetensors"
    assert open(f"{work}/base.safetensors", "rb").read() == base_bytes


def test_a_stage_file_from_other_flags_is_refused_not_reused(tmp_path):
    work, out = str(tmp_path / "work"), str(tmp_path / "toy.safetensors")
    run_recipe(TINY[:1], work, out)
    changed = (Stage("base", ("--steps", "4", "--lr", "5e-4", *SMALL), pauses=(2,)),)
    with pytest.raises(ValueError, match="trained by other flags.*another --work"):
        run_recipe(changed, work, out)


def test_pauses_outside_a_stage_are_refused(tmp_path):
    with pytest.raises(ValueError, match="pauses"):
        run_recipe((Stage("base", ("--steps", "4", *SMALL), pauses=(4,)),), str(tmp_path), str(tmp_path / "x"))


def test_shipped_recipe_parses_and_its_last_stage_is_the_shipped_files_run():
    parser = build_parser()
    for stage in SHIPPED:
        parser.parse_args([flag.replace("{work}", "w") for flag in stage.flags])
    words = shlex.split(_metadata(DEFAULT_WEIGHTS)["command"])[3:]
    shipped = vars(parser.parse_args(words))
    recipe = vars(parser.parse_args([flag.replace("{work}", "w") for flag in SHIPPED[-1].flags]))
    bookkeeping = {"out", "snapshots", "save_every", "init", "threads"}
    assert {k: v for k, v in shipped.items() if k not in bookkeeping} == {
        k: v for k, v in recipe.items() if k not in bookkeeping}
    assert completed_steps(DEFAULT_WEIGHTS) == recipe["steps"] == 2500 and recipe["categories"].count("numeracy") == 3
    assert recipe["numeracy_groups"] == 2 and all(  # the earlier stages trained on one counted group
        vars(parser.parse_args([f.replace("{work}", "w") for f in stage.flags]))["numeracy_groups"] == 1
        for stage in SHIPPED[:-1])
