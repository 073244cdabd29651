"""Benchmark results: the per-(task, seed, estimator) CSV (atomic appends), the Markdown table and the heatmap."""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from ..present.plot import new_figure, save_figure

__all__ = ["FIELDS", "read_rows", "append_rows", "summarise", "markdown_table", "heatmap"]

FIELDS = ("task", "dim_x", "dim_y", "true_mi", "estimator", "seed", "estimate", "stderr", "seconds", "n_train",
          "n_test")
MAIN = "rfmi"


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def append_rows(path: str | Path, rows: list[dict]) -> None:
    """Append ``rows`` by rewriting the CSV to a temporary file and renaming it: a crash leaves the old or new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = read_rows(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".csv.tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            for row in existing + rows:
                writer.writerow({key: row.get(key, "") for key in FIELDS})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def done_keys(rows: list[dict]) -> set[tuple[str, int, str]]:
    return {(row["task"], int(row["seed"]), row["estimator"]) for row in rows}


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def summarise(rows: list[dict], task_order: list[str] | None = None) -> dict:
    """{"tasks": [...], "estimators": [...], "truth": {task: MI}, "dims": {...}, "stats": {(task, est): (mean, std, n)}}."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    truth, dims = {}, {}
    for row in rows:
        values[(row["task"], row["estimator"])].append(float(row["estimate"]))
        truth[row["task"]] = float(row["true_mi"])
        dims[row["task"]] = f"{row['dim_x']}×{row['dim_y']}"
    order = {name: i for i, name in enumerate(task_order or [])}
    tasks = sorted(truth, key=lambda name: (order.get(name, len(order)), name))
    estimators = sorted({est for _, est in values}, key=lambda e: (e != MAIN, e.startswith(MAIN) is False, e))
    stats = {key: (*_mean_std(v), len(v)) for key, v in values.items()}
    return {"tasks": tasks, "estimators": estimators, "truth": truth, "dims": dims, "stats": stats}


def ranking(summary: dict, task: str, compared: list[str]) -> list[tuple[float, str]]:
    """(abs error of the seed mean, estimator), best first, over ``compared`` estimators that ran on ``task``."""
    truth = summary["truth"][task]
    errors = [(abs(summary["stats"][(task, e)][0] - truth), e) for e in compared if (task, e) in summary["stats"]]
    return sorted(errors)


def markdown_table(summary: dict, main: str = MAIN, variants: tuple[str, ...] = ("rfmi-sq", "rfmi-dot", "rfmi-std")) -> str:
    """True MI, each estimator's mean ± std over seeds, RFMI's rank by |error| (variants of RFMI not competing)."""
    estimators = summary["estimators"]
    compared = [e for e in estimators if e not in variants]
    header = ["#", "task", "X×Y", "true MI", *estimators, f"{main} rank"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    wins = within = total = 0
    abs_errors: dict[str, list[float]] = defaultdict(list)
    for i, task in enumerate(summary["tasks"]):
        cells = [str(i), task, summary["dims"][task], f"{summary['truth'][task]:.3f}"]
        ranked = ranking(summary, task, compared)
        best = ranked[0][1] if ranked else None
        for est in estimators:
            if (task, est) not in summary["stats"]:
                cells.append("—")
                continue
            mean, std, n = summary["stats"][(task, est)]
            abs_errors[est].append(abs(mean - summary["truth"][task]))
            text = f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"
            cells.append(f"**{text}**" if est == best else text)
        names = [e for _, e in ranked]
        if main in names:
            rank = names.index(main) + 1
            cells.append(f"{rank}/{len(names)}")
            total += 1
            wins += rank == 1
            within += ranked[rank - 1][0] <= 0.05
        else:
            cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    mae = ", ".join(f"{e} {sum(v) / len(v):.3f} ({len(v)})" for e, v in abs_errors.items())
    lines += ["", f"**{main} has the smallest |error| on {wins} of {total} tasks**; within 0.05 nats on {within} of "
              f"{total}. Bold: smallest |error| among {', '.join(compared)}.", "",
              f"Mean |error| (nats; tasks run): {mae}."]
    return "\n".join(lines) + "\n"


def heatmap(summary: dict, path: str | Path) -> str:
    """Figure-1-style PNG: estimators × tasks, the seed-mean estimate written in, coloured by relative bias
    (estimate − truth)/truth clipped to ±1. Returns a note (empty when written)."""
    try:
        fig = new_figure(1.0 + 0.42 * len(summary["tasks"]), 1.6 + 0.42 * len(summary["estimators"]), dpi=150,
                         layout=None)
    except ImportError as error:
        return f"{error}: heatmap skipped"
    tasks, estimators = summary["tasks"], summary["estimators"]
    bias = [[math.nan] * len(tasks) for _ in estimators]
    ax = fig.add_subplot()
    for r, est in enumerate(estimators):
        for c, task in enumerate(tasks):
            if (task, est) in summary["stats"]:
                mean, truth = summary["stats"][(task, est)][0], summary["truth"][task]
                bias[r][c] = max(-1.0, min(1.0, (mean - truth) / truth))
                ax.text(c, r, f"{mean:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(bias[r][c]) > 0.6 else "black")
    image = ax.imshow(bias, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    truth_row = [f"{summary['truth'][t]:.2f}" for t in tasks]
    ax.set_xticks(range(len(tasks)), [f"{t} ({m})" for t, m in zip(tasks, truth_row)], rotation=90, fontsize=6)
    ax.set_yticks(range(len(estimators)), estimators, fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.02, label="relative bias (estimate − MI)/MI")
    ax.set_title("Czyż et al. 2023 tasks: seed-mean estimate (nats);\ntrue MI in the labels", fontsize=8)
    save_figure(fig, str(path))
    return ""
