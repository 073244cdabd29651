"""Which scores pick the correct candidate? Top-1 accuracy and within-prompt AUROC of every MI score the core offers,
and of model-only alternatives, against the exact judge, on the toy world.

    python -m research.toy.selection_study [--weights A B ...] [--cfgs 3] [--steps 20] [--m 8] [--prompts 32]
                                               [--figures DIR]

For each condition (weights × CFG scale × Euler steps), ``--prompts`` prompts per category of ``--split`` (default: the
held-out compositions, never trained on: the paper's regime) get M candidates each
(CFG Euler sampling, MI read along the trajectory). Scores (higher = "more aligned"):

- trajectory (Algorithm 2, free): ``rfmi-cfg`` (the paper's default: Riemann sum, CFG velocity), ``rfmi-cond``
  (u_y instead of u_cfg: u_y·δ = u_cfg·(u_cfg − u_∅)/w + (1 − w)·‖δ‖², δ = u_y − u_∅, from the same trace),
  ``mitune-cfg`` (the reference code's truncated mean), ``squared`` (Σ t/(1−t)·‖δ‖²Δt), and normalisations:
  ``rfmi/squared`` (the score per unit of prompt influence) and ``rfmi/ink`` (per coloured pixel, a diagnostic of the
  ink confound: ink = pixels the judge's colour rule calls non-background);
- fresh noise on the final image (Prop. 3.3, ``estimate_mi``, ``--n-t`` draws, CFG velocity): ``fresh-mi``;
- contrast against other prompts (a diffusion-classifier score; no auxiliary model, the generator alone): on shared
  draws (t stratified uniform, ε), the flow-matching loss of the image under each one-edit contrast prompt
  (``prompts.contrast_prompts``: swapped colours, other relation, other count, ...) minus its loss under its own
  prompt; ``contrast-min`` is the smallest margin, ``contrast-mean`` the mean.
- phrase MI read along the same trajectories (``evaluate.generate_with_phrase_mi``; one more velocity per phrase per
  step, y∖p = the prompt without phrase p, a trained conditional): ``phrase-min`` (the weakest phrase's
  i(x; p | y∖p)) and ``phrase-mean`` (``rfmi_core.phrase_mi``);
- exact per-image scores (``--exact``, ``rfmi_core.pointwise`` by ``toy.exact.condition_scores``: ``--n-t`` draws,
  t_ε = 0.6, one pass on shared draws for ∅, y, every y∖p and every rival): ``pmi`` (the exact i(x; y),
  conditional velocity), ``pmi-cfg`` (the CFG velocity in its place), ``pmi-common`` (the candidates of a prompt on
  common draws), ``phrase-pmi-min`` (the weakest phrase's exact log p(x|y) − log p(x|y∖p)), ``contrast-grammar``
  and ``posterior-grammar`` (the smallest log p(x|y) − log p(x|y′) over the toy grammar's one-edit rivals, and
  p(y | x) among them: the upper bound of an editor), ``contrast-editor`` and ``posterior-editor`` (the same with
  the generic English editor's rivals, ``rfmi_core.counterfactuals``, those the toy vocabulary can encode; ``pmi``
  where none); ``pmi-trajectory`` (the I-MMSE integrand along the sampler's own path with
  u*_i = (x_final − x_i)/(1 − t_i): free, but not the image's exact MI);
- ``random``: a random pick (the baseline; its expected top-1 accuracy is the share of correct candidates).

Top-1: the share of prompts whose highest-scoring candidate is correct, against the random pick's expectation, with
a 95% bootstrap interval over prompts for the difference. AUROC: per prompt with both correct and wrong candidates,
P(score of a correct one > score of a wrong one), averaged over prompts (0.5 = chance), bootstrap 95% interval.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rfmi_core.mi.estimate import estimate_mi
from rfmi_core.mi.sampler import sample_with_mi
from rfmi_core.mi.trajectory import MIResult

from ..path_immse import PathImmse
from rfmi_core.util.cli_help import CommandParser, run_cli, non_negative_float, non_negative_int, positive_int
from rfmi_core.mi.conventions import straight_path
from rfmi_core.present.plot import save_figure
from rfmi_core.present.statistics import auroc, bootstrap_interval, spearman
from rfmi_core.util.progress import progress_bar
from rfmi_core.finetune.select import top_k
from rfmi_core.toy.evaluate import (DEFAULT_CFG, DEFAULT_STEPS, generate, generate_with_phrase_mi, judge_batch, noise_for,
                       pick_prompts, sigma_grid, velocity_fn)
from rfmi_core.toy.exact import condition_scores, toy_rivals
from rfmi_core.toy.judge import classify_pixels
from rfmi_core.toy.pictures import mi_histogram_figure
from rfmi_core.toy.prompts import (CATEGORIES, SPLITS, contrast_prompts, parse_prompt, prompt_phrases, prompts, tokenize_batch,
                      without_phrases)
from .train_model import load_toy_model

__all__ = ["trajectory_scores", "fresh_mi", "contrast_scores", "auroc_by_group", "top1_by_group", "figure_name", "study",
           "main"]


def trajectory_scores(result, cfg: float, images: Tensor) -> dict[str, Tensor]:
    """The free scores of one MIResult read with the CFG velocity (see the module docstring)."""
    rfmi, squared = result.mi_of("rfmi"), result.mi_of("squared")
    cond_trace = result.trace / cfg + (1 - cfg) * result.trace_squared
    ink = (classify_pixels(images) > 0).flatten(1).sum(1).float()
    return {"rfmi-cfg": rfmi, "rfmi-cond": (cond_trace * result.dt).sum(1), "mitune-cfg": result.mi_of("mitune"),
            "squared": squared, "rfmi/squared": rfmi / squared.clamp(min=1e-6), "rfmi/ink": rfmi / ink.clamp(min=1),
            "ink": ink}


@torch.no_grad()
def fresh_mi(model: nn.Module, images: Tensor, texts: list[str], cfg: float, n_t: int, seed: int,
             batch: int = 128) -> Tensor:
    """``estimate_mi`` (Prop. 3.3) of each final image with its prompt, CFG velocity, ``n_t`` draws."""
    out = []
    g = torch.Generator().manual_seed(seed)
    for start in progress_bar(range(0, len(texts), batch), desc="fresh-noise MI"):
        tokens = tokenize_batch(texts[start:start + batch])
        out.append(estimate_mi(velocity_fn(model), images[start:start + batch], tokens, None, n_t=n_t, generator=g,
                               mi_velocity="cfg", cfg=cfg))
    return torch.cat(out)


@torch.no_grad()
def contrast_scores(model: nn.Module, images: Tensor, texts: list[str], n_t: int, seed: int,
                    batch: int = 32) -> dict[str, Tensor]:
    """Diffusion-classifier margins: loss(contrast prompt) − loss(own prompt), min and mean over contrast prompts.

    Loss: ‖u(x_t|y) − (x1 − ε)‖² summed over pixels, averaged over ``n_t`` shared draws (t stratified in (0, 1)).
    """
    g = torch.Generator().manual_seed(seed)
    mins, means = [], []
    for start in progress_bar(range(0, len(texts), batch), desc="contrast scores"):
        x1 = images[start:start + batch].float()
        own = texts[start:start + batch]
        rivals = [[s.text for s in contrast_prompts(parse_prompt(t))] for t in own]
        b = x1.shape[0]
        t = ((torch.arange(n_t)[:, None] + torch.rand(n_t, b, generator=g)) / n_t).clamp(0.01, 0.99)  # [n_t, b]
        eps = torch.randn(n_t, *x1.shape, generator=g)
        x_t, target = straight_path(x1.expand(n_t, *x1.shape), eps, t)  # [n_t, b, 3, H, W]

        def loss(prompt_texts: list[str]) -> Tensor:  # [b]: mean over draws of the summed squared error
            tokens = tokenize_batch(prompt_texts).repeat(n_t, 1)
            u = model(x_t.flatten(0, 1), t.flatten(), tokens).reshape(n_t, b, *x1.shape[1:])
            return (u - target).square().flatten(2).sum(2).mean(0)

        own_loss = loss(own)
        width = max(len(r) for r in rivals)
        margins = torch.full((b, width), float("nan"))
        for j in range(width):
            column = [r[j] if j < len(r) else r[0] for r in rivals]
            margins[:, j] = loss(column) - own_loss
        for i, r in enumerate(rivals):
            margins[i, len(r):] = float("nan")
        mins.append(torch.stack([m[~m.isnan()].min() for m in margins]))
        means.append(torch.stack([m[~m.isnan()].mean() for m in margins]))
    return {"contrast-min": torch.cat(mins), "contrast-mean": torch.cat(means)}


@torch.no_grad()
def generate_with_trajectory_pmi(model: nn.Module, texts: list[str], seeds: list[int], steps: int, cfg: float,
                                 batch: int = 256) -> tuple[Tensor, MIResult, Tensor]:
    """``evaluate.generate``'s samples and MI (the same Euler loop: the same images) and the I-MMSE integrand along
    each path (``research.path_immse``)."""
    images, results, scores = [], [], []
    for start in progress_bar(range(0, len(texts), batch), desc="candidates"):
        path = PathImmse()
        x, result = sample_with_mi(velocity_fn(model), noise_for(seeds[start:start + batch]), sigma_grid(steps),
                                   tokenize_batch(texts[start:start + batch]), None, cfg=cfg, observers=[path])
        images.append(x)
        results.append(result)
        scores.append(path.score(x))
    return torch.cat(images), MIResult.concat(results), torch.cat(scores)


def exact_scores(model: nn.Module, images: Tensor, texts: list[str], groups: Tensor, cfg: float, n_t: int,
                 seed: int) -> tuple[dict[str, Tensor], float]:
    """The exact scores of the module docstring, and the share of candidates whose prompt the editor reaches."""
    phrases = [[without_phrases(t, [p]) for p in range(len(prompt_phrases(t)))] for t in texts]
    grammar = [[s.text for s in contrast_prompts(parse_prompt(t))] for t in texts]
    editor = [toy_rivals(t) for t in texts]
    rivals = [a + b + c for a, b, c in zip(phrases, grammar, editor)]
    main = condition_scores(model, images, texts, rivals, n_t=n_t, seed=seed, progress=True)
    out = {"pmi": main.pmi}
    posterior_of = lambda margins: 1 / (1 + torch.exp(-margins).sum())  # noqa: E731  p(y|x) among y and these
    spans = [((0, len(a)), (len(a), len(a) + len(b)), (len(a) + len(b), len(a) + len(b) + len(c)))
             for a, b, c in zip(phrases, grammar, editor)]
    for name, which in (("phrase-pmi-min", 0), ("contrast-grammar", 1), ("contrast-editor", 2)):
        parts = [main.margins[i][spans[i][which][0]:spans[i][which][1]] for i in range(len(texts))]
        out[name] = torch.stack([m.min() if len(m) else main.pmi[i] for i, m in enumerate(parts)])
        if which:
            out["posterior-" + name.split("-")[1]] = torch.stack(
                [posterior_of(m) if len(m) else torch.tensor(1.0) for m in parts])
    out["pmi-cfg"] = condition_scores(model, images, texts, None, n_t=n_t, seed=seed + 1, cfg=cfg, progress=True).pmi
    out["pmi-common"] = condition_scores(model, images, texts, None, n_t=n_t, seed=seed + 2, groups=groups,
                                         progress=True).pmi
    return out, sum(bool(e) for e in editor) / len(texts)


def auroc_by_group(score: Tensor, correct: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
    """(per-prompt AUROC for prompts with both outcomes, their group ids)."""
    values, ids = [], []
    for g in groups.unique().tolist():
        m = groups == g
        pos, neg = score[m & correct], score[m & ~correct]
        if len(pos) and len(neg):
            values.append(auroc(pos.numpy(), neg.numpy()))
            ids.append(g)
    return torch.tensor(values), torch.tensor(ids)


def top1_by_group(score: Tensor, correct: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
    """(per prompt: whether the top-1 by score is correct, the random pick's expected accuracy)."""
    hits, chance = [], []
    for g in groups.unique().tolist():
        members = torch.nonzero(groups == g).flatten()
        hits.append(float(correct[members[top_k(score[members], 1)[0]]]))
        chance.append(float(correct[members].float().mean()))
    return torch.tensor(hits), torch.tensor(chance)


def _bootstrap(values: Tensor, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the mean over prompts."""
    return bootstrap_interval(values.numpy(), resamples=reps, seed=seed)


@dataclass
class Condition:
    weights: str
    cfg: float
    steps: int
    m: int


def spearman_within(score: Tensor, other: Tensor, groups: Tensor) -> float:
    """Mean over prompts of the rank correlation between two scores among the prompt's candidates."""
    rho = [spearman(score[groups == g].numpy(), other[groups == g].numpy()) for g in groups.unique().tolist()]
    rho = [r for r in rho if r == r]
    return sum(rho) / len(rho) if rho else float("nan")


def figure_name(condition: Condition) -> str:
    """The histogram's file name for one condition: mi_histogram_<weights>_cfg<cfg>_steps<steps>.png."""
    weights = os.path.splitext(os.path.basename(condition.weights or "toy_rf.safetensors"))[0]
    return f"mi_histogram_{weights}_cfg{condition.cfg:g}_steps{condition.steps}.png"


def phrase_scores(phrase_mi: list[Tensor]) -> dict[str, Tensor]:
    """``phrase-min`` and ``phrase-mean`` of each candidate's phrase MI [P_i] (prompts may differ in P)."""
    return {"phrase-min": torch.stack([p.min() for p in phrase_mi]),
            "phrase-mean": torch.stack([p.mean() for p in phrase_mi])}


def study(condition: Condition, prompts_per_category: int, n_t: int, seed: int, fresh: bool, contrast: bool,
          m_values: list[int], say=print, figures: str | None = None, phrases: bool = True,
          split: str = "heldout", exact: bool = False) -> list[str]:
    """Runs one condition; returns its markdown section. With ``figures`` (a folder), also writes the histogram of
    the paper's default score (rfmi-cfg) of correct vs wrong candidates per category there (``figure_name``)."""
    model = load_toy_model(condition.weights)
    texts, groups, cats = [], [], []
    for c, category in enumerate(CATEGORIES):
        for p, text in enumerate(pick_prompts(prompts(category, split), prompts_per_category, seed + c)):
            texts += [text] * condition.m
            groups += [c * prompts_per_category + p] * condition.m
            cats += [category] * condition.m
    groups = torch.tensor(groups)
    seeds = [seed * 1_000_000 + 17 + i for i in range(len(texts))]
    clock = time.perf_counter()
    trajectory_pmi = None
    if phrases:
        images, result, phrase_mi = generate_with_phrase_mi(model, texts, seeds, condition.steps, condition.cfg,
                                                            progress=True)
    elif exact:
        images, result, trajectory_pmi = generate_with_trajectory_pmi(model, texts, seeds, condition.steps,
                                                                      condition.cfg)
    else:
        images, result = generate(model, texts, seeds, condition.steps, condition.cfg, progress=True,
                                  desc="candidates")
    valid, correct = judge_batch(images, texts)
    scores = trajectory_scores(result, condition.cfg, images)
    if phrases:
        scores.update(phrase_scores(phrase_mi))
    ink = scores.pop("ink")
    if fresh:
        scores["fresh-mi"] = fresh_mi(model, images, texts, condition.cfg, n_t, seed)
    if contrast:
        scores.update(contrast_scores(model, images, texts, n_t, seed))
    editor_share = None
    if exact:
        found, editor_share = exact_scores(model, images, texts, groups, condition.cfg, n_t, seed)
        scores.update(found)
        if trajectory_pmi is not None:
            scores["pmi-trajectory"] = trajectory_pmi
    scores["random"] = torch.rand(len(texts), generator=torch.Generator().manual_seed(seed + 99))
    seconds = time.perf_counter() - clock
    name = os.path.basename(condition.weights or "toy_rf.safetensors")
    lines = [f"### {name}, CFG {condition.cfg:g}, {condition.steps} Euler steps, M = {condition.m}, "
             f"{prompts_per_category} {split} prompts per category ({seconds:.0f} s)", ""]
    if editor_share is not None:
        lines += [f"The generic editor reaches {100 * editor_share:.1f} % of the candidates' prompts (with a rival the "
                  "toy vocabulary encodes); the others fall back to pmi.", ""]
    if figures:
        path = save_figure(mi_histogram_figure(
            {category: {"correct": scores["rfmi-cfg"][mask & correct], "wrong": scores["rfmi-cfg"][mask & ~correct]}
             for category in CATEGORIES for mask in [torch.tensor([c == category for c in cats])]},
            f"rfmi-cfg of {len(texts)} candidates, correct vs wrong by the judge ({name}, CFG {condition.cfg:g}, "
            f"{condition.steps} steps)"), os.path.join(figures, figure_name(condition)))
        lines += [f"MI histogram: `{path}`", ""]
    for category in ("all", *CATEGORIES):
        mask = torch.ones(len(texts), dtype=torch.bool) if category == "all" else torch.tensor(
            [c == category for c in cats])
        sub_groups = groups[mask]
        n_mixed = len(auroc_by_group(scores["random"][mask], correct[mask], sub_groups)[0])
        lines += [f"**{category}**: candidates valid {100 * valid[mask].float().mean():.1f}%, correct "
                  f"{100 * correct[mask].float().mean():.1f}%; {n_mixed} of {len(sub_groups.unique())} prompts have "
                  f"both correct and wrong candidates", "",
                  "| score | top-1 correct | random pick | top-1 − random [95% CI] | within-prompt AUROC [95% CI] | "
                  "AUROC for valid | rank corr. with ink |", "|---|---|---|---|---|---|---|"]
        for score_name, score in scores.items():
            hits, chance = top1_by_group(score[mask], correct[mask], sub_groups)
            lo, hi = _bootstrap(hits - chance)
            auc, _ = auroc_by_group(score[mask], correct[mask], sub_groups)
            alo, ahi = _bootstrap(auc)
            lines.append(f"| {score_name} | {100 * hits.mean():.1f}% | {100 * chance.mean():.1f}% | "
                         f"{100 * (hits - chance).mean():+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | "
                         f"{auc.mean():.3f} [{alo:.3f}, {ahi:.3f}] | "
                         f"{auroc_by_group(score[mask], valid[mask], sub_groups)[0].mean():.3f} | "
                         f"{spearman_within(score[mask], ink[mask], sub_groups):+.2f} |")
        lines.append("")
    if m_values:
        lines += ["Top-1 correct (all categories) against M (the first M candidates of each prompt):", "",
                  "| score | " + " | ".join(f"M = {m}" for m in m_values) + " |", "|---|" + "---|" * len(m_values)]
        position = torch.arange(len(texts)) % condition.m
        for score_name, score in scores.items():
            cells = []
            for m in m_values:
                keep = position < m
                hits, chance = top1_by_group(score[keep], correct[keep], groups[keep])
                cells.append(f"{100 * hits.mean():.1f}% (random {100 * chance.mean():.1f}%)")
            lines.append(f"| {score_name} | " + " | ".join(cells) + " |")
        lines.append("")
    say("\n".join(lines))
    return lines


def build_parser() -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work)."""
    parser = CommandParser(prog="python -m research.toy.selection_study", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=[None], help="toy model files (default: the shipped one)")
    parser.add_argument("--cfgs", type=non_negative_float, nargs="+", default=[DEFAULT_CFG], help="guidance scales to study")
    parser.add_argument("--steps", type=positive_int, nargs="+", default=[DEFAULT_STEPS], help="Euler step counts to study")
    parser.add_argument("--m", type=positive_int, default=8, help="candidates per prompt")
    parser.add_argument("--m-values", type=positive_int, nargs="*", default=None, help="top-1 against M (≤ --m; default: 2, 4, 8, 16, 32 up to --m)")
    parser.add_argument("--prompts", type=positive_int, default=32,
                        help="prompts per category (the split's prompts in turn; a repeat gets new seeds)")
    parser.add_argument("--split", default="heldout", choices=SPLITS,
                        help="prompt split: heldout = compositions the model never trained on (the paper's regime)")
    parser.add_argument("--n-t", type=positive_int, default=8, help="draws for fresh-noise MI and contrast scores")
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh-noise MI re-estimate")
    parser.add_argument("--no-contrast", action="store_true", help="skip the prompt-contrast scores")
    parser.add_argument("--no-phrases", action="store_true", help="skip the phrase-MI scores (phrase-min, phrase-mean)")
    parser.add_argument("--exact", action="store_true",
                        help="add the exact per-image scores (pmi, contrasts, posteriors; with --no-phrases also "
                             "pmi-trajectory)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the prompts and candidates")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (1: robust on a shared CPU)")
    parser.add_argument("--out", default=None, help="append the markdown to this file")
    parser.add_argument("--figures", default=None, metavar="DIR",
                        help="also write each condition's MI histogram (correct vs wrong, per category) as a PNG here")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    m_values = args.m_values if args.m_values is not None else [m for m in (2, 4, 8, 16, 32) if m <= args.m]
    if any(m > args.m for m in m_values):
        parser.error(f"--m-values must not exceed --m ({args.m}); got {m_values}")
    for weights in args.weights:
        for cfg in args.cfgs:
            for steps in args.steps:
                lines = study(Condition(weights, cfg, steps, args.m), args.prompts, args.n_t, args.seed,
                              not args.no_fresh, not args.no_contrast, m_values, figures=args.figures,
                              phrases=not args.no_phrases, split=args.split, exact=args.exact)
                if args.out:
                    with open(args.out, "a") as handle:
                        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_cli(main, "python -m research.toy.selection_study")
