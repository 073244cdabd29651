"""The stable-target-field trainer of the toy model: the target's closed forms, the low-t mixture, the references."""

import math

import pytest
import torch
from safetensors import safe_open

from rfmi_core.mi.conventions import straight_path
from rfmi_core.toy.judge import judge
from rfmi_core.toy.model import ToyFlowTransformer
from rfmi_core.toy.prompts import CATEGORIES, parse_prompt, prompt_specs, tokenize_batch
from research.toy.stable_target import stf_velocity_target
from research.toy.train_model import (LOW_T_MAX, cfm_loss, load_toy_model, save_toy_weights, stf_references,
                                       toy_config, train, with_low_times)
from rfmi_core.toy.world import random_training_batch, sample_scenes


def _images(n, seed):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_one_reference_is_the_plain_target_x1_minus_noise():
    x1, eps = _images(5, 0), _images(5, 1)
    t = torch.tensor([0.0, 0.2, 0.5, 0.8, 0.97])
    x_t, plain = straight_path(x1, eps, t)
    assert torch.allclose(stf_velocity_target(x_t, t, x1[:, None]), plain, atol=1e-4)


def test_at_t_zero_the_target_averages_the_references():
    refs = _images(6, 2).reshape(2, 3, 3, 16, 16)  # B = 2, K = 3
    x_t, t = _images(2, 3), torch.zeros(2)
    assert torch.allclose(stf_velocity_target(x_t, t, refs), refs.mean(1) - x_t, atol=1e-5)


def test_two_references_are_weighted_by_their_gaussian_likelihood():
    x1, other, eps = _images(1, 4) * 0.1, _images(1, 5) * 0.1, _images(1, 6)
    t = torch.tensor([0.3])
    x_t = 0.3 * x1 + 0.7 * eps
    log_w = [-float((x_t - 0.3 * r).square().sum()) / (2 * 0.7 ** 2) for r in (x1, other)]
    w0 = 1 / (1 + math.exp(log_w[1] - log_w[0]))
    expected = (w0 * x1 + (1 - w0) * other - x_t) / 0.7
    got = stf_velocity_target(x_t, t, torch.stack([x1, other], 1))
    assert 0.01 < w0 < 0.99 and torch.allclose(got, expected, atol=1e-5)


def test_target_refuses_mismatched_shapes_and_t_of_one():
    x_t = _images(2, 7)
    with pytest.raises(ValueError, match=r"references must be \[B, K"):
        stf_velocity_target(x_t, torch.zeros(2), _images(2, 8))
    with pytest.raises(ValueError, match="t must be < 1"):
        stf_velocity_target(x_t, torch.tensor([0.5, 1.0]), x_t[:, None])


def test_low_time_share_moves_that_share_of_times_below_the_layout_bound():
    t = torch.sigmoid(torch.randn(20000, generator=torch.Generator().manual_seed(9)))
    assert torch.equal(with_low_times(t, torch.Generator().manual_seed(1), 0.0), t)
    assert bool((with_low_times(t, torch.Generator().manual_seed(1), 1.0) < LOW_T_MAX).all())
    mixed = with_low_times(t, torch.Generator().manual_seed(1), 0.3)
    moved = float((mixed != t).float().mean())
    assert abs(moved - 0.3) < 0.015  # binomial sd 0.003


def test_references_of_one_image_each_leave_the_loss_unchanged():
    torch.manual_seed(0)
    model = ToyFlowTransformer(toy_config(width=32, depth=1))
    images, texts = random_training_batch(8, torch.Generator().manual_seed(3))
    tokens = tokenize_batch(texts)
    with torch.no_grad():
        plain = cfm_loss(model, images, tokens, torch.Generator().manual_seed(4), dropout=0.0)
        same = cfm_loss(model, images, tokens, torch.Generator().manual_seed(4), 0.0,
                        references=images[:, None].expand(8, 4, 3, 16, 16))
    assert torch.allclose(plain, same, atol=1e-6)
    with pytest.raises(ValueError, match="references"):
        cfm_loss(model, images, tokens, torch.Generator(), 0.0, references=images.flip(0)[:, None])


@pytest.mark.parametrize("category", CATEGORIES)
def test_sample_scenes_draws_distinct_scenes_that_satisfy_the_prompt(category):
    spec = prompt_specs(category, "train")[5]
    images = sample_scenes(spec, 12, torch.Generator().manual_seed(11))
    assert images.shape == (12, 3, 16, 16)
    assert all(v.valid and v.correct for v in judge(images, spec.text))
    assert len({tuple(im.flatten().tolist()) for im in images}) == 12


def test_stf_references_extend_full_prompts_only():
    images, texts = random_training_batch(4, torch.Generator().manual_seed(12))
    cut = [texts[0], "", texts[2], texts[3]]
    refs = stf_references(images, cut, texts, 5, torch.Generator().manual_seed(13))
    assert refs.shape == (4, 5, 3, 16, 16) and torch.equal(refs[:, 0], images)
    assert torch.equal(refs[1], images[1:2].expand(5, 3, 16, 16))  # a cut prompt keeps the plain target
    verdicts = judge(refs[0, 1:], texts[0])
    assert all(v.correct for v in verdicts)


def test_init_starts_a_new_run_from_a_file_and_records_it(tmp_path):
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    save_toy_weights(ToyFlowTransformer(toy_config(width=32, depth=1)), str(start), {"steps": 7})
    out = tmp_path / "cont.safetensors"
    train(steps=3, batch=8, lr=1e-3, dropout=0.5, ema_decay=0.0, seed=1, out=str(out), resume=False, save_every=3,
          init=str(start), stf=4, low_t_share=0.5)
    before, after = load_toy_model(str(start)), load_toy_model(str(out))
    assert after.config == before.config
    changed = [k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])]
    assert changed
    with safe_open(str(out), framework="pt") as handle:
        meta = handle.metadata()
    assert (meta["steps"], meta["init"], meta["stf"], meta["low_t_share"]) == ("3", str(start), "4", "0.5")


def test_training_batches_can_hold_one_category_only_and_refuse_unknown_ones():
    _, texts = random_training_batch(40, torch.Generator().manual_seed(14), ("spatial",))
    assert {parse_prompt(t).category for t in texts} == {"spatial"}
    _, mixed = random_training_batch(40, torch.Generator().manual_seed(14))
    assert {parse_prompt(t).category for t in mixed} == set(CATEGORIES)
    with pytest.raises(ValueError, match="categories must be a non-empty subset"):
        random_training_batch(4, torch.Generator(), ("colour",))


def test_one_group_training_batches_are_the_world_before_two_group_counting():
    """numeracy_groups=1 draws only one-group counting prompts (the first three shipped stages trained on these);
    the default draws both kinds."""
    one = [parse_prompt(t) for t in random_training_batch(200, torch.Generator().manual_seed(2), numeracy_groups=1)[1]]
    two = [parse_prompt(t) for t in random_training_batch(200, torch.Generator().manual_seed(2))[1]]
    assert {len(s.objects) for s in one if s.category == "numeracy"} == {1}
    assert {len(s.objects) for s in two if s.category == "numeracy"} == {1, 2}
    with pytest.raises(ValueError, match="numeracy_groups must be 1"):
        random_training_batch(4, torch.Generator(), numeracy_groups=3)


def test_a_flat_schedule_keeps_the_learning_rate_and_unknown_decays_are_refused(tmp_path, monkeypatch):
    seen = []
    original = torch.optim.AdamW.step

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    common = dict(batch=4, lr=1e-3, dropout=0.0, ema_decay=0.0, seed=0, resume=False, save_every=6, warmup=2,
                  config=toy_config(width=32, depth=1))
    train(steps=6, out=str(tmp_path / "flat.safetensors"), decay="none", **common)
    assert seen == pytest.approx([5e-4] + [1e-3] * 5)
    seen.clear()
    train(steps=6, out=str(tmp_path / "cos.safetensors"), **common)
    assert seen[1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 6))) and seen[-1] < 1e-4
    with pytest.raises(ValueError, match="decay must be"):
        train(steps=1, out=str(tmp_path / "x.safetensors"), decay="linear", **common)
