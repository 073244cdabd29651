"""A prompt list of the toy world, one prompt a line, for ``python -m rfmi_core.build_set --model toy``.

    python -m rfmi_core.toy.prompt_list [--per-category 8] [--split finetune] [--seed 0] [--out FILE]

``--per-category`` distinct prompts of each category (binding, spatial, numeracy; all of them where the split has
fewer: the ``finetune`` half holds 6 binding, 24 spatial and 18 numeracy prompts) drawn reproducibly from one split
of the toy grammar (``prompts.SPLITS``): ``finetune`` by default, the held-out half that the base model never trained on and
that ``python -m rfmi_core.toy.compare`` does not evaluate on (it uses the ``evaluation`` half), as the demo's
fine-tuning prompts. Written to ``--out`` in one piece (atomic), or to standard output.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

from ..util.atomic import write_bytes_atomic
from ..util.cli_help import CommandParser, non_negative_int, positive_int, run_cli
from .evaluate import pick_prompts
from .prompts import CATEGORIES, SPLITS, parse_prompt, prompts

__all__ = ["prompt_list", "main"]

PROG = "python -m rfmi_core.toy.prompt_list"


def prompt_list(per_category: int, split: str = "finetune", seed: int = 0) -> list[str]:
    """``per_category`` distinct prompts of each category of ``split`` (all of them where it has fewer): a set
    holds each prompt's top k once, so a repeated line would add nothing."""
    out: list[str] = []
    for c, category in enumerate(CATEGORIES):
        texts = prompts(category, split)
        out += pick_prompts(texts, min(per_category, len(texts)), seed + c)
    return out


def build_parser() -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work)."""
    parser = CommandParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=positive_int, default=8, help="prompts of each category")
    parser.add_argument("--split", choices=SPLITS, default="finetune", help="which prompts of the toy grammar")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the draw")
    parser.add_argument("--out", default=None, help="a text file to write (default: standard output)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    lines = prompt_list(args.per_category, args.split, args.seed)
    text = "".join(line + "\n" for line in lines)
    if args.out is None:
        sys.stdout.write(text)
    else:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        write_bytes_atomic(args.out, text.encode("utf-8"))
        by_category = Counter(parse_prompt(t).category for t in lines)
        counts = ", ".join(f"{by_category[c]} {c}" for c in CATEGORIES)
        print(f"wrote {len(lines)} prompts ({counts}; {args.split} split) to {args.out}")


if __name__ == "__main__":
    run_cli(main, PROG)
