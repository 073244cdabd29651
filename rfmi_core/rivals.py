"""The rivals (counterfactual prompts) of prompts, and the editor's coverage of prompt lists.

    python -m rfmi_core.rivals "a red book and a blue vase"       # each rival with the edit that made it
    python -m rfmi_core.rivals --coverage T2I-CompBench/examples/dataset/   # per file: share with a rival, examples

The editor is ``rfmi_core.counterfactuals``.
"""

from __future__ import annotations

from pathlib import Path

from .util.cli_help import CommandParser, run_cli, non_negative_int
from .text.counterfactuals import counterfactuals, coverage

__all__ = ["main"]

PROG = "python -m rfmi_core.rivals"


def build_parser() -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work)."""
    parser = CommandParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="*", help="prompts to print the rivals of")
    parser.add_argument("--coverage", metavar="PATH", nargs="+",
                        help="prompt files (one prompt a line) or folders of *.txt files: per file, the share of "
                             "prompts with a rival, each edit's reach and examples")
    parser.add_argument("--examples", type=non_negative_int, default=3, help="examples printed per file with --coverage")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.prompt and not args.coverage:
        parser.error("give a prompt, or --coverage FILE_OR_FOLDER")
    if args.examples < 0:
        parser.error(f"--examples must be ≥ 0; got {args.examples}")
    files = []
    for path in map(Path, args.coverage or []):
        if not path.exists():
            parser.error(f"--coverage {path} does not exist")
        files += sorted(p for p in path.glob("*.txt") if not p.stem.lower().startswith(("license", "readme"))) \
            if path.is_dir() else [path]
    for prompt in args.prompt:
        rivals = counterfactuals(prompt)
        print(f"{prompt}: {len(rivals)} rival(s)")
        for rival in rivals:
            print(f"  [{rival.edit}: {rival.detail}] {rival}")
    for path in files:
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        share, reached = coverage(prompts)
        reach = ", ".join(f"{edit} {100 * n / len(prompts):.0f} %" for edit, n in reached.items() if n)
        print(f"{path.name}: {100 * share:.1f} % of {len(prompts)} prompts have a rival ({reach})")
        for prompt in prompts[: args.examples]:
            rivals = counterfactuals(prompt)
            print(f"  {prompt} -> {rivals[0] if rivals else '(none)'}"
                  + (f"  [{rivals[0].edit}]" if rivals else ""))


if __name__ == "__main__":
    run_cli(main, PROG)
