"""The selection study's scores and statistics, against closed forms and direct computation."""

import torch

from rfmi_core.mi.sampler import sample_with_mi
from rfmi_core.toy.evaluate import sigma_grid, velocity_fn
from rfmi_core.toy.model import ToyFlowTransformer
from rfmi_core.toy.prompts import parse_prompt, tokenize_batch
from research.toy.selection_study import auroc_by_group, contrast_scores, top1_by_group, trajectory_scores
from research.toy.train_model import toy_config


def _model():
    torch.manual_seed(0)
    model = ToyFlowTransformer(toy_config()).eval()
    with torch.no_grad():  # the zero-initialised output layers would make every velocity 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_cond_score_from_the_cfg_trace_equals_a_cond_run():
    torch.set_num_threads(1)
    model, cfg = _model(), 2.5
    noise = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    tokens = tokenize_batch(["one red square", "two blue disks", "a red square and a blue disk"])
    images, res_cfg = sample_with_mi(velocity_fn(model), noise, sigma_grid(6), tokens, None, cfg=cfg)
    _, res_cond = sample_with_mi(velocity_fn(model), noise, sigma_grid(6), tokens, None, cfg=cfg, mi_velocity="cond")
    scores = trajectory_scores(res_cfg, cfg, images)
    assert torch.allclose(scores["rfmi-cond"], res_cond.mi_of("rfmi"), rtol=1e-4, atol=1e-4)
    assert torch.allclose(scores["rfmi-cfg"], res_cfg.mi)
    assert torch.allclose(scores["rfmi/squared"] * res_cfg.mi_of("squared"), res_cfg.mi, rtol=1e-5)


def test_contrast_margins_vanish_for_a_model_that_ignores_the_prompt():
    def blind(x, t, tokens):  # a velocity field with no prompt input
        return 0.5 * x + t[:, None, None, None]

    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = contrast_scores(blind, images, ["one red square", "a red square to the left of a blue disk"], n_t=2, seed=0)
    assert out["contrast-min"].abs().max() < 1e-4 and out["contrast-mean"].abs().max() < 1e-4
    torch.manual_seed(0)
    out = contrast_scores(_model(), images, ["one red square", "a red square to the left of a blue disk"], 2, 0)
    assert out["contrast-min"].abs().min() > 0 and bool((out["contrast-min"] <= out["contrast-mean"]).all())


def test_auroc_and_top1_by_prompt():
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    correct = torch.tensor([True, False, True, False, True, True, False, True])
    score = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0, 1.0, 5.0, 1.0])
    auc, ids = auroc_by_group(score, correct, groups)
    # prompt 0: pairs (4>3, 4>1, 2<3, 2>1) → 3/4; prompt 1 has no wrong candidate; prompt 2: 1 < 5 → 0
    assert ids.tolist() == [0, 2] and torch.allclose(auc, torch.tensor([0.75, 0.0]))
    hits, chance = top1_by_group(score, correct, groups)
    assert hits.tolist() == [1.0, 1.0, 0.0] and torch.allclose(chance, torch.tensor([0.5, 1.0, 0.5]))


def test_study_writes_the_mi_histogram_of_every_candidate(tmp_path, monkeypatch):
    from matplotlib.image import imread

    from research.toy import selection_study
    from research.toy.selection_study import Condition, figure_name, study

    drawn = []

    def save(figure, path):
        drawn.append(figure)
        return save_figure(figure, path)

    save_figure = selection_study.save_figure
    monkeypatch.setattr(selection_study, "save_figure", save)
    torch.set_num_threads(1)
    condition = Condition(None, 3.0, 4, 3)
    lines = study(condition, 1, 2, 0, fresh=False, contrast=False, m_values=[], say=lambda *_: None,
                  figures=str(tmp_path))
    path = tmp_path / figure_name(condition)
    assert figure_name(condition) == "mi_histogram_toy_rf_cfg3_steps4.png"
    assert f"MI histogram: `{path}`" in lines
    (figure,) = drawn
    assert [ax.get_title() for ax in figure.axes] == ["binding", "spatial", "numeracy"]
    # each panel counts its category's 1 prompt × M = 3 candidates, correct and wrong together
    assert [sum(bar.get_height() for c in ax.containers for bar in c) for ax in figure.axes] == [3, 3, 3]
    assert imread(path).shape[1] > 1000


def test_phrase_mi_along_the_trajectory_keeps_the_samples_and_the_prompt_order():
    from rfmi_core.mi.phrase_mi import sample_with_phrase_mi
    from rfmi_core.toy.evaluate import generate, generate_with_phrase_mi, noise_for
    from rfmi_core.toy.prompts import without_phrases
    from research.toy.selection_study import phrase_scores

    torch.set_num_threads(1)
    model, cfg, steps = _model(), 2.0, 4
    texts = ["one red square", "a red square to the left of a blue disk", "two blue disks",
             "a green cross and a blue disk"]  # 2, 3, 2 and 2 phrases: batched by count, returned in this order
    seeds = [5, 6, 7, 8]
    images, plain, phrase_mi = generate_with_phrase_mi(model, texts, seeds, steps, cfg, batch=2)
    ref_images, ref = generate(model, texts, seeds, steps, cfg)
    torch.testing.assert_close(images, ref_images, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain.mi, ref.mi, rtol=1e-4, atol=1e-4)
    assert [len(p) for p in phrase_mi] == [2, 3, 2, 2]
    for i, text in enumerate(texts):  # each prompt alone, its own ablations
        ablated = [tokenize_batch([without_phrases(text, [p])]) for p in range(len(phrase_mi[i]))]
        _, _, alone = sample_with_phrase_mi(velocity_fn(model), noise_for([seeds[i]]), sigma_grid(steps),
                                            tokenize_batch([text]), None, ablated, cfg=cfg, keep_map=False)
        torch.testing.assert_close(phrase_mi[i], alone.mi[0], rtol=1e-4, atol=1e-4)
    scores = phrase_scores(phrase_mi)
    assert scores["phrase-min"].tolist() == [float(p.min()) for p in phrase_mi]
    torch.testing.assert_close(scores["phrase-mean"], torch.stack([p.mean() for p in phrase_mi]))


def test_count_probe_splits_the_rivals_into_count_and_attribute_edits():
    from research.toy.count_probe import rival_kinds

    count, attribute = rival_kinds("two blue squares")
    assert sorted(count) == ["four blue squares", "one blue square", "three blue squares"]
    assert all(parse_prompt(r).counts == (2,) for r in attribute) and len(attribute) == 5  # 3 colours + 2 shapes
    count, attribute = rival_kinds("one red square and two green disks")
    assert count == ["two red squares and one green disk"]
    assert len(attribute) == 7 and all(sorted(parse_prompt(r).counts) == [1, 2] for r in attribute)
    assert rival_kinds("a red square and a blue disk")[0] == []


def test_count_probe_integrands_vanish_for_a_model_that_ignores_the_prompt():
    from research.toy.count_probe import T_GRID, integrands

    class Blind(torch.nn.Module):
        def forward(self, x, t, tokens):
            return -x  # the same velocity whatever the prompt
    images = torch.randn(3, 3, 16, 16)
    out = integrands(Blind(), images, "two blue squares", 2, torch.Generator().manual_seed(0))
    for name in ("pmi", "count", "attribute"):
        assert out[name].shape == (3, len(T_GRID)) and torch.equal(out[name], torch.zeros(3, len(T_GRID)))
