"""How exact is the toy judge? Agreement with ground truth on rendered scenes, clean and under pixel noise.

    python -m research.toy.judge_report [--scenes 1000] [--seed 0] [--sigmas 0 0.05 0.1 0.2 0.3 0.4 0.5]

Per category, ``scenes`` prompts drawn from all prompts (both splits) with, in turn, a scene that satisfies the prompt
(half), a scene that satisfies a one-edit contrast prompt (a quarter), or a random scene of 1–4 objects (a quarter);
the truth is ``world.satisfies``. "contrast" renders a scene for a prompt and asks the judge about one of its contrast
prompts (swapped colours, another relation, another count...): the truth is always "incorrect". "invalid" renders
non-scenes (``invalid.INVALID_KINDS`` in turn): the truth is always "invalid". Noise is Gaussian, σ in the [-1, 1]
pixel scale, added without clipping.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from rfmi_core.util.cli_help import CommandParser, run_cli, non_negative_float, non_negative_int, positive_int
from .invalid import INVALID_KINDS, render_invalid
from rfmi_core.toy.judge import judge
from rfmi_core.toy.prompts import CATEGORIES, SPLITS, contrast_prompts, prompt_specs, prompts
from rfmi_core.toy.world import SHAPE_PIXELS, random_scene, render, sample_scene, satisfies

__all__ = ["labelled_scenes", "contrast_scenes", "invalid_scenes", "agreement", "main"]


def _pick(items: list, generator: torch.Generator):
    return items[int(torch.randint(0, len(items), (), generator=generator))]


def labelled_scenes(category: str, n: int, generator: torch.Generator) -> tuple[Tensor, list[str], list[bool]]:
    """(images [n, 3, 16, 16], prompt texts, truth): satisfying, contrast-satisfying and random scenes, 2:1:1."""
    specs = prompt_specs(category, "all")
    images, texts, truth = [], [], []
    for i in range(n):
        spec = _pick(specs, generator)
        if i % 4 == 2:
            scene = sample_scene(_pick(contrast_prompts(spec), generator), generator)
        elif i % 4 == 3:
            scene = random_scene(generator)
        else:
            scene = sample_scene(spec, generator)
        images.append(render(scene, generator))
        texts.append(spec.text)
        truth.append(satisfies(scene, spec))
    return torch.stack(images), texts, truth


def contrast_scenes(category: str, n: int, generator: torch.Generator) -> tuple[Tensor, list[str]]:
    """(images of scenes satisfying a prompt, one of that prompt's contrast prompts each): every truth is False."""
    specs = prompt_specs(category, "all")
    images, texts = [], []
    for _ in range(n):
        spec = _pick(specs, generator)
        images.append(render(sample_scene(spec, generator), generator))
        texts.append(_pick(contrast_prompts(spec), generator).text)
    return torch.stack(images), texts


def invalid_scenes(n: int, generator: torch.Generator) -> tuple[Tensor, list[str]]:
    """(n non-scenes, INVALID_KINDS in turn; their kinds)."""
    kinds = [INVALID_KINDS[i % len(INVALID_KINDS)] for i in range(n)]
    return torch.stack([render_invalid(kind, generator) for kind in kinds]), kinds


def agreement(images: Tensor, texts: list[str], truth_correct: list[bool], truth_valid: bool, sigma: float,
              generator: torch.Generator) -> tuple[float, float]:
    """(share of verdicts whose ``correct`` equals the truth, share whose ``valid`` equals ``truth_valid``) after
    adding N(0, σ²) noise to every pixel."""
    noisy = images + sigma * torch.randn(images.shape, generator=generator) if sigma > 0 else images
    verdicts = judge(noisy, texts)
    correct = sum(v.correct == t for v, t in zip(verdicts, truth_correct)) / len(verdicts)
    valid = sum(v.valid == truth_valid for v in verdicts) / len(verdicts)
    return correct, valid


def _row(label: str, values: list[float]) -> str:
    return f"  {label:<40}" + "".join(f"{100 * v:>8.1f}" for v in values)


def build_parser() -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work)."""
    parser = CommandParser(prog="python -m research.toy.judge_report", description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=positive_int, default=1000, help="scenes per category and per set")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the scenes and the pixel noise")
    parser.add_argument("--sigmas", type=non_negative_float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5],
                        help="standard deviations of the Gaussian pixel noise added before judging")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    print("Toy world: 16×16, " + ", ".join(f"{s} {p} px" for s, p in SHAPE_PIXELS.items())
          + "; prompts " + ", ".join(f"{c} {len(prompts(c, SPLITS[0]))} train / {len(prompts(c, SPLITS[1]))} held-out"
                                     for c in CATEGORIES))
    print(f"\nJudge agreement with ground truth (%), {args.scenes} scenes per set, Gaussian pixel noise σ ([-1, 1] scale)")
    print(f"  {'':<40}" + "".join(f"{'σ=' + format(s, 'g'):>8}" for s in args.sigmas))
    for category in CATEGORIES:
        images, texts, truth = labelled_scenes(category, args.scenes, g)
        scores = [agreement(images, texts, truth, True, s, g) for s in args.sigmas]
        print(_row(f"{category:<9} correct = truth ({100 * sum(truth) / len(truth):.0f}% true)", [c for c, _ in scores]))
        print(_row(f"{'':<9} valid", [v for _, v in scores]))
    for category in CATEGORIES:
        images, texts = contrast_scenes(category, args.scenes, g)
        scores = [agreement(images, texts, [False] * len(texts), True, s, g) for s in args.sigmas]
        print(_row(f"{category:<9} contrast prompt → incorrect", [c for c, _ in scores]))
    images, kinds = invalid_scenes(args.scenes, g)
    scores = [agreement(images, ["one red square"] * len(kinds), [False] * len(kinds), False, s, g) for s in args.sigmas]
    print(_row("invalid   non-scenes → invalid", [v for _, v in scores]))
    print(f"\n{time.perf_counter() - start:.0f} s (seed {args.seed})")


if __name__ == "__main__":
    run_cli(main, "python -m research.toy.judge_report")
