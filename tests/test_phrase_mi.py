"""Phrase MI i(x; p | y∖p) against closed-form conditional MI on a two-part Gaussian prompt, and its bookkeeping."""

import math

import pytest
import torch

from rfmi_core import TrajectoryMI, estimate_mi, sample_with_mi
from rfmi_core.mi.analytic import GaussianChannel, TwoPartGaussianChannel
from rfmi_core.mi.conventions import t_from_sigma
from rfmi_core.mi.phrase_mi import (
    PhraseMIResult,
    PhraseTrajectoryMI,
    estimate_phrase_mi,
    phrase_score,
    sample_with_phrase_mi,
)
from rfmi_core.finetune.scores import ScoredCandidates
from rfmi_core.mi.taps import PhraseTrajectoryTap

N_IMAGES = 4000


def mean_and_se(values):
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


def within(estimate, se, truth, k=3.0):
    return abs(estimate - truth) < k * se


@pytest.fixture(scope="module")
def channel():
    return TwoPartGaussianChannel.random(dim_x=4, dim_y1=1, dim_y2=1, noise_scale=0.5, seed=0)


def test_closed_forms_obey_the_chain_rule_and_match_the_one_part_channel(channel):
    assert channel.true_mi == pytest.approx(channel.mi_y1 + channel.mi_y2_given_y1, abs=1e-12)
    assert channel.true_mi == pytest.approx(channel.mi_y2 + channel.mi_y1_given_y2, abs=1e-12)
    joint = GaussianChannel(torch.cat([channel.mixing_1, channel.mixing_2], dim=1), channel.noise_cov)
    assert channel.true_mi == pytest.approx(joint.true_mi, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    y1, y2 = channel.sample_condition(5, g)
    x, t = torch.randn(5, 4, generator=g), torch.rand(5, generator=g)
    torch.testing.assert_close(channel.velocity(x, t, (y1, y2)), joint.velocity(x, t, torch.cat([y1, y2], 1)))
    torch.testing.assert_close(channel.velocity(x, t, None), joint.velocity(x, t, None))
    torch.testing.assert_close(channel.velocity(x, t, (None, None)), joint.velocity(x, t, None))
    # y1 alone is the one-part channel with A1 and the A2·Y2 part folded into the noise
    given_y1 = GaussianChannel(channel.mixing_1, channel.mixing_2 @ channel.mixing_2.T + channel.noise_cov)
    torch.testing.assert_close(channel.velocity(x, t, (y1, None)), given_y1.velocity(x, t, y1))
    assert channel.mi_y1 == pytest.approx(given_y1.true_mi, abs=1e-12)


def test_along_the_trajectory_phrase_mi_is_the_conditional_mi(channel):
    """Euler sampling from p(x|y) on exact velocities (100 linear steps); per image, along its own trajectory: the
    plain MI, i(x; y1) (u_{y1} against u_∅) and both phrase terms (one more velocity per phrase per step)."""
    g = torch.Generator().manual_seed(21)
    y1, y2 = channel.sample_condition(N_IMAGES, g)
    sigmas = torch.linspace(1, 0, 101)
    velocity = channel.velocity
    plain, part_1 = TrajectoryMI(velocity="cond"), TrajectoryMI(velocity="cond")
    phrases = PhraseTrajectoryMI(2, velocity="cond")
    x = torch.randn(N_IMAGES, 4, generator=g)
    for i in range(100):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        t = torch.full((N_IMAGES,), float(t_from_sigma(sigma)))
        u_y, u_0, u_1, u_2 = (velocity(x, t, c) for c in [(y1, y2), None, (y1, None), (None, y2)])
        plain.add_step(sigma, sigma_next, x, u_y, u_0)
        part_1.add_step(sigma, sigma_next, x, u_1, u_0)
        phrases.add_step(sigma, sigma_next, x, u_y, u_0, [u_2, u_1])  # phrase 0 = y1 (y∖p = y2), phrase 1 = y2
        x = x + (sigma - sigma_next) * u_y
    total, mi_1, phrase = plain.result().mi, part_1.result().mi, phrases.result()
    y2_given_y1, se = mean_and_se(phrase.mi[:, 1])
    y1_given_y2, se_other = mean_and_se(phrase.mi[:, 0])
    chain, chain_se = mean_and_se(total - (mi_1 + phrase.mi[:, 1]))
    wrong, wrong_se = mean_and_se(total)  # ∅ in the place of y∖p: the phrase term becomes the plain MI
    print(f"trajectory: I(X;Y2|Y1) {y2_given_y1:.4f} ± {se:.4f} vs {channel.mi_y2_given_y1:.4f}; "
          f"I(X;Y1|Y2) {y1_given_y2:.4f} ± {se_other:.4f} vs {channel.mi_y1_given_y2:.4f}; chain-rule residual "
          f"{chain:.4f} ± {chain_se:.4f}; ∅ ablation {wrong:.4f} ± {wrong_se:.4f}")
    assert within(y2_given_y1, se, channel.mi_y2_given_y1)
    assert within(y1_given_y2, se_other, channel.mi_y1_given_y2)
    assert se < 0.05 * channel.mi_y2_given_y1  # the band is tight
    assert within(chain, chain_se, 0.0)
    assert within(float(mi_1.mean()), mean_and_se(mi_1)[1], channel.mi_y1)
    assert not within(wrong, wrong_se, channel.mi_y2_given_y1)  # the wrong ablation is rejected (by ~30 s.e.)
    maps = phrase.maps  # [B, 2, 4]: t/(1 − t)·‖u_y − u_{y∖p}‖², whose mean over images is the same MI
    map_mean, map_se = mean_and_se(maps[:, 1].sum(dim=1))
    assert bool((maps >= 0).all()) and within(map_mean, map_se, channel.mi_y2_given_y1)


def test_sample_with_phrase_mi_keeps_the_samples_and_the_plain_mi(channel):
    g = torch.Generator().manual_seed(5)
    y1, y2 = channel.sample_condition(64, g)
    noise, sigmas = torch.randn(64, 4, generator=g), torch.linspace(1, 0, 31)
    for velocity_option in ("cfg", "cond"):
        x_plain, plain = sample_with_mi(channel.velocity, noise, sigmas, (y1, y2), None, cfg=3.0,
                                        mi_velocity=velocity_option)
        x, plain_too, phrase = sample_with_phrase_mi(channel.velocity, noise, sigmas, (y1, y2), None,
                                                     [(None, y2), (y1, None), None], cfg=3.0,
                                                     mi_velocity=velocity_option)
        assert torch.equal(x, x_plain)
        torch.testing.assert_close(plain_too.mi, plain.mi)
        assert phrase.mi.shape == (64, 3) and phrase.maps.shape == (64, 3, 4)
        # ∅ as y∖p: the phrase term is the plain MI (any velocity option), and its map is the MI heatmap
        torch.testing.assert_close(phrase.mi[:, 2], plain.mi, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(phrase.maps[:, 2], plain.map, rtol=1e-5, atol=1e-5)
    assert torch.equal(phrase.score("phrase-min"), phrase.mi.amin(dim=1))
    _, _, first = sample_with_phrase_mi(channel.velocity, noise[:40], sigmas, (y1[:40], y2[:40]), None,
                                        [(None, y2[:40]), (y1[:40], None), None], cfg=3.0, mi_velocity="cond")
    _, _, rest = sample_with_phrase_mi(channel.velocity, noise[40:], sigmas, (y1[40:], y2[40:]), None,
                                       [(None, y2[40:]), (y1[40:], None), None], cfg=3.0, mi_velocity="cond")
    joined = PhraseMIResult.concat([first, rest])  # batches of one Best-of-N run, joined
    torch.testing.assert_close(joined.mi, phrase.mi, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(joined.select([63, 0]).maps, phrase.maps[[63, 0]], rtol=1e-5, atol=1e-5)


def test_importance_sampled_phrase_mi_is_the_conditional_mi(channel):
    """Existing samples x ~ p(x|y), n_t = 8 stratified draws of Prop. 3.3; the same t and noise for y, ∅ and each
    y∖p; i(x; y1) from estimate_mi with the same seed (hence the same draws) closes the chain rule per image."""
    g = torch.Generator().manual_seed(22)
    y1, y2 = channel.sample_condition(N_IMAGES, g)
    x1 = channel.sample_data((y1, y2), g)
    est = estimate_phrase_mi(channel.velocity, x1, (y1, y2), None, [(None, y2), (y1, None)], n_t=8,
                             generator=torch.Generator().manual_seed(7), mi_velocity="cond")
    mi_1 = estimate_mi(channel.velocity, x1, (y1, None), None, n_t=8, generator=torch.Generator().manual_seed(7),
                       mi_velocity="cond")
    y2_given_y1, se = mean_and_se(est.mi[:, 1])
    y1_given_y2, se_other = mean_and_se(est.mi[:, 0])
    total, total_se = mean_and_se(est.total_mi)
    chain, chain_se = mean_and_se(est.total_mi - (mi_1 + est.mi[:, 1]))
    print(f"importance sampling: I(X;Y2|Y1) {y2_given_y1:.4f} ± {se:.4f} vs {channel.mi_y2_given_y1:.4f}; "
          f"I(X;Y1|Y2) {y1_given_y2:.4f} ± {se_other:.4f} vs {channel.mi_y1_given_y2:.4f}; I(X;Y) {total:.4f} ± "
          f"{total_se:.4f} vs {channel.true_mi:.4f}; chain-rule residual {chain:.4f} ± {chain_se:.4f}")
    assert within(y2_given_y1, se, channel.mi_y2_given_y1)
    assert within(y1_given_y2, se_other, channel.mi_y1_given_y2)
    assert within(total, total_se, channel.true_mi)
    assert se < 0.05 * channel.mi_y2_given_y1
    assert within(chain, chain_se, 0.0)
    assert not within(total, total_se, channel.mi_y2_given_y1)  # ∅ in the place of y∖p is rejected
    assert est.standard_error.shape == (N_IMAGES, 2) and bool((est.standard_error > 0).all())
    map_mean, map_se = mean_and_se(est.maps[:, 1].sum(dim=1))
    assert bool((est.maps >= 0).all()) and within(map_mean, map_se, channel.mi_y2_given_y1)


def test_same_draws_make_phrase_differences_low_variance(channel):
    """Shared (t, ε) for y, ∅ and y∖p: the per-image chain-rule residual i(x; y) − i(x; y1) − i(x; y2 | y1) is far
    tighter than when i(x; y1) comes from independent draws (and stacked draws tile two-part conditions)."""
    g = torch.Generator().manual_seed(3)
    y1, y2 = channel.sample_condition(500, g)
    x1 = channel.sample_data((y1, y2), g)
    est = estimate_phrase_mi(channel.velocity, x1, (y1, y2), None, [(y1, None)], n_t=4,
                             generator=torch.Generator().manual_seed(1), mi_velocity="cond")
    same = estimate_mi(channel.velocity, x1, (y1, None), None, n_t=4, generator=torch.Generator().manual_seed(1),
                       mi_velocity="cond")
    other = estimate_mi(channel.velocity, x1, (y1, None), None, n_t=4, generator=torch.Generator().manual_seed(2),
                        mi_velocity="cond")
    spread_shared = float((est.total_mi - same - est.mi[:, 0]).std())
    spread_independent = float((est.total_mi - other - est.mi[:, 0]).std())
    print(f"chain-rule residual spread: shared draws {spread_shared:.3f}, independent {spread_independent:.3f}")
    assert spread_shared < 0.2 * spread_independent
    stacked = estimate_phrase_mi(channel.velocity, x1, (y1, y2), None, [(y1, None), (None, y2)], n_t=4,
                                 generator=torch.Generator().manual_seed(1), mi_velocity="cond", draws_per_call=4)
    assert stacked.draws.shape == (500, 2, 4) and bool(torch.isfinite(stacked.draws).all())
    assert abs(float(stacked.mi[:, 0].mean() - est.mi[:, 0].mean())) < 3 * float(est.mi[:, 0].std() / 500**0.5)


def test_velocity_options_by_hand():
    """Constant velocities u_y = (3, 1), u_∅ = (1, 1), u_{y∖p} = (2, 0); one step at σ = 0.5 (weight 1, Δt 0.5), w = 2.

    u_cfg(y) = (5, 1); "cfg": u_cfg(y∖p) = (3, −1), 5·2 + 1·2 = 12 → 6; "cfg-y": (5, 1)·(3, 1) = 16 → 8;
    "cond": (3, 1)·(1, 1) = 4 → 2. The map is ‖u_y − u_{y∖p}‖² = (1, 1) per coordinate times 0.5 in every option.
    """
    x = torch.zeros(1, 2)
    u_y, u_0, u_p = torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0]])
    for option, expected in [("cfg", 6.0), ("cfg-y", 8.0), ("cond", 2.0)]:
        acc = PhraseTrajectoryMI(1, velocity=option)
        acc.add_step(0.5, 0.0, x, u_y, u_0, [u_p], cfg_scale=2.0)
        result = acc.result()
        assert result.mi.item() == pytest.approx(expected), option
        torch.testing.assert_close(result.maps, torch.tensor([[[0.5, 0.5]]]))


def test_cfg_phrase_term_splits_the_plain_cfg_mi_exactly():
    """Per step, u_cfg·(u_cfg − u_∅) = u_cfg·(u_cfg − u_cfg(y∖p)) + u_cfg·w·(u_{y∖p} − u_∅) on arbitrary velocities."""
    g = torch.Generator().manual_seed(8)
    sigmas = torch.linspace(1, 0, 7)
    plain, phrase, rest = TrajectoryMI(velocity="cfg"), PhraseTrajectoryMI(1, velocity="cfg"), torch.zeros(3)
    for i in range(6):
        x, u_y, u_0, u_p = (torch.randn(3, 2, 4, 4, generator=g) for _ in range(4))
        plain.add_step(sigmas[i], sigmas[i + 1], x, u_y, u_0, 4.5)
        phrase.add_step(sigmas[i], sigmas[i + 1], x, u_y, u_0, [u_p], 4.5)
        s = float(sigmas[i])
        u_cfg = u_0 + 4.5 * (u_y - u_0)
        rest += (1 - s) / s * (u_cfg * 4.5 * (u_p - u_0)).flatten(1).sum(1) * float(sigmas[i] - sigmas[i + 1])
    torch.testing.assert_close(plain.result().mi, phrase.result().mi[:, 0] + rest, rtol=1e-4, atol=1e-3)
    assert phrase.result().maps.shape == (3, 1, 4, 4)


def test_steps_at_sigma_zero_contribute_nothing_and_bad_input_is_named():
    acc = PhraseTrajectoryMI(2, velocity="cfg")
    ones = torch.ones(2, 3)
    acc.add_step(0.5, 0.0, ones, 2 * ones, ones, [ones, 3 * ones], cfg_scale=2.0)
    nan = torch.full((2, 3), float("nan"))
    acc.add_step(0.0, 0.0, ones, nan, nan, [nan, nan], cfg_scale=2.0)
    result = acc.result()
    assert bool(torch.isfinite(result.mi).all()) and bool(torch.isfinite(result.maps).all())
    # u_cfg = 3; phrase 0: u_cfg(y∖p) = 1, 3·2·3 coords·0.5 = 9; phrase 1: u_cfg(y∖p) = 5, 3·(−2)·3·0.5 = −9
    torch.testing.assert_close(result.mi, torch.tensor([[9.0, -9.0], [9.0, -9.0]]))
    with pytest.raises(ValueError, match="u_ablated"):
        acc.add_step(0.5, 0.0, ones, ones, ones, [ones])
    with pytest.raises(ValueError, match="u_uncond"):
        PhraseTrajectoryMI(1, velocity="cfg").add_step(0.5, 0.0, ones, ones, None, [ones])
    with pytest.raises(ValueError, match="velocity"):
        PhraseTrajectoryMI(1, velocity="squared")


def test_phrase_scores():
    mi = torch.tensor([[1.0, 3.0, 2.0], [0.5, 0.5, 5.0]])
    torch.testing.assert_close(phrase_score(mi, "phrase-min"), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(phrase_score(mi, "phrase-mean"), torch.tensor([2.0, 2.0]))
    with pytest.raises(ValueError, match="score"):
        phrase_score(mi, "rfmi")
    with pytest.raises(ValueError, match="phrase_mi"):
        phrase_score(mi[0], "phrase-min")


def test_phrase_tap_in_a_samplers_post_cfg_hook_is_sample_with_phrase_mi(channel):
    """The tap driven as ComfyUI's Euler sampler drives it (post-CFG args in ComfyUI's convention, the step callback
    after each evaluation, u_{y∖p} from the caller at the same call) reads what sample_with_phrase_mi reads."""
    g = torch.Generator().manual_seed(9)
    y1, y2 = channel.sample_condition(32, g)
    noise, sigmas, cfg = torch.randn(32, 4, generator=g), torch.linspace(1, 0, 21), 2.5
    ablated = [(None, y2), (y1, None)]

    def ablated_velocities(args):
        t = 1 - args["sigma"]
        return [channel.velocity(args["input"], t, c) for c in ablated]

    tap = PhraseTrajectoryTap(ablated_velocities, 2, velocity="cfg")
    x = noise.clone()
    for i in range(sigmas.numel() - 1):
        sigma = sigmas[i].expand(32)
        t = 1 - sigma
        u_y, u_0 = channel.velocity(x, t, (y1, y2)), channel.velocity(x, t, None)
        cond, uncond = x + sigma[:, None] * u_y, x + sigma[:, None] * u_0  # denoised = x − σ·output, output = −u
        denoised = uncond + cfg * (cond - uncond)
        out = tap.post_cfg({"input": x, "sigma": sigma, "cond_denoised": cond, "uncond_denoised": uncond, "uncond": [],
                            "denoised": denoised, "cond_scale": cfg, "model_options": {}})
        assert out is denoised
        tap.on_step(i)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    plain = tap.finish()
    x_ref, plain_ref, phrases_ref = sample_with_phrase_mi(channel.velocity, noise, sigmas, (y1, y2), None, ablated,
                                                          cfg=cfg)
    torch.testing.assert_close(x, x_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(plain.mi, plain_ref.mi, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(tap.phrase_result().mi, phrases_ref.mi, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(tap.phrase_result().maps, phrases_ref.maps, rtol=1e-3, atol=1e-3)
    assert float(phrases_ref.mi.abs().max()) > 1  # not a comparison of zeros


def test_scored_candidates_carry_their_phrase_mi_through_select_and_concat():
    mi = torch.tensor([[1.0, 3.0], [0.5, 4.0], [2.0, 2.5]])
    maps = torch.rand(3, 2, 4, 4)
    scores = ScoredCandidates(mi=phrase_score(mi), seeds=[5, 6, 7], batch_index=[0, 0, 0], phrases=("a b", "c d"),
                              phrase_mi=mi, phrase_maps=maps)
    picked = scores.select([2, 0])
    assert torch.equal(picked.phrase_mi, mi[[2, 0]]) and torch.equal(picked.phrase_maps, maps[[2, 0]])
    joined = ScoredCandidates.concat([scores.select([0]), scores.select([1, 2])])
    assert joined.phrases == ("a b", "c d") and torch.equal(joined.phrase_mi, mi)
    assert torch.equal(joined.phrase_maps, maps)
    with pytest.raises(ValueError, match="phrase_mi must be"):
        ScoredCandidates(mi=mi[:, 0], seeds=[5, 6, 7], batch_index=[0, 0, 0], phrases=("a b",), phrase_mi=mi)
    with pytest.raises(ValueError, match="phrase_maps must be"):
        ScoredCandidates(mi=mi[:, 0], seeds=[5, 6, 7], batch_index=[0, 0, 0], phrases=("a b", "c d"), phrase_mi=mi,
                         phrase_maps=maps[:2])
