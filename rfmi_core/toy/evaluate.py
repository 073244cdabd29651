"""Sampling the toy model with MI along the trajectory (paper Algorithm 2), judging the samples, and proportions with
95% confidence intervals: the shared pieces of the demo and the selection study.

    images, mi = generate(model, texts, seed=0)        # Euler, CFG, MI read on the way (rfmi_core.sample_with_mi)
    verdicts = judge(images, texts)

As a command, the quality of toy weights on held-out prompts (the demo's held-out set and seeds), per category:

    python -m rfmi_core.toy.evaluate WEIGHTS [WEIGHTS ...] [--n 200] [--cfg 3] [--steps 20] [--reasons]

prints valid and correct with 95% Wilson intervals (valid: the judge sees a scene of the world, only known shapes
in palette colours, at most 4 objects, few stray pixels; correct: valid and exactly what the prompt asks), numeracy
also by count ("2+1": two of the first named object and one of the second), and, with ``--reasons``, the judge's
most frequent reasons for invalid images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..present.statistics import wilson_interval
from ..util.progress import progress_bar
from ..util.cli_help import CommandParser, run_cli, non_negative_float, non_negative_int, positive_int
from ..mi.phrase_mi import sample_with_phrase_mi
from ..mi.sampler import sample_with_mi
from ..mi.trajectory import MIResult
from .judge import Verdict, judge
from .prompts import (CATEGORIES, MAX_TOKENS, PAD_ID, parse_prompt, prompt_phrases, prompts, tokenize_batch,
                      without_phrases)
from .world import CANVAS

__all__ = ["DEFAULT_STEPS", "DEFAULT_CFG", "Evaluation", "velocity_fn", "sigma_grid", "noise_for", "generate",
           "generate_with_phrase_mi", "Rate", "rate",
           "judge_batch", "diff_ci", "numeracy_by_count", "pick_prompts"]

DEFAULT_STEPS = 20
DEFAULT_CFG = 3.0


def velocity_fn(model: nn.Module):
    """velocity(x_t, t, tokens) → u for ``sample_with_mi`` / ``estimate_mi``; ``tokens`` None is the empty prompt ∅."""

    def velocity(x: Tensor, t: Tensor, tokens: Tensor | None) -> Tensor:
        if tokens is None:
            tokens = torch.full((x.shape[0], MAX_TOKENS), PAD_ID, dtype=torch.long)
        return model(x, t, tokens)

    return velocity


def sigma_grid(steps: int) -> Tensor:
    """The linear grid σ = 1 → 0 in ``steps`` Euler steps (the toy model is trained with logit-normal t, no shift)."""
    return torch.linspace(1.0, 0.0, steps + 1)


def noise_for(seeds: list[int]) -> Tensor:
    """One initial noise [3, CANVAS, CANVAS] per seed (the image of seed s does not depend on its batch)."""
    return torch.stack([torch.randn(3, CANVAS, CANVAS, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def generate(model: nn.Module, texts: list[str], seeds: list[int], steps: int = DEFAULT_STEPS, cfg: float = DEFAULT_CFG,
             mi_velocity: str = "cfg", batch: int = 256, progress: bool = False,
             desc: str = "sampling") -> tuple[Tensor, MIResult]:
    """Samples [N, 3, 16, 16] for (text, seed) pairs by Euler with CFG, and the MI read along each trajectory."""
    if len(texts) != len(seeds):
        raise ValueError(f"texts and seeds must pair up; got {len(texts)} texts and {len(seeds)} seeds")
    images, results = [], []
    for start in progress_bar(range(0, len(texts), batch), enabled=progress, desc=desc):
        tokens = tokenize_batch(texts[start:start + batch])
        x, result = sample_with_mi(velocity_fn(model), noise_for(seeds[start:start + batch]), sigma_grid(steps),
                                   tokens, None, cfg=cfg, mi_velocity=mi_velocity)
        images.append(x)
        results.append(result)
    return torch.cat(images), MIResult.concat(results)


@torch.no_grad()
def generate_with_phrase_mi(model: nn.Module, texts: list[str], seeds: list[int], steps: int = DEFAULT_STEPS,
                            cfg: float = DEFAULT_CFG, mi_velocity: str = "cfg", batch: int = 256,
                            progress: bool = False) -> tuple[Tensor, MIResult, list[Tensor]]:
    """``generate``'s samples and MI (the same Euler steps, so the same images) and, read along the same
    trajectories, each prompt's phrase MI i(x; p | y∖p) for its phrases (``prompts.prompt_phrases``; y∖p by
    ``prompts.without_phrases``, a trained conditional): one more velocity per phrase per step.

    Returns (images [N, 3, 16, 16], MIResult, a list of N tensors [P_i] of phrase MI in nats, prompt order).
    Prompts are batched by their number of phrases; the outputs are in the order of ``texts``.
    """
    if len(texts) != len(seeds):
        raise ValueError(f"texts and seeds must pair up; got {len(texts)} texts and {len(seeds)} seeds")
    by_count: dict[int, list[int]] = {}
    for i, text in enumerate(texts):
        by_count.setdefault(len(prompt_phrases(text)), []).append(i)
    chunks = [members[s:s + batch] for members in by_count.values() for s in range(0, len(members), batch)]
    order, images, results, phrase_mi = [], [], [], []
    for chunk in progress_bar(chunks, enabled=progress, desc="sampling with phrase MI"):
        chunk_texts = [texts[i] for i in chunk]
        ablated = [tokenize_batch([without_phrases(t, [p]) for t in chunk_texts])
                   for p in range(len(prompt_phrases(chunk_texts[0])))]
        x, plain, phrases = sample_with_phrase_mi(velocity_fn(model), noise_for([seeds[i] for i in chunk]),
                                                  sigma_grid(steps), tokenize_batch(chunk_texts), None, ablated,
                                                  cfg=cfg, mi_velocity=mi_velocity, keep_map=False)
        order += chunk
        images.append(x)
        results.append(plain)
        phrase_mi += list(phrases.mi)
    back = torch.tensor(order).argsort()
    return torch.cat(images)[back], MIResult.concat(results).select(back), [phrase_mi[i] for i in back.tolist()]


@dataclass
class Evaluation:
    """Evaluation samples of one model: images, texts, categories, MI and verdicts (same prompts and seeds per model)."""

    images: Tensor
    texts: list[str]
    categories: list[str]
    mi: Tensor
    valid: Tensor
    correct: Tensor

    def rates(self, category: str) -> tuple[Rate, Rate]:
        mask = torch.tensor([c == category for c in self.categories])
        return rate(self.correct[mask]), rate(self.valid[mask])


def judge_batch(images: Tensor, texts: list[str]) -> tuple[Tensor, Tensor]:
    """(valid, correct), bool [N] each: the exact judge's verdicts."""
    verdicts = judge(images, list(texts))
    return (torch.tensor([v.valid for v in verdicts], dtype=torch.bool),
            torch.tensor([v.correct for v in verdicts], dtype=torch.bool))


@dataclass(frozen=True)
class Rate:
    """A proportion k/n with its 95% Wilson score interval."""

    k: int
    n: int

    @property
    def p(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        """95% Wilson interval (contains p; stays inside [0, 1] even at 0 or n successes)."""
        return wilson_interval(self.k, self.n)

    def __str__(self) -> str:
        low, high = self.ci
        return f"{100 * self.p:5.1f}% [{100 * low:4.1f}, {100 * high:4.1f}]"


def rate(flags: Tensor) -> Rate:
    return Rate(int(flags.sum()), int(flags.numel()))


def diff_ci(a: Rate, b: Rate) -> tuple[float, float, float]:
    """b − a and its 95% Newcombe (Wilson hybrid) interval for two independent proportions."""
    (la, ha), (lb, hb) = a.ci, b.ci
    d = b.p - a.p
    return d, d - math.sqrt((b.p - lb) ** 2 + (ha - a.p) ** 2), d + math.sqrt((hb - b.p) ** 2 + (a.p - la) ** 2)


def numeracy_by_count(verdicts: list[Verdict], texts: list[str]) -> dict[tuple[int, ...], tuple[Rate, Rate]]:
    """{counts: (valid, correct)} over the numeracy prompts among ``texts``: one-group counts (n,) first, then
    two-group counts (n1, n2), each in increasing order."""
    flags: dict[tuple[int, ...], list[tuple[bool, bool]]] = {}
    for verdict, text in zip(verdicts, texts):
        spec = parse_prompt(text)
        if spec.category == "numeracy":
            flags.setdefault(spec.counts, []).append((verdict.valid, verdict.correct))
    return {count: (rate(torch.tensor([v for v, _ in pairs])), rate(torch.tensor([c for _, c in pairs])))
            for count, pairs in sorted(flags.items(), key=lambda item: (len(item[0]), item[0]))}


def pick_prompts(texts: list[str], n: int, seed: int) -> list[str]:
    """``n`` prompts drawn from ``texts`` (all of them, in turn, before any repeats), reproducibly."""
    g = torch.Generator().manual_seed(seed)
    out: list[str] = []
    while len(out) < n:
        out += [texts[i] for i in torch.randperm(len(texts), generator=g).tolist()]
    return out[:n]


def heldout_set(n: int, seed: int, split: str = "heldout") -> tuple[list[str], list[str], list[int]]:
    """``n`` prompts per category of a held-out ``split`` ("heldout", or its "evaluation" half; all prompts in turn)
    and one seed per image."""
    texts, categories = [], []
    for c, category in enumerate(CATEGORIES):
        texts += pick_prompts(prompts(category, split), n, 7919 + seed + c)
        categories += [category] * n
    return texts, categories, [(seed + 1) * 10_000_000 + i for i in range(len(texts))]


def build_parser() -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work)."""
    parser = CommandParser(prog="python -m rfmi_core.toy.evaluate", description="Held-out valid and correct rates of toy weights, per category.")
    parser.add_argument("weights", nargs="+", help="toy model safetensors files")
    parser.add_argument("--n", type=positive_int, default=200, help="held-out images per category")
    parser.add_argument("--cfg", type=non_negative_float, nargs="+", default=[DEFAULT_CFG], help="guidance scales to evaluate")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="Euler steps")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the held-out prompts and noise")
    parser.add_argument("--reasons", action="store_true", help="also count the judge's reasons for invalid images")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> None:
    import re
    from collections import Counter

    from .model import load_toy_model

    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    texts, categories, seeds = heldout_set(args.n, args.seed)
    for path in args.weights:
        model = load_toy_model(path)
        for cfg in args.cfg:
            images, _ = generate(model, texts, seeds, args.steps, cfg)
            verdicts = judge(images, texts)
            print(f"{path}  CFG {cfg:g}, {args.steps} Euler steps, {args.n} held-out images per category")
            for category in CATEGORIES:
                picked = [v for v, c in zip(verdicts, categories) if c == category]
                valid = rate(torch.tensor([v.valid for v in picked]))
                correct = rate(torch.tensor([v.correct for v in picked]))
                print(f"  {category:9s} valid {valid}   correct {correct}")
            for counts, (valid, correct) in numeracy_by_count(verdicts, texts).items():
                print(f"    numeracy, count {'+'.join(map(str, counts))}: valid {valid}   correct {correct}")
            if args.reasons:
                counts = Counter(re.sub(r"^\d+-px (red |green |blue |yellow )?", "", reason.split(" (")[0])
                                 for v in verdicts for reason in v.details["reasons"])
                print("  invalid because: " + "; ".join(f"{r} ×{k}" for r, k in counts.most_common(8)))


if __name__ == "__main__":
    run_cli(main, "python -m rfmi_core.toy.evaluate")
