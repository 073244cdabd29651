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


__all__ = ["DEFINITIONS", "preamble", "reading", "verdict", "figures", "NOTES"]

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
         "judge": "FT on judge-selected (oracle)", "phrase-min": "FT on phrase-min-selected",
         "phrase-pmi": "FT on phrase-pmi-selected"}
SCORE_NAMES = {"pmi": "the exact point-wise MI", "contrast": "the contrast with rival prompts",
               "rfmi": "the paper's Algorithm 2", "phrase-min": "phrase-min",
               "phrase-pmi": "the weakest phrase's exact MI"}


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
        "read along each trajectory (CFG velocity); phrase-pmi, the smallest exact log p(x|y) − log p(x|y∖p) over "
        "the prompt's phrases; phrase-min, the same along the trajectory",
        f"- Selection, per prompt, each a fine-tune of its own: {', '.join(size.selections)} (pmi / contrast / rfmi "
        f"/ phrase-min / phrase-pmi: top k = {size.k} by that score; random: k at random; judge, the oracle: "
        + judge_selection + ")",
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


def verdict(evaluations: dict[str, Evaluation], ranked: str) -> list[str]:
    """The opening of results.md: one sentence that answers the job's question (does fine-tuning on the ``ranked``
    picks beat fine-tuning on random picks?), and the table of correctness that supports it."""
    if ranked not in evaluations:
        return []
    diffs = {c: diff_ci(_correct(evaluations["random"], c), _correct(evaluations[ranked], c)) for c in CATEGORIES} \
        if "random" in evaluations else {}
    above = [c for c, d in diffs.items() if d[1] > 0]
    below = [c for c, d in diffs.items() if d[2] < 0]
    name = SCORE_NAMES.get(ranked, ranked)
    if not diffs:
        sentence = f"Fine-tuned on the picks of {name}; no random control ran (add --controls)."
    elif above and not below:
        sentence = (f"**Verdict: fine-tuning on the picks of {name} beat fine-tuning on random picks in "
                    f"{', '.join(above)}** (95% intervals above 0), and lost in no category.")
    elif below and not above:
        sentence = (f"**Verdict: fine-tuning on the picks of {name} did worse than fine-tuning on random picks in "
                    f"{', '.join(below)}** (95% intervals below 0), and beat it in no category.")
    elif above:
        sentence = (f"**Verdict: mixed: the picks of {name} beat random picks in {', '.join(above)} and lost in "
                    f"{', '.join(below)}** (95% intervals).")
    else:
        sentence = (f"**Verdict: fine-tuning on the picks of {name} did no better and no worse than on random picks** "
                    "in any category (every 95% interval of the difference contains 0).")
    table = ["| category | base correct | FT on random picks | FT on " + ranked + " picks | " + ranked
             + " − random [95% CI] |", "|---|---|---|---|---|"]
    for c in CATEGORIES:
        cells = [str(_correct(evaluations[n], c)) for n in ("base", "random", ranked) if n in evaluations]
        d = diffs.get(c)
        table.append(f"| {c} | " + " | ".join(cells) + (f" | {_points(d)} |" if d else " | — |"))
    return [sentence, "", *table, ""]


def figures(shown: str) -> list[str]:
    """Links to the job's figures, each with what to see in it."""
    return ["## Figures", "",
            "- [grid_binding.png](grid_binding.png), [grid_spatial.png](grid_spatial.png), "
            "[grid_numeracy.png](grid_numeracy.png): evaluation prompts (rows), the same seeds for every model "
            "(columns in blocks); frames: green correct, amber valid but wrong, red invalid. Look for green frames "
            "that the fine-tunes add or lose against the base.",
            f"- [mi_histogram.png](mi_histogram.png): {shown} of every candidate, correct against wrong (the judge): "
            "the further right the correct ones lie, the better the score ranks.",
            "- [loss_curve.png](loss_curve.png): each fine-tune's flow-matching loss per step.", ""]


NOTES = [
    "## Reading the numbers", "",
    "- **Why the loss curve is nearly flat.** The flow-matching loss ‖u_θ(x_t) − (x1 − ε)‖² is mostly the noise ε's "
    "own unpredictable part, the same for any model: its floor is the conditional variance of x1 − ε given x_t, "
    "which no fine-tune can lower. What the LoRA changes is a small part on top (a few hundredths here); compare the "
    "runs' curves with each other, not with zero.",
    "- **Why MI rises after fine-tuning.** A LoRA trained on images of its prompts makes u(x_t|y) predict those "
    "images better and leaves u(x_t|∅) behind, so log p(x|y) − log p(x|∅) grows for images like them: a larger MI "
    "after fine-tuning says the model became more prompt-specific, not that it became more correct (the judge "
    "measures that).", "",
]
