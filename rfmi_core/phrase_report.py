"""python -m rfmi_core.phrase_report [DIR]: how the phrase splitter (rfmi_core.phrases.split_prompt) cuts a folder of
prompt lists (CATEGORY_*.txt, one prompt a line, e.g. T2I-CompBench's): prompts by phrase count per category, with
and without spatial relations split out, as a markdown table."""

from __future__ import annotations

from pathlib import Path

from .util.cli_help import CommandParser, UsageError, run_cli
from .text.phrases import phrase_counts


def prompt_lists(folder: Path) -> dict[str, list[str]]:
    """{category: prompts} from folder/CATEGORY_*.txt (train and val lists of a category are joined)."""
    categories: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*_*.txt")):
        category = path.stem.rsplit("_", 1)[0]
        categories.setdefault(category, []).extend(line.strip() for line in path.read_text().splitlines() if line.strip())
    return categories


def phrase_count_table(categories: dict[str, list[str]], relations: bool) -> list[str]:
    """Markdown lines: per category, prompts split into 1 … 5 and ≥ 6 phrases, and the mean phrase count."""
    lines = ["| category | prompts | " + " | ".join(f"{k} phr." for k in range(1, 6)) + " | ≥6 phr. | mean |",
             "|---|---:|" + "---:|" * 7]
    for category, prompts in categories.items():
        counts = phrase_counts(prompts, relations)
        mean = sum(k * v for k, v in counts.items()) / len(prompts)
        more = sum(v for k, v in counts.items() if k >= 6)
        cells = " | ".join(str(counts.get(k, 0)) for k in range(1, 6)) + f" | {more}"
        lines.append(f"| {category} | {len(prompts)} | {cells} | {mean:.2f} |")
    return lines


def build_parser() -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work)."""
    parser = CommandParser(prog="python -m rfmi_core.phrase_report", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder of CATEGORY_*.txt prompt lists (T2I-CompBench's examples/dataset)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    categories = prompt_lists(Path(args.folder))
    if not categories:
        raise UsageError(f"no prompt lists (CATEGORY_*.txt) in {args.folder}: give the folder that holds them")
    for relations in (False, True):
        print(f"\nrelations={relations}: prompts by number of phrases (train + val)")
        print("\n".join(phrase_count_table(categories, relations)))
    return 0


if __name__ == "__main__":
    run_cli(main, "python -m rfmi_core.phrase_report")
