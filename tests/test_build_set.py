"""Headless set building with the toy model: 2 torchrun processes (gloo) build the set of one; a rerun skips complete
prompts; a run whose rank is killed mid-way, rerun, ends with every prompt present once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rfmi_core import FinetuneSet
from rfmi_core.build_set import main
from rfmi_core.util.cli_help import UsageError
from rfmi_core.finetune.candidates import shifted_sigmas, toy_candidates
from rfmi_core.finetune.set_builder import BuildPlan, build_set, pending_prompts, share
from rfmi_core.toy.prompts import prompts as toy_prompts
from rfmi_core.train.distributed import World
from set_compare import assert_same_sets, manifest_lines

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = toy_prompts("binding")[:4] + toy_prompts("numeracy")[:1]
FLAGS = ["--model", "toy", "--candidates", "3", "--k", "2", "--steps", "6", "--cfg", "3", "--seed", "5",
         "--batch-size", "2", "--no-progress"]


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env


def command(processes: int, prompts: Path, set_dir: Path, flags=FLAGS) -> list[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    return [*launcher, "-m", "rfmi_core.build_set", "--prompts", str(prompts), "--set", str(set_dir), *flags]


def build(prompts: Path, set_dir: Path, capsys, flags=FLAGS) -> str:
    """``python -m rfmi_core.build_set …`` in this process (one thread, as the subprocesses); returns its stdout."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        capsys.readouterr()
        main(["--prompts", str(prompts), "--set", str(set_dir), *flags])
        return capsys.readouterr().out
    finally:
        torch.set_num_threads(previous)


def run(processes: int, prompts: Path, set_dir: Path, flags=FLAGS) -> str:
    done = subprocess.run(command(processes, prompts, set_dir, flags), env=environment(), capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(["# toy prompts", *PROMPTS, "", PROMPTS[0]]) + "\n")  # a comment, a blank, a repeat
    return path


@pytest.fixture(scope="module")
def one_process(prompt_file, tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("one") / "set"
    return folder, run(1, prompt_file, folder)


def test_shares_partition_the_pending_prompts():
    pending = [f"p{i}" for i in range(7)]
    for size in (1, 2, 3):
        parts = [share(pending, World(rank, size)) for rank in range(size)]
        assert sorted(p for part in parts for p in part) == pending
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert share(pending, World(1, 3)) == ["p1", "p4"]


def test_shifted_sigmas_are_sd3s_time_shift():
    assert torch.allclose(shifted_sigmas(4, 1.0), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert torch.allclose(shifted_sigmas(2, 3.0), torch.tensor([1.0, 0.75, 0.0]))  # 3·½ / (1 + 2·½)


def test_one_process_keeps_the_top_k_of_each_prompt_by_exact_mi(one_process):
    folder, stdout = one_process
    assert f"built {len(PROMPTS)} prompts (0 already complete, skipped): {3 * len(PROMPTS)} candidates" in stdout
    assert f"{len(PROMPTS)} of {len(PROMPTS)} prompts complete" in stdout
    records = FinetuneSet.open(folder).records()
    assert sorted({r.prompt for r in records}) == sorted(PROMPTS) and len(records) == 2 * len(PROMPTS)
    maker = toy_candidates(steps=6, cfg=3.0, batch_size=2)  # the maker of --model toy, called here
    for prompt in PROMPTS[:2]:
        scores = maker.best_of_n(maker.encode(prompt), maker.encode(""), 5, 3)
        kept = sorted((r for r in records if r.prompt == prompt), key=lambda r: -r.mi)
        best = scores.mi.topk(2)
        assert [r.seed for r in kept] == [5 + int(i) for i in best.indices]
        assert [r.mi for r in kept] == best.values.tolist()
        assert kept[0].sampler == {"sampler_name": "euler", "shift": 1.0, "steps": 6, "cfg": 3.0, "seed": 5, "n": 3,
                                   "n_t": 32, "t_eps": 0.6, "t_max": 0.9}
        assert kept[0].score == "pmi" and kept[0].velocity == "cfg"
        assert kept[0].model == maker.identity and kept[0].candidate_index == kept[0].seed - 5
        latent = FinetuneSet.open(folder).load_latents(kept[:1])[0]
        assert torch.equal(latent, scores.latents[int(best.indices[0])])


def test_two_processes_build_the_set_of_one(prompt_file, one_process, tmp_path):
    """Three 2-process builds of a new set, each the set of one process. Both ranks create the set at once, so each run
    is also a race for its header (with a header created empty and written after, a rank read it empty in 3 of 6
    runs)."""
    folder, _ = one_process
    for attempt in range(3):
        stdout = run(2, prompt_file, tmp_path / f"set{attempt}")
        assert stdout.count("built ") == 1 and f"built {len(PROMPTS)} prompts by 2 processes" in stdout
        writers = {r.writer for r in FinetuneSet.open(tmp_path / f"set{attempt}").records(selected=False)}
        assert len(writers) == 2  # both ranks wrote
        assert assert_same_sets(folder, tmp_path / f"set{attempt}") == 2 * len(PROMPTS)


def test_a_rerun_skips_complete_prompts_and_builds_the_missing_ones(prompt_file, one_process, tmp_path, capsys):
    folder, _ = one_process
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join(PROMPTS[:2]) + "\n")
    build(partial, tmp_path / "set", capsys)
    stdout = build(prompt_file, tmp_path / "set", capsys)
    assert f"built {len(PROMPTS) - 2} prompts (2 already complete, skipped)" in stdout
    assert_same_sets(folder, tmp_path / "set")
    assert "(0 already complete" in build(prompt_file, tmp_path / "set", capsys, [*FLAGS, "--seed", "6"])  # new seeds
    again = build(prompt_file, tmp_path / "set", capsys)
    assert f"built 0 prompts ({len(PROMPTS)} already complete, skipped)" in again
    assert len(manifest_lines(tmp_path / "set")) == 2 * 2 * len(PROMPTS)  # seed 5 and seed 6, nothing twice
    assert not [m for m in sys.modules if m.split(".")[0] in ("comfy", "rfmi_pack")]  # no ComfyUI without --comfyui


def test_pending_prompts_need_k_records_of_these_settings(tmp_path):
    maker = toy_candidates(steps=2, cfg=3.0)
    plan = BuildPlan(tuple(PROMPTS[:2]), m=2, k=2)
    report = build_set(maker, plan, str(tmp_path / "set"), progress=False)
    assert (report.built, report.images) == (2, 4)
    finetune_set = FinetuneSet.open(tmp_path / "set")
    assert pending_prompts(finetune_set, maker, plan) == []
    assert pending_prompts(finetune_set, maker, BuildPlan(tuple(PROMPTS[:2]), m=3, k=2)) == PROMPTS[:2]
    assert pending_prompts(finetune_set, toy_candidates(steps=3, cfg=3.0), plan) == PROMPTS[:2]
    with pytest.raises(ValueError, match="k must be between 1 and m"):
        BuildPlan(("a",), m=2, k=3)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _rank_of(pid: int) -> int | None:
    try:
        variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [v.split(b"=", 1)[1] for v in variables if v.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to find torchrun's workers")
def test_a_killed_rank_costs_only_its_unfinished_prompts(tmp_path, capsys):
    many = toy_prompts("binding")[:6]
    prompts = tmp_path / "many.txt"
    prompts.write_text("\n".join(many) + "\n")
    flags = [*FLAGS[:FLAGS.index("--steps")], "--steps", "20", *FLAGS[FLAGS.index("--steps") + 2:]]
    set_dir = tmp_path / "set"
    launcher = subprocess.Popen(command(2, prompts, set_dir, flags), env=environment(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((set_dir / "manifest").is_dir() and manifest_lines(set_dir)):  # the first prompt is in
            assert time.monotonic() < deadline and launcher.poll() is None, "no prompt was appended"
            time.sleep(0.02)
        workers = {_rank_of(pid): pid for pid in _children(launcher.pid)}
        os.kill(workers[1], signal.SIGKILL)  # rank 1 dies mid-way; torchrun then stops rank 0
        launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    done = {r.prompt for r in FinetuneSet.open(set_dir).records()}
    assert 1 <= len(done) < len(many)
    stdout = run(2, prompts, set_dir, flags)
    assert f"built {len(many) - len(done)} prompts by 2 processes ({len(done)} already complete, skipped)" in stdout
    records = FinetuneSet.open(set_dir).records(selected=False)
    assert sorted(r.prompt for r in records) == sorted(many * 2)  # every prompt once, with its k = 2 records
    assert len(manifest_lines(set_dir)) == 2 * len(many)
    build(prompts, tmp_path / "reference", capsys, flags)
    assert_same_sets(tmp_path / "reference", set_dir)


@pytest.mark.parametrize("flags, message", [
    (["--candidates", "2"], "give --model (toy or MODULE:FACTORY), or --checkpoint"),
    (["--model", "toy", "--checkpoint", "x.safetensors"], "give --model (toy or MODULE:FACTORY), or --checkpoint"),
    (["--model", "toy", "--candidates", "2", "--k", "3"], "k must be between 1 and m (2)"),
])
def test_a_bad_command_line_is_one_error_line(prompt_file, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as stop:
        main(["--prompts", str(prompt_file), "--set", str(tmp_path / "set"), *flags])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "set").exists()


def test_a_missing_prompt_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--prompts", str(tmp_path / "none.txt"), "--set", str(tmp_path / "set"), "--model", "toy"])
    assert f"--prompts {tmp_path / 'none.txt'} cannot be read" in capsys.readouterr().err


def toy_encoder():
    """An ``--encoder`` factory: the toy model's text encoding (word ids as cross_attn)."""
    from rfmi_core.toy.conditioning import conditioning_from_text

    return lambda text: {"cross_attn": conditioning_from_text(text)}


def test_a_trainer_style_factory_with_an_encoder_builds_the_toy_set(prompt_file, one_process, tmp_path, capsys):
    folder, _ = one_process
    build(prompt_file, tmp_path / "set", capsys, [*FLAGS[2:], "--model", "rfmi_core.train.cli:toy_model", "--encoder",
                                                  "test_build_set:toy_encoder", "--latent-shape", "3", "16", "16"])
    assert_same_sets(folder, tmp_path / "set")
    with pytest.raises(UsageError, match="needs --encoder MODULE:FACTORY and --latent-shape"):  # one line under run_cli
        main(["--prompts", str(prompt_file), "--set", str(tmp_path / "other"), "--model",
              "rfmi_core.train.cli:toy_model"])


def test_an_exact_maker_scores_final_images_independently_of_the_batch():
    """score contrast: the editor's rivals of the prompt, each candidate's score its smallest margin, and the same
    scores whatever the batch size (common draws seeded by the seed)."""
    from rfmi_core.text.counterfactuals import counterfactuals

    prompt = "a red square to the left of a green disk"
    runs = []
    for batch_size in (1, 3):
        maker = toy_candidates(steps=4, cfg=3.0, batch_size=batch_size, score="contrast", n_t=4)
        runs.append(maker.best_of_n(maker.encode(prompt), maker.encode(""), 0, 3, text=prompt))
    one, three = runs
    assert one.rivals == tuple(str(r) for r in counterfactuals(prompt)) and len(one.rivals) == 3
    torch.testing.assert_close(one.rival_margins.min(dim=1).values, one.mi, rtol=0, atol=1e-4)
    torch.testing.assert_close(one.mi, three.mi, rtol=1e-3, atol=1e-2)  # batched kernels: the last bits of images
    assert one.settings["score"] == "contrast" and one.settings["n_t"] == 4


def test_a_phrase_pmi_maker_compares_the_prompt_with_itself_less_each_phrase():
    """score phrase-pmi with the toy model: the rivals are y∖p for each phrase (the toy's own split), each candidate's
    score is its smallest margin log p(x|y) − log p(x|y∖p)."""
    from rfmi_core.toy.prompts import split_toy_prompt

    prompt = "a red square to the left of a green disk"
    maker = toy_candidates(steps=4, cfg=3.0, batch_size=3, score="phrase-pmi", n_t=4)
    scored = maker.best_of_n(maker.encode(prompt), maker.encode(""), 0, 3, text=prompt)
    assert scored.rivals == tuple(split_toy_prompt(prompt).ablations()) and len(scored.rivals) == 3
    torch.testing.assert_close(scored.rival_margins.min(dim=1).values, scored.mi, rtol=0, atol=1e-4)
    assert scored.settings["score"] == "phrase-pmi"
