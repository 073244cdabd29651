"""The scores candidates are ranked by, named once: which are exact per image, which are the paper's.

- Exact per image (``pointwise``, the I-MMSE form, read on the final image after sampling: ``n_t`` draws of the
  conditional velocity under ∅, y and each rival, all on shared draws), integrated over t ≤ ``RANKING_T_MAX``:
  ``pmi``: the point-wise MI i(x; y) = log p(x|y) − log p(x|∅);
  ``contrast``: log p(x|y) − log p(x|y′) for the nearest rival y′ (``counterfactuals`` suggests rivals; none: pmi);
  ``posterior``: p(y | x) among y and its rivals (uniform prior);
  ``phrase-pmi``: the weakest phrase's i(x; p | y∖p) = log p(x|y) − log p(x|y∖p), the prompt against itself less
  each phrase (the contrast whose rivals are the y∖p; a one-phrase prompt gives pmi).
- The paper's, read along the sampler's own trajectory for free (``trajectory``, Algorithm 2), right on average
  over prompts but not a function of the single image: ``rfmi`` (its Riemann sum), ``mitune`` (the reference code's
  mean), ``squared`` (∫ t/(1−t)·‖u_y − u_∅‖² dt).
- Phrase scores along the trajectory (``phrase_mi``): ``phrase-min``, ``phrase-mean``.

``rival_texts`` names the conditions a score compares the prompt with; ``exact_ranking`` turns one pass over
[∅, y, rivals…] into any exact score.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from torch import Tensor

from ..text.counterfactuals import rival_lines
from ..text.phrases import SplitPrompt, split_prompt
from .pointwise import ConditionRatios
from .trajectory import SCORES as TRAJECTORY_SCORES

__all__ = ["EXACT_SCORES", "TRAJECTORY_SCORES", "DEFAULT_SCORE", "SCORE_HELP", "RANKING_N_T", "RANKING_T_MAX", "ExactRanking",
           "is_exact", "exact_ranking", "rival_texts"]

EXACT_SCORES = ("pmi", "contrast", "posterior", "phrase-pmi")
RANKING_N_T = 32
"""Draws per candidate of the pack's exact scores (the core's exact_pointwise_mi takes 64). On the toy the
within-prompt AUROC is flat from 8 draws on (benchmarks/pmi_cost.py); on a Gaussian channel common draws reach a
Spearman correlation of 0.85–0.96 with the truth at 32 (benchmarks/pmi_draws.py). Each draw costs one model call per
condition: 64 calls for pmi, about a 28-step CFG sampling's 56."""
RANKING_T_MAX = 0.9
"""The pack ranks by the exact integrand over t ≤ 0.9 (down to noise level σ = 0.1), not over the whole of [0, 1]:
above t ≈ 0.9 the toy model's terms are fine-detail noise, t/(1 − t)-weighted, that swamp what the prompt decided.
Measured on the toy (benchmarks/toy_contrast_weighting.py, 48 held-out prompts per category, M = 8, 16 common draws,
two seeds): within-prompt AUROC of pmi 0.675 / 0.653 over [0, 1] against 0.728 / 0.691 over [0, 0.9]; of the
contrast with the toy grammar's rivals 0.468 / 0.474 (chance) against 0.751 / 0.768. A Gaussian channel loses
little (its integrand is nearly zero there). ``t_max`` = 1 gives the exact ratio."""
DEFAULT_SCORE = "pmi"
SCORE_HELP = {
    "pmi": "exact point-wise MI log p(x|y) − log p(x|∅) of the final image (n_t draws after sampling)",
    "contrast": "exact log p(x|y) − log p(x|y′) against the nearest rival prompt (pmi when there is no rival)",
    "posterior": "p(y | x) among the prompt and its rivals, from the exact log-likelihoods",
    "phrase-pmi": "exact i(x; p | y∖p) of the prompt's weakest phrase p, log p(x|y) − log p(x|y∖p) (needs the "
                  "prompt's text; one model call per phrase more than pmi)",
    "rfmi": "the paper's Algorithm 2 along the trajectory (free; right on average, not per image)",
    "mitune": "the paper's reference code's mean along the trajectory (free; not per image)",
    "squared": "∫ t/(1−t)·‖u_y − u_∅‖² dt along the trajectory (free; not per image)",
    "phrase-min": "the weakest phrase's i(x; p | y∖p) along the trajectory",
    "phrase-mean": "the mean phrase i(x; p | y∖p) along the trajectory",
}


def is_exact(score: str) -> bool:
    return score in EXACT_SCORES


def rival_texts(score: str, text: str = "", typed: str = "",
                split: Callable[[str], SplitPrompt] = split_prompt) -> list[str]:
    """The prompts an exact ``score`` compares ``text`` with, besides ∅: none for pmi; the prompt less each phrase
    (``split(text).ablations()``, "" for a one-phrase prompt) for phrase-pmi; for contrast and posterior the
    ``typed`` rivals (one per line), else the editor's (``counterfactuals``; none: the score falls back to pmi)."""
    if score not in EXACT_SCORES:
        raise ValueError(f"score must be one of {EXACT_SCORES}; got {score!r}")
    if score == "pmi":
        return []
    if score == "phrase-pmi":
        if not text.strip():
            raise ValueError("score phrase-pmi compares the prompt with itself less each phrase: give the prompt's "
                             "text, or choose score pmi")
        return list(split(text).ablations())
    return rival_lines(typed, text)


class ExactRanking(NamedTuple):
    """One exact score per candidate [N], its standard error [N], and each rival's margin [N, R]."""

    score: Tensor
    standard_error: Tensor
    margins: Tensor


def exact_ranking(ratios: ConditionRatios, score: str, num_rivals: int) -> ExactRanking:
    """``score`` from one pass over the conditions [∅, y, rival_1 … rival_R] (reference ∅ = 0, the prompt = 1):
    phrase-pmi is the contrast whose rivals are the y∖p (``rival_texts``)."""
    if score not in EXACT_SCORES:
        raise ValueError(f"score must be one of {EXACT_SCORES}; got {score!r}")
    rivals = list(range(2, 2 + num_rivals))
    value, error, margins = ratios.contrast(1, rivals if score != "pmi" else [])
    if score == "posterior":
        value = ratios.posterior_of(1, rivals)
        error = error.new_full(error.shape, float("nan"))  # no draw-wise standard error for a softmax
    if score == "pmi" and num_rivals:
        margins = ratios.log_ratio[:, 1:2] - ratios.log_ratio[:, rivals]
    return ExactRanking(value, error, margins)
