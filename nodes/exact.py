"""Exact per-image scores of existing latents in ComfyUI: point-wise MI and contrasts against rival prompts
(``rfmi_core.pointwise``, the I-MMSE form), with the velocities from ComfyUI's own sampling machinery.

``ConditionsGuider`` is a CFGGuider (as ComfyUI's PerpNeg guider) whose every evaluation runs the positive, the
negative and any further CONDITIONINGs in one ``calc_cond_batch`` (ComfyUI's own cond batching) and keeps their paper
velocities; ``scoring_sampler`` (``sampling``) calls it at the drawn noise levels of the latent it is given.
"""

from __future__ import annotations

from dataclasses import replace

import torch

import comfy.samplers
import comfy.utils

from ..rfmi_core.mi.conventions import velocity_from_denoised
from ..rfmi_core.mi.pointwise import PMI_T_EPS, ConditionRatios, condition_log_ratios_from_velocities
from ..rfmi_core.mi.ranking import RANKING_T_MAX, ExactRanking, exact_ranking, rival_texts
from ..rfmi_core.finetune.scores import ScoredCandidates
from .model_checks import require_flow_model
from .sampling import model_latent, scoring_sampler


class ConditionsGuider(comfy.samplers.CFGGuider):
    """Every evaluation runs positive, negative and each extra CONDITIONING in one ``calc_cond_batch`` and keeps their
    paper velocities in ``velocities`` ([u_positive, u_negative, *u_extra]); it returns the plain CFG result."""

    def set_condition_list(self, positive, negative, extra: list) -> None:
        self.extra_keys = [f"rfmi_extra_{i}" for i in range(len(extra))]
        self.inner_set_conds({"positive": positive, "negative": negative, **dict(zip(self.extra_keys, extra))})
        self.velocities = None

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 (ComfyUI's signature)
        keys = ["positive", "negative", *self.extra_keys]
        out = comfy.samplers.calc_cond_batch(self.inner_model, [self.conds.get(k) for k in keys], x, timestep,
                                             model_options)
        self.velocities = [velocity_from_denoised(x.detach(), d.detach(), timestep.detach()) for d in out]
        return out[1] + (out[0] - out[1]) * self.cfg


def score_conditions(model, latent: dict, positive, negative, rivals: list, *, seed: int, n_t: int, t_eps: float,
                     draws_per_call: int = 1, common: bool = True, t_max: float = RANKING_T_MAX) -> ConditionRatios:
    """log p(x|c) − log p(x|∅) for c ∈ [∅ (negative), y (positive), each rival CONDITIONING], per latent of the
    LATENT, on shared draws (``common``: every latent on the same draws, so candidates compare on equal terms and a
    candidate's score does not depend on its batch)."""
    require_flow_model(model)
    guider = ConditionsGuider(model)
    guider.set_condition_list(positive, negative, rivals)
    guider.set_cfg(1.0)
    latent_image = model_latent(model, latent)
    result = {}

    def velocities():
        u = guider.velocities
        return [u[1], u[0], *u[2:]]  # [∅, y, rivals]

    sampler = scoring_sampler(
        velocities,
        lambda velocity_list, x1, generator: condition_log_ratios_from_velocities(
            velocity_list, x1, 2 + len(rivals), reference=0, n_t=n_t, t_eps=t_eps, generator=generator,
            draws_per_call=draws_per_call, common=common, t_max=t_max),
        seed=seed, n_t=n_t, draws_per_call=draws_per_call, result=result)
    guider.sample(torch.zeros_like(latent_image), latent_image, sampler, torch.tensor([1.0, 0.0]), seed=seed,
                  disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED)
    return result["value"]


def rank_exactly(model, samples: torch.Tensor, positive, negative, rivals: list, score: str, *, seed: int, n_t: int,
                 t_eps: float, batch_size: int, draws_per_call: int = 1, t_max: float = RANKING_T_MAX) -> ExactRanking:
    """``score`` (``rfmi_core.ranking.EXACT_SCORES``) of each of N latents [N, ...], scored batch_size at a time on
    common draws seeded by ``seed`` (so the result does not depend on batch_size)."""
    parts = []
    for start in range(0, samples.shape[0], batch_size):
        ratios = score_conditions(model, {"samples": samples[start:start + batch_size]}, positive, negative, rivals,
                                  seed=seed, n_t=n_t, t_eps=t_eps, draws_per_call=draws_per_call, t_max=t_max)
        parts.append(exact_ranking(ratios, score, len(rivals)))
    return ExactRanking(*(torch.cat([getattr(p, name) for p in parts]) for name in ExactRanking._fields))


def rival_conditionings(clip, text: str | None, rivals: str, score: str) -> tuple[list[str], list]:
    """(rival texts, their CONDITIONINGs) for ``score`` (``ranking.rival_texts``): none for pmi; the prompt less each
    phrase for phrase-pmi (split by the clip's own rule when it brings one); for contrast and posterior the typed
    rivals (one per line), else the editor's suggestions for ``text``. All but pmi need a clip to encode them."""
    if score == "pmi":
        return [], []
    if score == "phrase-pmi" and (clip is None or not (text or "").strip()):
        raise ValueError("score phrase-pmi compares the prompt with itself less each phrase: connect clip (the CLIP "
                         "that encoded positive) and text (positive's prompt), or choose score pmi")
    if not (rivals or "").strip() and not (text or "").strip():
        raise ValueError(f"score {score} compares the prompt with rival prompts: type them in rivals (one per line), "
                         "or connect text (positive's prompt) for the editor's suggestions, or choose score pmi")
    from .phrase_mi import encode_text, split_for

    texts = rival_texts(score, text or "", rivals, split=lambda prompt: split_for(clip, prompt))
    if texts and clip is None:
        raise ValueError(f"score {score} encodes the rival prompts: connect the clip that encoded positive")
    return texts, [encode_text(clip, t) for t in texts]


def exactly_scored(scores: ScoredCandidates, samples: torch.Tensor, model, positive, negative, score: str, *,
                   clip, text: str | None, rivals: str, seed: int, n_t: int, batch_size: int) -> ScoredCandidates:
    """``scores`` of freshly sampled candidates (``samples`` [N, ...], their LATENT) ranked by an exact score instead:
    ``mi`` holds it, with its standard error, the rivals and each rival's margin; the settings record it."""
    texts, conditionings = rival_conditionings(clip, text, rivals, score)
    ranked = rank_exactly(model, samples, positive, negative, conditionings, score, seed=seed, n_t=n_t,
                          t_eps=PMI_T_EPS, batch_size=batch_size)
    return replace(scores, mi=ranked.score.cpu(), mi_standard_error=ranked.standard_error.cpu(), rivals=tuple(texts),
                   rival_margins=ranked.margins.cpu() if texts else None,
                   settings={**scores.settings, "score": score, "n_t": n_t, "t_eps": PMI_T_EPS,
                             "t_max": RANKING_T_MAX})
