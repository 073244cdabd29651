"""What the exact scores cost and buy on the toy: within-prompt AUROC against n_t, and scoring time as a ratio of the
sampling time of the same candidates.

    python benchmarks/pmi_cost.py [--prompts 24] [--m 8] [--n-t 4 8 16 32 64] [--seed 3] [--threads 1] [--smoke]

Candidates: ``--prompts`` held-out prompts per category × M, sampled as the selection study samples them (CFG 3,
20 Euler steps), judged. For each n_t: the exact point-wise MI (``pmi``, common draws per prompt) and the contrast
against the editor's rivals (``contrast``; one pass gives both), the within-prompt AUROC of each against the judge's
"correct" over the prompts with both outcomes (95% bootstrap interval), and the seconds of each pass over the
seconds of sampling. A second table, at ``--rivals-n-t``: the contrast with each prompt's first r rivals (the editor's
order) for r = 1, 2, 4 and all, its AUROC and its time (every rival adds one model call per draw).
``--smoke`` runs a seconds-long version (CI). Prints tables; asserts nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: research/ beside rfmi_core/

import argparse
import time

import torch

from rfmi_core.toy.evaluate import generate, judge_batch, pick_prompts
from rfmi_core.toy.exact import condition_scores, toy_rivals
from rfmi_core.toy.prompts import CATEGORIES, prompts
from research.toy.selection_study import _bootstrap, auroc_by_group
from research.toy.train_model import load_toy_model


def candidates(prompts_per_category: int, m: int, seed: int):
    texts, groups = [], []
    for c, category in enumerate(CATEGORIES):
        for p, text in enumerate(pick_prompts(prompts(category, "heldout"), prompts_per_category, seed + c)):
            texts += [text] * m
            groups += [c * prompts_per_category + p] * m
    return texts, torch.tensor(groups), [seed * 1_000_000 + 17 + i for i in range(len(texts))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--m", type=int, default=8)
    parser.add_argument("--n-t", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rivals-n-t", type=int, default=32, help="n_t of the table against the number of rivals")
    parser.add_argument("--smoke", action="store_true", help="2 prompts per category, M = 4, n_t 2 and 4 (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.prompts, args.m, args.n_t, args.rivals_n_t = 2, 4, [2, 4], 2
    torch.set_num_threads(args.threads)
    model = load_toy_model(None)
    texts, groups, seeds = candidates(args.prompts, args.m, args.seed)
    clock = time.perf_counter()
    images, _ = generate(model, texts, seeds)
    sampling = time.perf_counter() - clock
    _, correct = judge_batch(images, texts)
    rivals = [toy_rivals(t) for t in texts]
    print(f"{len(texts)} candidates ({args.prompts} held-out prompts per category × M = {args.m}), sampled in "
          f"{sampling:.1f} s (40 model calls each); correct {100 * correct.float().mean():.1f} %")
    print("| n_t | pmi AUROC [95% CI] | contrast AUROC [95% CI] | pmi time / sampling | pmi+contrast time / sampling |")
    print("|---|---|---|---|---|")
    for n_t in args.n_t:
        clock = time.perf_counter()
        alone = condition_scores(model, images, texts, None, n_t=n_t, seed=args.seed, groups=groups)
        pmi_seconds = time.perf_counter() - clock
        clock = time.perf_counter()
        both = condition_scores(model, images, texts, rivals, n_t=n_t, seed=args.seed, groups=groups)
        both_seconds = time.perf_counter() - clock
        cells = []
        for score in (alone.pmi, both.contrast):
            auc, _ = auroc_by_group(score, correct, groups)
            low, high = _bootstrap(auc)
            cells.append(f"{auc.mean():.3f} [{low:.3f}, {high:.3f}]")
        print(f"| {n_t} | {cells[0]} | {cells[1]} | {pmi_seconds / sampling:.2f} | {both_seconds / sampling:.2f} |")
    counts = [len(r) for r in rivals]
    print(f"\nrivals per prompt (the editor's): median {sorted(counts)[len(counts) // 2]}, range {min(counts)}–"
          f"{max(counts)}; n_t {args.rivals_n_t}")
    print("| rivals r | contrast AUROC [95% CI] | pmi+contrast time / sampling |")
    print("|---|---|---|")
    for r in (1, 2, 4, None):
        clock = time.perf_counter()
        scores = condition_scores(model, images, texts, [found[:r] for found in rivals], n_t=args.rivals_n_t,
                                  seed=args.seed, groups=groups)
        seconds = time.perf_counter() - clock
        auc, _ = auroc_by_group(scores.contrast, correct, groups)
        low, high = _bootstrap(auc)
        print(f"| {r or 'all'} | {auc.mean():.3f} [{low:.3f}, {high:.3f}] | {seconds / sampling:.2f} |")


if __name__ == "__main__":
    main()
