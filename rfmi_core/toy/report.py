"""The words around the toy demo's tables: what was run, what "valid" and "correct" mean, and a reading of the numbers.

``results.md`` must explain itself to someone who has not read the code: it opens with ``preamble`` (the command, the
model, the sampler, the selection and the fine-tuning recipe), then ``DEFINITIONS``, the tables, and ends with
``reading``: one paragraph that states, from the measured rates and their 95% intervals, which fine-tunes moved
correctness, which selection beat the random one, and by how much, whatever the sign.
"""

from __future__ import annotations

from typing import Any

from .evaluate import Evaluation, Rate, diff_ci
from .prompts import CATEGORIES


__all__ = ["DEFINITIONS", "preamble", "reading"]

DEFINITIONS = [
    "**Valid**: the exact judge (`rfmi_core/toy/judge.py`) recognises every coloured blob in the image as one of the "
    "world's shapes in one of its colours, with no foreign colours and little stray ink: a well-formed scene, "
    "whatever it shows.",
    "**Correct**: valid, and the scene the judge perceives satisfies the prompt exactly (binding: exactly the two "
    "named coloured shapes; spatial: exactly those two in the named relation; numeracy: exactly the named "
    "number of each named coloured shape, nothing else).",
]

NAMES = {"pmi": "FT on exact-MI-selected", "contrast": "FT on contrast-selected",
         "rfmi": "FT on Algorithm-2-selected (the paper's)", "random": "FT on random picks",
         "judge": "FT on judge-selected (oracle)", "phrase-min": "FT on phrase-min-selected"}
SCORE_NAMES = {"pmi": "the exact point-wise MI", "contrast": "the contrast with rival prompts",
               "rfmi": "the paper's Algorithm 2", "phrase-min": "phrase-min"}


def preamble(command: str, weights: str, size: Any, steps: int, cfg: float, seed: int, lr: float, rank: int,
             judge_selection: str) -> list[str]:
    """The opening lines of results.md: what was run, with every setting that changes the numbers (``size``: the
    demo's ``DemoSize``)."""
    return [
        "# Toy RFMI loop: generate → rank → keep the top-k → LoRA fine-tune → judge", "",
        f"- Command: `{command}`",
        f"- Model: `{weights}` (the toy rectified-flow transformer, `rfmi_core/toy/model.py`)",
        f"- Candidates: {size.ft_prompts} fine-tuning prompts per category (the held-out split's \"finetune\" half, "
        f"never trained on by the base model; its prompts in turn, new seeds each time) × M = {size.m}, "
        f"Euler {steps} steps, "
        f"CFG {cfg:g}, seed {seed}; scores in nats: pmi, the exact point-wise MI of each final image; contrast, "
        "log p(x|y) − log p(x|y′) against the nearest of the editor's rival prompts; rfmi, the paper's Algorithm 2 "
        "read along each trajectory (CFG velocity)",
        f"- Selection, per prompt, each a fine-tune of its own: {', '.join(size.selections)} (pmi / contrast / rfmi "
        f"/ phrase-min: top k = {size.k} by that score; random: k at random; judge, the oracle: " + judge_selection
        + ")",
        f"- Fine-tuning (one LoRA per selection, each from the same base): rank {rank}, alpha {rank}, lr {lr:g}, "
        f"{size.ft_steps} steps of batch {size.ft_batch}, AdamW, warm-up {max(1, size.ft_steps // 10)} steps, "
        "attention and MLP layers",
        f"- Evaluation: {size.eval_images} images per category and model on the held-out split's \"evaluation\" half "
        "(compositions seen neither by the base model nor by any fine-tune), the same prompts and seeds for every "
        "model", "",
        *DEFINITIONS, "",
    ]


def _points(d: tuple[float, float, float]) -> str:
    return f"{100 * d[0]:+.1f} points [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"


def _verdict(d: tuple[float, float, float]) -> str:
    return "up" if d[1] > 0 else "down" if d[2] < 0 else "unchanged within its interval"


def _correct(evaluation: Evaluation, category: str) -> Rate:
    return evaluation.rates(category)[0]


def _against_random(evaluations: dict[str, Evaluation], name: str, score: str) -> str:
    """One sentence: the correctness of FT on ``name``-selected minus FT on random picks, per category."""
    diffs = {c: diff_ci(_correct(evaluations["random"], c), _correct(evaluations[name], c)) for c in CATEGORIES}
    above = [c for c, d in diffs.items() if d[1] > 0]
    below = [c for c, d in diffs.items() if d[2] < 0]
    return (f"{score}-selected against random-selected fine-tuning, same budget: "
            + "; ".join(f"{c} {_points(d)}" for c, d in diffs.items()) + ". "
            + (f"Ranking by {score} beat a random pick in {', '.join(above)}" if above else
               f"In no category did ranking by {score} beat a random pick beyond its 95% interval")
            + (f"; it lost to it in {', '.join(below)}." if below else "."))


def reading(evaluations: dict[str, Evaluation]) -> str:
    """One paragraph reading the held-out table: each FT against the base, then MI-selected against random."""
    base = evaluations["base"]
    sentences = []
    for name, evaluation in evaluations.items():
        if name == "base":
            continue
        parts = [f"{category} {_points(d)} ({_verdict(d)})" for category in CATEGORIES
                 for d in [diff_ci(_correct(base, category), _correct(evaluation, category))]]
        valid = [100 * diff_ci(base.rates(c)[1], evaluation.rates(c)[1])[0] for c in CATEGORIES]
        sentences.append(f"{NAMES.get(name, name)} changed correctness against the base by " + "; ".join(parts)
                         + f", and validity by {min(valid):+.1f} to {max(valid):+.1f} points.")
    for name, score in SCORE_NAMES.items():
        if name in evaluations and "random" in evaluations:
            sentences.append(_against_random(evaluations, name, score))
    if "judge" in evaluations and "random" in evaluations:
        gains = [c for c in CATEGORIES
                 if diff_ci(_correct(evaluations["random"], c), _correct(evaluations["judge"], c))[1] > 0]
        sentences.append("The oracle (judge-selected) fine-tune beat random selection in "
                         + (", ".join(gains) if gains else "no category")
                         + ": the room a perfect scorer would have at this recipe.")
    return "## Reading\n\n" + " ".join(sentences) + (
        " Intervals are 95% (Wilson per rate, Newcombe for differences); a difference whose interval contains 0 is "
        "not a measured effect.")
