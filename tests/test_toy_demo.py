"""The toy demo end to end at its tiny size (seconds): files written, verdict rates and intervals, FT moves the model."""

import math

import pytest
import torch
from matplotlib.image import imread
from safetensors import safe_open

from rfmi_core.toy.demo import SELECTIONS, SIZES, Candidates, FinetuneData, run_demo, select
from rfmi_core.toy.evaluate import Rate, diff_ci, noise_for, pick_prompts
from rfmi_core.toy.prompts import CATEGORIES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_demo")
    torch.set_num_threads(1)  # tiny batches: one thread avoids contention on a shared CPU
    return out, run_demo(SIZES["tiny"], out=str(out), progress=False, say=lambda *_: None)


def test_tiny_demo_writes_its_files(tiny):
    out, _ = tiny
    for name in ["results.md", "mi_histogram.png", "loss_curve.png", *(f"grid_{c}.png" for c in CATEGORIES),
                 *(f"lora_{s}.safetensors" for s in SIZES["tiny"].selections)]:
        assert (out / name).stat().st_size > 0, name
    assert (out / "grid_binding.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(out / "mi_histogram.png").shape[1] > 1000  # three panels side by side
    text = (out / "results.md").read_text()
    assert "| binding | correct |" in text and "kept by pmi" in text and "kept by contrast" in text
    assert text.startswith("# Toy RFMI loop") and "- Command: `" in text and "M = 4" in text
    assert text.split("\n")[2].startswith("**Verdict: ")  # the answer first, then the table that supports it
    assert "| category | base correct | FT on random picks | FT on pmi picks | pmi − random [95% CI] |" in text
    assert "[mi_histogram.png](mi_histogram.png)" in text and "Why the loss curve is nearly flat" in text
    assert "**Valid**" in text and "**Correct**" in text
    reading = text.split("## Reading\n\n")[1]
    assert "FT on exact-MI-selected changed correctness against the base by binding" in reading
    for score in ("the exact point-wise MI", "the contrast with rival prompts", "the paper's Algorithm 2", "phrase-min",
                  "the weakest phrase's exact MI"):
        assert f"{score}-selected against random-selected fine-tuning, same budget" in reading


def test_tiny_demo_rates_and_intervals(tiny):
    _, result = tiny
    size = SIZES["tiny"]
    assert set(result.evaluations) == {"base", *size.selections} and set(size.selections) == set(SELECTIONS)
    for ev in result.evaluations.values():
        assert len(ev.texts) == size.eval_images * len(CATEGORIES)
        assert bool((ev.correct <= ev.valid).all())  # correct implies valid
        for category in CATEGORIES:
            for r in ev.rates(category):
                low, high = r.ci
                assert r.n == size.eval_images and 0 <= low <= r.p <= high <= 1
    cands = result.candidates
    assert len(cands.texts) == size.ft_prompts * size.m * len(CATEGORIES)
    assert set(cands.scores) == {"pmi", "contrast", "rfmi", "phrase-min", "phrase-pmi"}
    assert all(bool(torch.isfinite(v).all()) for v in cands.scores.values())
    for how, kept in result.kept.items():
        if how == "judge":  # the oracle keeps correct candidates only, up to k per prompt
            assert bool(cands.correct[kept].all()) and len(kept) <= size.ft_prompts * size.k * len(CATEGORIES)
            continue
        assert len(kept) == size.ft_prompts * size.k * len(CATEGORIES)
        assert len(set(cands.groups[kept].tolist())) == size.ft_prompts * len(CATEGORIES)  # k per prompt


def test_tiny_demo_finetuning_moves_the_model(tiny):
    out, result = tiny
    with safe_open(str(out / "lora_pmi.safetensors"), framework="pt") as f:
        b = [f.get_tensor(k) for k in f.keys() if k.endswith("lora_B.weight")]
    assert b and any(float(t.abs().max()) > 0 for t in b)  # B starts at 0: non-zero means trained
    base, tuned = result.evaluations["base"].images, result.evaluations["pmi"].images
    assert not torch.equal(base, tuned)  # same prompts and noise, different model
    assert all(v > 0 and math.isfinite(v) for losses in result.losses.values() for v in losses)


def test_selection_by_a_score_keeps_the_highest_of_each_prompt():
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    mi = torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    flags = torch.tensor([True, False, True, False, False, True])
    cands = Candidates(torch.zeros(6, 3, 16, 16), ["one red square"] * 6, ["numeracy"] * 6, groups, flags, flags,
                       {"pmi": mi})
    assert select(cands, 1, "pmi").tolist() == [1, 5]
    assert sorted(select(cands, 2, "pmi").tolist()) == [1, 2, 3, 5]
    judged = select(cands, 1, "judge").tolist()
    assert judged[0] in (0, 2) and judged[1] == 5  # a correct one whenever the prompt has one
    assert sorted(select(cands, 3, "judge").tolist()) == [0, 2, 5]  # only correct ones, up to k
    none_correct = Candidates(cands.images, cands.texts, cands.categories, groups, flags, torch.zeros(6).bool())
    assert select(none_correct, 2, "judge").tolist() == []
    with pytest.raises(ValueError, match="how must be one of"):
        select(cands, 1, "best")
    with pytest.raises(ValueError, match="needs the candidates' phrase-min score"):
        select(cands, 1, "phrase-min")
    cands.scores["phrase-min"] = -mi  # ranked on its own: the lowest pmi here
    assert select(cands, 1, "phrase-min").tolist() == [0, 4]


def test_wilson_interval_and_difference():
    r = Rate(0, 10)
    assert r.ci[0] == 0 and 0.25 < r.ci[1] < 0.35  # Wilson at 0/10: [0, 0.278]
    assert Rate(10, 10).ci[1] == 1 and 0.65 < Rate(10, 10).ci[0] < 0.75
    low, high = Rate(50, 100).ci
    assert abs(low - 0.4038) < 1e-3 and abs(high - 0.5962) < 1e-3
    d, lo, hi = diff_ci(Rate(50, 100), Rate(70, 100))
    assert abs(d - 0.2) < 1e-9 and lo < 0.2 < hi and lo > 0  # a 20-point gap at n = 100 is significant


def test_noise_and_prompt_picks_are_reproducible():
    assert torch.equal(noise_for([3, 4])[1], noise_for([4])[0])
    texts = ["a", "b", "c"]
    picked = pick_prompts(texts, 7, seed=1)
    assert sorted(picked[:3]) == texts and picked == pick_prompts(texts, 7, seed=1)


def test_finetune_data_items_fit_the_trainer():
    data = FinetuneData(torch.zeros(2, 3, 16, 16), ["one red square", "a red square and a blue disk"])
    latent, cond, uncond = data[1]
    assert latent.shape == (3, 16, 16) and cond["tokens"].shape == (1, 10) and int(uncond["tokens"].abs().sum()) == 0


def test_evaluate_command_prints_valid_and_correct_per_category(capsys):
    from rfmi_core.toy.evaluate import main as evaluate_main
    from research.toy.train_model import DEFAULT_WEIGHTS
    evaluate_main([DEFAULT_WEIGHTS, "--n", "2", "--steps", "2", "--reasons"])
    lines = capsys.readouterr().out.splitlines()
    assert "CFG 3, 2 Euler steps, 2 held-out images per category" in lines[0]
    assert [line.split()[0] for line in lines[1:4]] == list(CATEGORIES)
    assert all("valid" in line and "correct" in line and "%" in line for line in lines[1:4])
    by_count = [line for line in lines if line.strip().startswith("numeracy, count ")]
    counts = [tuple(int(n) for n in line.split("count ")[1].split(":")[0].split("+")) for line in by_count]
    assert 1 <= len(counts) <= 2 and len(set(counts)) == len(counts)  # 2 prompts
    assert all(sum(c) <= 4 and min(c) >= 1 and len(c) <= 2 for c in counts)
    assert all("valid" in line and "correct" in line for line in by_count)


def test_reading_states_each_difference_with_its_interval_and_sign():
    from rfmi_core.toy.demo import Evaluation
    from rfmi_core.toy.report import reading

    def evaluation(correct_per_category: list[int], n: int = 100) -> Evaluation:
        flags = torch.cat([torch.arange(n) < k for k in correct_per_category])
        categories = [c for c in CATEGORIES for _ in range(n)]
        return Evaluation(torch.zeros(0), [""] * len(categories), categories, torch.zeros(len(categories)),
                          torch.ones(len(categories), dtype=torch.bool), flags)

    text = reading({"base": evaluation([50, 20, 50]), "pmi": evaluation([70, 20, 30]),
                    "random": evaluation([50, 20, 50])})
    d = diff_ci(Rate(50, 100), Rate(70, 100))
    assert f"binding {100 * d[0]:+.1f} points [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}] (up)" in text
    assert "spatial +0.0 points" in text and "(unchanged within its interval)" in text
    assert "numeracy -20.0 points" in text and "(down)" in text
    assert "Ranking by the exact point-wise MI beat a random pick in binding; it lost to it in numeracy." in text


def test_numeracy_by_count_rates_each_count_from_the_judges_verdicts():
    from rfmi_core.toy.evaluate import numeracy_by_count
    from rfmi_core.toy.judge import judge
    from rfmi_core.toy.prompts import parse_prompt
    from rfmi_core.toy.world import render, sample_scene

    g = torch.Generator().manual_seed(0)
    texts = ["two red squares", "two red squares", "four blue disks", "a red square to the left of a blue disk",
             "two red squares and one blue disk", "one red square and two blue disks", "two red squares and one blue disk"]
    scenes = [render(sample_scene(parse_prompt(t), g), g) for t in texts]
    scenes[1] = render(sample_scene(parse_prompt("three red squares"), g), g)  # valid, wrong count
    scenes[6] = render(sample_scene(parse_prompt("one red square and two blue disks"), g), g)  # counts swapped
    by_count = numeracy_by_count(judge(torch.stack(scenes), texts), texts)
    assert list(by_count) == [(2,), (4,), (1, 2), (2, 1)]
    (valid2, correct2), (valid4, correct4) = by_count[(2,)], by_count[(4,)]
    assert (valid2.k, valid2.n, correct2.k, correct2.n) == (2, 2, 1, 2)
    assert (valid4.k, valid4.n, correct4.k, correct4.n) == (1, 1, 1, 1)
    valid21, correct21 = by_count[(2, 1)]
    assert (valid21.k, valid21.n, correct21.k, correct21.n) == (2, 2, 1, 2)


def test_phrase_pmi_selection_scores_the_weakest_phrase_by_the_chain_rule():
    """phrase-pmi = min over phrases p of log p(x|y) − log p(x|y∖p), which on common draws is pmi(y) − pmi(y∖p): the
    same images scored once with y∖p as their prompt give it by subtraction."""
    from rfmi_core.toy.demo import EXACT_DRAWS, DemoSize, add_scores, make_candidates
    from rfmi_core.toy.exact import condition_scores
    from rfmi_core.toy.model import load_toy_model
    from rfmi_core.toy.prompts import split_toy_prompt

    torch.manual_seed(0)
    model = load_toy_model()
    cands = make_candidates(model, DemoSize(ft_prompts=1, m=2, k=1, ft_steps=1, eval_images=1), 3, 3.0, 0,
                            progress=False)
    add_scores(model, cands, ("pmi", "phrase-pmi"), 3, 3.0, 0, progress=False)
    less = [list(split_toy_prompt(t).ablations()) for t in cands.texts]
    assert {len(p) for p in less} >= {2, 3}  # two- and three-phrase prompts (binding, spatial)
    expected = torch.full((len(less),), float("inf"))
    for j in range(max(len(p) for p in less)):
        rows = torch.tensor([i for i, p in enumerate(less) if len(p) > j])
        without_j = condition_scores(model, cands.images[rows], [less[i][j] for i in rows.tolist()], None,
                                     n_t=EXACT_DRAWS, seed=0, groups=cands.groups[rows]).pmi
        expected[rows] = torch.minimum(expected[rows], cands.scores["pmi"][rows] - without_j)
    torch.testing.assert_close(cands.scores["phrase-pmi"], expected, rtol=0, atol=1e-4)
    assert not torch.allclose(cands.scores["phrase-pmi"], cands.scores["pmi"])
