"""Which weighting of the noise levels ranks toy candidates: the exact log-likelihood ratio (t/(1 − t)), the same
below a t_max (a band), or the diffusion classifier's uniform weight — for the point-wise MI and for contrasts with
rival prompts (the toy grammar's one-edit rivals, the generic editor's).

    python benchmarks/toy_contrast_weighting.py [--prompts 48] [--m 8] [--n-t 16] [--seed 0] [--smoke]

Candidates as the selection study samples them (held-out prompts, CFG 3, 20 Euler steps), judged; one pass of the
toy model per image on common draws per prompt (t ~ q with t_ε 0.6, shared ε) for ∅, y, every grammar rival and
every editor rival; each weighting reads the same draws (``ConditionRatios.reweighted``). Prints, per weighting and
score, the within-prompt AUROC (95% bootstrap interval) and top-1 against a random pick, per category.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: research/ beside rfmi_core/

import argparse
import time

import torch

from rfmi_core.mi.pointwise import condition_log_ratios_from_velocities
from rfmi_core.toy.evaluate import generate, judge_batch, pick_prompts
from rfmi_core.toy.exact import _toy_velocities, toy_rivals
from rfmi_core.toy.prompts import CATEGORIES, contrast_prompts, parse_prompt, prompts, tokenize_batch
from research.toy.selection_study import _bootstrap, auroc_by_group, top1_by_group
from research.toy.train_model import load_toy_model

WEIGHTS = {
    "exact t/(1−t)": lambda t: t / (1 - t),
    "band t ≤ 0.9": lambda t: t / (1 - t) * (t <= 0.9),
    "band t ≤ 0.6": lambda t: t / (1 - t) * (t <= 0.6),
    "uniform (classifier)": lambda t: torch.ones_like(t),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--m", type=int, default=8)
    parser.add_argument("--n-t", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.prompts, args.m, args.n_t = 2, 4, 2
    torch.set_num_threads(1)
    model = load_toy_model(None)
    texts, groups = [], []
    for c, category in enumerate(CATEGORIES):
        for p, text in enumerate(pick_prompts(prompts(category, "heldout"), args.prompts, args.seed + c)):
            texts += [text] * args.m
            groups += [c * args.prompts + p] * args.m
    groups = torch.tensor(groups)
    clock = time.perf_counter()
    images, _ = generate(model, texts, [args.seed * 1_000_000 + 17 + i for i in range(len(texts))])
    _, correct = judge_batch(images, texts)
    sampled = time.perf_counter() - clock
    scores: dict[str, dict[str, torch.Tensor]] = {w: {} for w in WEIGHTS}
    clock = time.perf_counter()
    for g in groups.unique().tolist():
        members = torch.nonzero(groups == g).flatten().tolist()
        text = texts[members[0]]
        grammar = [s.text for s in contrast_prompts(parse_prompt(text))]
        editor = toy_rivals(text)
        conditions = [None, tokenize_batch([text] * len(members))]
        conditions += [tokenize_batch([r] * len(members)) for r in grammar + editor]
        ratios = condition_log_ratios_from_velocities(
            _toy_velocities(model, conditions, len(members), None), images[members], len(conditions), n_t=args.n_t,
            generator=torch.Generator().manual_seed(args.seed + g), draws_per_call=4)
        grammar_idx = list(range(2, 2 + len(grammar)))
        editor_idx = list(range(2 + len(grammar), 2 + len(grammar) + len(editor)))
        for name, weight in WEIGHTS.items():
            r = ratios.reweighted(weight)
            found = {"pmi": r.log_ratio[:, 1],
                     "contrast-grammar": r.contrast(1, grammar_idx)[0], "posterior-grammar": r.posterior_of(1, grammar_idx),
                     "contrast-editor": r.contrast(1, editor_idx)[0], "posterior-editor": r.posterior_of(1, editor_idx)}
            for key, value in found.items():
                scores[name].setdefault(key, torch.zeros(len(texts)))[members] = value.float()
    scored = time.perf_counter() - clock
    print(f"{len(texts)} candidates ({args.prompts} held-out prompts per category × M = {args.m}, seed {args.seed}); "
          f"sampled in {sampled:.0f} s, scored in {scored:.0f} s ({args.n_t} common draws per prompt); correct "
          f"{100 * correct.float().mean():.1f} %")
    cats = [c for c in CATEGORIES for _ in range(args.prompts * args.m)]
    for name, by_score in scores.items():
        print(f"\n### {name}\n")
        print("| score | " + " | ".join(f"{c} AUROC" for c in ("all", *CATEGORIES)) + " | all top-1 − random |")
        print("|---|" + "---|" * 5)
        for key, value in by_score.items():
            cells = []
            for category in ("all", *CATEGORIES):
                mask = torch.ones(len(texts), dtype=torch.bool) if category == "all" else torch.tensor(
                    [c == category for c in cats])
                auc, _ = auroc_by_group(value[mask], correct[mask], groups[mask])
                low, high = _bootstrap(auc)
                cells.append(f"{auc.mean():.3f} [{low:.3f}, {high:.3f}]")
            hits, chance = top1_by_group(value, correct, groups)
            low, high = _bootstrap(hits - chance)
            print(f"| {key} | " + " | ".join(cells) + f" | {100 * (hits - chance).mean():+.1f} [{100 * low:+.1f}, "
                  f"{100 * high:+.1f}] |")


if __name__ == "__main__":
    main()
