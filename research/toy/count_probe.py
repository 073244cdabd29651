"""Which noise levels carry a toy prompt's count, and does a count contrast rank numeracy candidates?

    python -m research.toy.count_probe [--prompts 32] [--m 8] [--draws 4] [--seed 0] [--smoke]

Candidates as the selection study samples them (held-out prompts, CFG 3, 20 Euler steps), judged. For each noise
level t of a fixed grid, K = ``--draws`` noises ε shared by a prompt's candidates (common random numbers) give each
candidate the I-MMSE integrand at t (``pointwise.denoising_gain``, its t/(1 − t) weight dropped: it is the same for
every candidate at one t and cannot change a ranking):

    pmi(t)        = E_ε[‖u* − u(x_t|∅)‖² − ‖u* − u(x_t|y)‖²]                      (the point-wise MI's integrand)
    count(t)      = min over count rivals y′ of E_ε[‖u* − u(x_t|y′)‖² − ‖u* − u(x_t|y)‖²]
    attribute(t)  = the same over the rivals that change a colour or a shape, the counts kept

(rivals: ``prompts.contrast_prompts``; a count rival keeps the objects and changes a count). Prints, per category and
t, the within-prompt AUROC of each integrand (correct against wrong candidates, 95% bootstrap interval over prompts):
the noise levels where a score can tell the candidates apart.
"""

from __future__ import annotations

import time

import torch

from rfmi_core.mi.pointwise import denoising_gain
from rfmi_core.present.statistics import bootstrap_interval
from rfmi_core.toy.evaluate import generate, judge_batch, pick_prompts
from rfmi_core.toy.exact import _toy_velocities
from rfmi_core.toy.model import load_toy_model
from rfmi_core.toy.prompts import CATEGORIES, contrast_prompts, parse_prompt, prompts, tokenize_batch
from rfmi_core.util.cli_help import CommandParser, non_negative_int, positive_int, run_cli
from research.toy.selection_study import auroc_by_group

PROG = "python -m research.toy.count_probe"
T_GRID = (0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95)
INTEGRANDS = ("pmi", "count", "attribute")


def rival_kinds(text: str) -> tuple[list[str], list[str]]:
    """(count rivals, attribute rivals) of a prompt: the one-edit rivals that change only a count, and the others
    that keep the counts (a spatial prompt's relation rivals count as attribute rivals; binding has no count)."""
    spec = parse_prompt(text)
    count, attribute = [], []
    for rival in contrast_prompts(spec):
        (count if rival.objects == spec.objects and rival.counts != spec.counts else attribute).append(rival.text)
    return count, attribute


def integrands(model, images: torch.Tensor, text: str, draws: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``INTEGRANDS`` of each of a prompt's candidates [M, ...] at every t of ``T_GRID``: name → [M, len(T_GRID)]."""
    count, attribute = rival_kinds(text)
    m = images.shape[0]
    conditions = [None, tokenize_batch([text] * m)] + [tokenize_batch([r] * m) for r in count + attribute]
    velocities = _toy_velocities(model, conditions, m, None)
    out = {name: torch.zeros(m, len(T_GRID)) for name in INTEGRANDS}
    for j, t_value in enumerate(T_GRID):
        noise = torch.randn((draws, *images.shape[1:]), generator=generator)
        eps = noise.repeat_interleave(m, dim=0)  # draw k of every candidate shares one ε
        x1 = images.repeat(draws, 1, 1, 1)
        t = torch.full((x1.shape[0],), t_value)
        x_t = t.view(-1, 1, 1, 1) * x1 + (1 - t.view(-1, 1, 1, 1)) * eps
        with torch.no_grad():
            u = velocities(x_t, t)
        target = x1 - eps
        gain = [denoising_gain(u[1], u_c, target).view(draws, m).mean(dim=0) for u_c in u]  # y against each c
        out["pmi"][:, j] = gain[0]
        rivals = gain[2:]
        for name, part in (("count", rivals[:len(count)]), ("attribute", rivals[len(count):])):
            out[name][:, j] = torch.stack(part).min(dim=0).values if part else float("nan")
    return out


def build_parser() -> CommandParser:
    parser = CommandParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=positive_int, default=32, help="held-out prompts per category")
    parser.add_argument("--m", type=positive_int, default=8, help="candidates per prompt")
    parser.add_argument("--draws", type=positive_int, default=4, help="noises per prompt and t")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds prompts, candidates and noise")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run (2 prompts, M = 4, 1 draw)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.prompts, args.m, args.draws = 2, 4, 1
    torch.set_num_threads(1)
    model = load_toy_model(None)
    texts, groups, cats = [], [], []
    for c, category in enumerate(CATEGORIES):
        for p, text in enumerate(pick_prompts(prompts(category, "heldout"), args.prompts, args.seed + c)):
            texts += [text] * args.m
            groups += [c * args.prompts + p] * args.m
            cats += [category] * args.m
    groups = torch.tensor(groups)
    clock = time.perf_counter()
    images, _ = generate(model, texts, [args.seed * 1_000_000 + 17 + i for i in range(len(texts))])
    _, correct = judge_batch(images, texts)
    values = {name: torch.full((len(texts), len(T_GRID)), float("nan")) for name in INTEGRANDS}
    generator = torch.Generator().manual_seed(args.seed)
    for g in groups.unique().tolist():
        members = torch.nonzero(groups == g).flatten()
        for name, value in integrands(model, images[members], texts[members[0]], args.draws, generator).items():
            values[name][members] = value
    print(f"{len(texts)} candidates ({args.prompts} held-out prompts per category × M = {args.m}, seed "
          f"{args.seed}), {args.draws} common noises per prompt and t, {time.perf_counter() - clock:.0f} s; "
          "within-prompt AUROC of each integrand at t (95% bootstrap interval over prompts)\n")
    print("| category | integrand | " + " | ".join(f"t = {t:g}" for t in T_GRID) + " |")
    print("|---|---|" + "---|" * len(T_GRID))
    for category in CATEGORIES:
        mask = torch.tensor([c == category for c in cats])
        share = correct[mask].float().mean()
        for name in INTEGRANDS:
            if torch.isnan(values[name][mask]).all():
                continue
            cells = []
            for j in range(len(T_GRID)):
                auc, _ = auroc_by_group(values[name][mask, j], correct[mask], groups[mask])
                if len(auc) == 0:
                    cells.append("–")
                    continue
                low, high = bootstrap_interval(auc.numpy(), seed=args.seed)
                cells.append(f"{auc.mean():.2f} [{low:.2f}, {high:.2f}]")
            print(f"| {category} ({100 * share:.0f}% correct) | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run_cli(main, PROG)
