"""The fine-tune set format: round trip, append and dedupe, top-k, crash safety, validation, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rfmi_core import CandidateRecord, FinetuneSet, FinetuneSetError

SHAPE = [16, 4, 4]


def record(prompt="a red cube", seed=0, mi=1.0, **extra) -> CandidateRecord:
    fields = dict(prompt=prompt, negative="", seed=seed, batch_index=0, candidate_index=seed, mi=mi, score="rfmi",
                  velocity="cfg", model="tiny-sd3", sampler={"sampler_name": "euler", "steps": 4, "cfg": 4.5},
                  latent_shape=SHAPE)
    fields.update(extra)
    return CandidateRecord(**fields)


def conditioning(*texts):
    out = {}
    for text in texts:
        g = torch.Generator().manual_seed(len(text))
        out[text] = {"cross_attn": torch.randn(1, 7, 64, generator=g), "pooled_output": torch.randn(1, 32, generator=g)}
    return out


def latents(n, seed=0):
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_round_trip_is_bitwise(tmp_path):
    s = FinetuneSet.open(tmp_path / "set", create=True, top_k=2)
    lat = latents(2).to(torch.bfloat16).float()
    cond = conditioning("a red cube", "")
    s.append([record(seed=0, mi=2.0), record(seed=1, mi=1.0)], lat, cond)
    again = FinetuneSet.open(tmp_path / "set")
    kept = again.records()
    assert [r.seed for r in kept] == [0, 1] and kept[0].mi == 2.0 and kept[0].sampler["cfg"] == 4.5
    assert torch.equal(again.load_latents(kept), lat)
    loaded = again.load_conditioning(kept[0].prompt_conditioning)
    assert set(loaded) == {"cross_attn", "pooled_output"}
    assert all(torch.equal(loaded[k], cond["a red cube"][k]) for k in loaded)
    latent, c, u = again.training_data()[1]
    assert torch.equal(latent, lat[1]) and torch.equal(c["pooled_output"], cond["a red cube"]["pooled_output"])
    assert torch.equal(u["cross_attn"], cond[""]["cross_attn"])


def test_appends_accumulate_dedupe_and_keep_top_k_per_prompt(tmp_path):
    s = FinetuneSet.open(tmp_path / "set", create=True, top_k=1)
    cond = conditioning("a red cube", "two cats", "")
    assert len(s.append([record(seed=0, mi=1.0)], latents(1), cond)) == 1
    assert s.append([record(seed=0, mi=1.0)], latents(1), cond) == []  # the same candidate again: skipped
    other = FinetuneSet.open(tmp_path / "set", writer_id="second-run")
    other.append([record(seed=5, mi=3.0), record(prompt="two cats", seed=1, mi=0.5)], latents(2, 1), cond)
    kept = FinetuneSet.open(tmp_path / "set").records()
    assert sorted((r.prompt, r.seed) for r in kept) == [("a red cube", 5), ("two cats", 1)]
    summary = s.summary()
    assert summary == {"records": 2, "prompts": 2, "mi_min": 0.5, "mi_max": 3.0, "all_records": 3}


def test_an_artists_picks_stay_whatever_their_mi(tmp_path):
    s = FinetuneSet.open(tmp_path / "set", create=True, top_k=1)
    s.append([record(seed=0, mi=5.0), record(seed=1, mi=0.1, picked=True)], latents(2), conditioning("a red cube", ""))
    assert [r.seed for r in s.records()] == [1]


def test_a_write_killed_midway_leaves_the_previous_set_readable(tmp_path):
    root = tmp_path / "set"
    s = FinetuneSet.open(root, create=True, top_k=5)
    s.append([record(seed=0)], latents(1), conditioning("a red cube", ""))
    script = textwrap.dedent(f"""
        import os, torch, rfmi_core.finetune.finetune_set as fs
        from rfmi_core import FinetuneSet, CandidateRecord
        real = fs._atomic_write_bytes
        def die_midway(path, data):          # the manifest's temporary file is written, then the process dies
            tmp = path.parent / (fs._TMP_PREFIX + "dying-" + path.name)
            tmp.write_bytes(data[: len(data) // 2])
            os._exit(9)
        fs._atomic_write_bytes = die_midway
        s = FinetuneSet.open({str(root)!r})
        rec = CandidateRecord(prompt="a red cube", negative="", seed=7, batch_index=0, candidate_index=7, mi=9.0,
                              score="rfmi", velocity="cfg", model="tiny-sd3", sampler={{}}, latent_shape={SHAPE})
        s.append([rec], torch.zeros(1, *{SHAPE}), {{"a red cube": {{"c": torch.zeros(1)}}, "": {{"c": torch.zeros(1)}}}})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    kept = FinetuneSet.open(root).records()
    assert [r.seed for r in kept] == [0]


# which file of a record → (its path in the set, how a corrupt one is named, how a missing one is named); the corrupt
# shard is met by records(), the corrupt conditioning by training_data(); a missing one of either by records()
DAMAGED_FILES = {
    "latent shard": (lambda r: r.latent_shard,
                     lambda r: f"{Path(r.latent_shard).name} is not a readable latent shard",
                     lambda r: f"latent shard .*{Path(r.latent_shard).name} is missing"),
    "conditioning": (lambda r: f"conditioning/{r.prompt_conditioning}.safetensors",
                     lambda r: f"{r.prompt_conditioning}.safetensors is missing or unreadable",
                     lambda r: f"conditioning file conditioning/{r.prompt_conditioning}.safetensors is missing"),
}


@pytest.mark.parametrize("which", DAMAGED_FILES)
def test_a_missing_or_corrupt_file_is_named(tmp_path, which):
    relative_path, corrupt_message, missing_message = DAMAGED_FILES[which]
    s = FinetuneSet.open(tmp_path / "set", create=True)
    s.append([record()], latents(1), conditioning("a red cube", ""))
    kept = s.records()[0]
    path = tmp_path / "set" / relative_path(kept)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(FinetuneSetError, match=corrupt_message(kept)):
        s.records() if which == "latent shard" else s.training_data()
    path.unlink()
    with pytest.raises(FinetuneSetError, match=missing_message(kept)):
        s.records()


def test_flux_conditioning_with_guidance_is_stored_once_per_prompt(tmp_path):
    s = FinetuneSet.open(tmp_path / "set", create=True, top_k=3)
    flux = {"a red cube": {"cross_attn": torch.randn(1, 5, 64), "pooled_output": torch.randn(1, 32),
                           "guidance": torch.tensor([3.5])},
            "": {"cross_attn": torch.zeros(1, 5, 64), "pooled_output": torch.zeros(1, 32),
                 "guidance": torch.tensor([3.5])}}
    s.append([record(seed=i, mi=float(i)) for i in range(3)], latents(3), flux)
    s.append([record(seed=3, mi=9.0)], latents(1, 1), flux)
    assert len(list((tmp_path / "set" / "conditioning").glob("*.safetensors"))) == 2  # the prompt and the negative
    _, cond, uncond = s.training_data()[0]
    assert set(cond) == {"cross_attn", "pooled_output", "guidance"} and cond["guidance"].tolist() == [3.5]
    assert torch.equal(cond["cross_attn"], flux["a red cube"]["cross_attn"]) and torch.equal(uncond["pooled_output"],
                                                                                           flux[""]["pooled_output"])
    manifest = [json.loads(line) for p in sorted((tmp_path / "set" / "manifest").glob("*.jsonl"))
                for line in p.read_text().splitlines()]
    for field in ("prompt", "negative", "seed", "candidate_index", "mi", "score", "velocity", "model", "sampler",
                  "latent_shape", "time", "schema_version"):
        assert all(field in line for line in manifest), field


def test_wrong_versions_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(FinetuneSetError, match="not a fine-tune set"):
        FinetuneSet.open(tmp_path)
    s = FinetuneSet.open(tmp_path / "set", create=True)
    s.append([record()], latents(1), conditioning("a red cube", ""))
    segment = next((tmp_path / "set" / "manifest").glob("*.jsonl"))
    data = json.loads(segment.read_text())
    data["schema_version"] = 99
    segment.write_text(json.dumps(data) + "\n")
    with pytest.raises(FinetuneSetError, match="schema version 99"):
        s.records()
    (tmp_path / "set" / "set.json").write_text(json.dumps({"format": "rfmi-finetune-set", "version": 7, "top_k": 1}))
    with pytest.raises(FinetuneSetError, match="set version 7"):
        FinetuneSet.open(tmp_path / "set")


def test_bad_appends_are_refused(tmp_path):
    s = FinetuneSet.open(tmp_path / "set", create=True)
    with pytest.raises(FinetuneSetError, match="pair one to one"):
        s.append([record()], latents(2), conditioning("a red cube", ""))
    with pytest.raises(FinetuneSetError, match="no conditioning given"):
        s.append([record()], latents(1), conditioning("a red cube"))
    with pytest.raises(FinetuneSetError, match="latent_shape"):
        s.append([record(latent_shape=[3, 3])], latents(1), conditioning("a red cube", ""))


def _writer(root: str, worker: int, count: int) -> None:
    s = FinetuneSet.open(root, writer_id=f"worker{worker}")
    cond = conditioning(*(f"prompt {worker}-{i}" for i in range(count)), "")
    for i in range(count):
        s.append([record(prompt=f"prompt {worker}-{i}", seed=i, mi=float(i))], latents(1, i), cond)


def test_four_processes_appending_at_once_lose_nothing(tmp_path):
    root = str(tmp_path / "set")
    FinetuneSet.open(root, create=True, top_k=1)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(root, w, 200)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
        assert w.exitcode == 0
    kept = FinetuneSet.open(root).records(selected=False)
    assert len(kept) == 800 and len({r.id for r in kept}) == 800
    assert not [p for p in os.listdir(os.path.join(root, "manifest")) if p.startswith(".tmp-")]
    finetune_set = FinetuneSet.open(root)
    for r in kept[::97]:  # every record still points at its own latent
        assert torch.equal(finetune_set.load_latents([r])[0], latents(1, r.seed)[0])


WRITERS, ROUNDS = 8, 200


def _create_and_append(root: str, worker: int, barrier, top_ks: list[int], results) -> None:
    """Round r: wait for every writer, then create set r (k = top_ks[worker]) and append this writer's candidate of a
    shared prompt and of its own prompt; reports the rounds whose open or append failed, with the message."""
    failures = []
    for r in range(ROUNDS):
        barrier.wait(timeout=60)
        try:
            s = FinetuneSet.open(f"{root}/set{r}", create=True, top_k=top_ks[worker])
            cond = conditioning("shared prompt", f"own prompt {worker}", "")
            s.append([record(prompt="shared prompt", seed=worker, mi=float(worker)),
                      record(prompt=f"own prompt {worker}", seed=0)], latents(2, worker), cond)
        except FinetuneSetError as error:
            failures.append((r, str(error)))
    results.put((worker, failures))


def _race(root: Path, top_ks: list[int]) -> dict[int, list]:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(WRITERS), context.Queue()
    workers = [context.Process(target=_create_and_append, args=(str(root), w, barrier, top_ks, results))
               for w in range(WRITERS)]
    for w in workers:
        w.start()
    reports = dict(results.get(timeout=300) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    return reports


def test_eight_processes_creating_one_new_set_at_once_all_succeed_and_lose_nothing(tmp_path):
    """8 writers create the same new set at once, 200 times over: every open and append succeeds, each set holds every
    record once, one header and one file per conditioning, and no temporary file. (With the header created by an
    exclusive open and written after it, about 4 % of the rounds had an open read an empty header: the test failed 5 runs in 5.)"""
    reports = _race(tmp_path, [1] * WRITERS)
    assert reports == {w: [] for w in range(WRITERS)}
    for r in range(ROUNDS):
        root = tmp_path / f"set{r}"
        every = FinetuneSet.open(root).records(selected=False)
        assert sorted((x.prompt, x.seed) for x in every) == sorted(
            [("shared prompt", w) for w in range(WRITERS)] + [(f"own prompt {w}", 0) for w in range(WRITERS)])
        assert [x.seed for x in FinetuneSet.open(root).records() if x.prompt == "shared prompt"] == [WRITERS - 1]
        assert len(list((root / "conditioning").iterdir())) == WRITERS + 2  # each text's conditioning once
        assert not [p for sub in ("", "manifest", "latents", "conditioning") for p in os.listdir(root / sub)
                    if p.startswith(".tmp-")]


def test_creators_that_ask_for_another_top_k_are_refused_with_the_sets_k(tmp_path):
    """Half the writers ask for k = 1, half for k = 2, at once: in each round the header of one of them lands whole,
    the writers of that k succeed and the others are refused with a line that names both k."""
    top_ks = [1 + w % 2 for w in range(WRITERS)]
    reports = _race(tmp_path, top_ks)
    for r in range(ROUNDS):
        k = json.loads((tmp_path / f"set{r}" / "set.json").read_text())["top_k"]
        for w in range(WRITERS):
            failed = [message for round_, message in reports[w] if round_ == r]
            if top_ks[w] == k:
                assert failed == []
            else:
                assert len(failed) == 1 and f"keeps the top {k} per prompt, not {top_ks[w]}" in failed[0]
        assert len(FinetuneSet.open(tmp_path / f"set{r}").records(selected=False)) == WRITERS  # the k writers' two


def test_a_damaged_header_or_segment_says_what_happened_and_what_to_do(tmp_path):
    root = tmp_path / "set"
    s = FinetuneSet.open(root, create=True, top_k=1)
    s.append([record(seed=0)], latents(1), conditioning("a red cube", ""))
    s.append([record(seed=1)], latents(1, 1), conditioning("a red cube", ""))
    with pytest.raises(FinetuneSetError, match="does not exist"):
        FinetuneSet.open(tmp_path / "nowhere")
    segment = sorted((root / "manifest").glob("*.jsonl"))[0]
    good = segment.read_text()
    segment.write_text(good[: len(good) // 2])
    with pytest.raises(FinetuneSetError) as damaged:
        FinetuneSet.open(root).records()
    message = str(damaged.value)
    assert f"{segment} is damaged (line 1 is not valid JSON" in message and "no write in progress" in message
    assert "The other 1 segment(s) are not affected" in message
    assert f"move manifest/{segment.stem}.jsonl and latents/{segment.stem}.safetensors out of the set" in message
    (root / "moved").mkdir()
    segment.rename(root / "moved" / segment.name)  # as the message says: the rest of the set reads
    assert [r.seed for r in FinetuneSet.open(root).records(selected=False)] == [1]
    segment.write_text(good.replace('"latents/', '"../../latents/'))
    with pytest.raises(FinetuneSetError, match="names files outside the set's layout"):
        FinetuneSet.open(root).records()
    segment.unlink()
    header = root / "set.json"
    header.write_text("")
    with pytest.raises(FinetuneSetError, match=r"set.json is empty: it is not being written .* rewrite it as "
                                               r'\{"format": "rfmi-finetune-set", "version": 1, "top_k": 1\}'):
        FinetuneSet.open(root)
    with pytest.raises(FinetuneSetError, match="writer id '../x' must be letters"):
        FinetuneSet.open(tmp_path / "other", create=True, writer_id="../x")
