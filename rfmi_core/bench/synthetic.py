"""RFMI on the Czyż et al. 2023 synthetic MI benchmark, against DoE, KSG, CCA, MINE, InfoNCE, NWJ and D–V.

    python -m rfmi_core.bench.synthetic --quick                 # CPU, ≤ 15 min: 9 tasks (2 without bmi), N = 20k/5k
    python -m rfmi_core.bench.synthetic --full --device cuda    # all 40 tasks, N = 100k/10k, seeds 1..3

Resumable: each (task, seed, estimator) is appended to ``<out>/results.csv`` as soon as it is done (an atomic rewrite)
and skipped on the next run. Then ``table.md`` (true MI, mean ± std over seeds, RFMI's rank) and ``heatmap.png``
(relative bias) are rewritten from the CSV; ``--report`` rewrites them without running anything.
RFMI models of tasks with equal (dim_x, dim_y) train together as one ensemble (``--group`` members at most).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..util.cli_help import CommandParser, run_cli, open_unit, positive_int
from .vector_rf import VectorRFConfig, gaussianise_marginals, train_vector_rf, vector_rf_mi
from .baselines import BASELINES, BMI_BASELINES, BaselineSettings, run_baseline
from .report import append_rows, done_keys, heatmap, markdown_table, read_rows, summarise
from .tasks import NATIVE_TASKS, QUICK_TASKS, all_tasks, bmi_available, load_split

# estimator -> (marginals, form): "rfmi" is the main one; the others are variants, reported but not ranked.
# "rfmi" trains two models per task (same rows, independent init and minibatches); the variants reuse the first.
RFMI_VARIANTS = {"rfmi": ("gauss", "cross"), "rfmi-sq": ("gauss", "squared"), "rfmi-dot": ("gauss", "dot"),
                 "rfmi-std": ("standard", "squared")}
RFMI_ESTIMATORS = ("rfmi", "rfmi-sq", "rfmi-dot")  # rfmi-std (no margin transform) on request: --estimators

MODES = {
    "quick": dict(n_train=20_000, n_test=5_000, seeds=[0],
                  rfmi=VectorRFConfig(steps=2500, batch=512, n_t=16),
                  baselines=BaselineSettings(neural_steps=1_000, doe_steps=2_000, doe_batch=128, ksg_rows=5_000,
                                             neural_test_rows=1_000),
                  estimators=(*RFMI_ESTIMATORS, "doe-gauss", "doe-logistic", "ksg", "cca", "infonce")),
    "full": dict(n_train=100_000, n_test=10_000, seeds=[1, 2, 3],
                 rfmi=VectorRFConfig(steps=20_000, batch=1024, n_t=32),
                 baselines=BaselineSettings(neural_steps=20_000, doe_steps=10_000, doe_batch=256, ksg_rows=10_000),
                 estimators=(*RFMI_ESTIMATORS, *BASELINES)),
}


def select_tasks(mode: str, pattern: str | None) -> dict:
    tasks = all_tasks()
    if mode == "quick":
        tasks = {name: task for name, task in tasks.items() if name in NATIVE_TASKS or name in QUICK_TASKS}
    else:
        tasks = {name: task for name, task in tasks.items() if name not in NATIVE_TASKS} or dict(NATIVE_TASKS)
    if pattern:
        wanted = [p.strip() for p in pattern.split(",") if p.strip()]
        tasks = {n: t for n, t in tasks.items() if any(n == p or re.search(p, n) for p in wanted)}
    return tasks


def groups_by_dims(tasks: dict, size: int) -> list[list[str]]:
    """Task names grouped by (dim_x, dim_y), in task order, at most ``size`` per group."""
    by_dims: dict[tuple[int, int], list[str]] = {}
    for name, task in tasks.items():
        by_dims.setdefault((task.dim_x, task.dim_y), []).append(name)
    return [names[i : i + size] for names in by_dims.values() for i in range(0, len(names), size)]


def _row(name: str, task, estimator: str, seed: int, estimate: float, seconds: float, n_train: int, n_test: int,
         stderr: float | str = "") -> dict:
    return dict(task=name, dim_x=task.dim_x, dim_y=task.dim_y, true_mi=f"{task.mutual_information:.6f}",
                estimator=estimator, seed=seed, estimate=f"{estimate:.6f}",
                stderr=f"{stderr:.6f}" if isinstance(stderr, float) else stderr, seconds=f"{seconds:.2f}",
                n_train=n_train, n_test=n_test)


def run(args: argparse.Namespace) -> Path:
    settings = MODES[args.mode]
    out = Path(args.out or f"runs/synthetic-{args.mode}")
    csv_path = out / "results.csv"
    cache_dir = Path(args.cache_dir) if args.cache_dir else out / "cache"
    n_train, n_test = args.n_train or settings["n_train"], args.n_test or settings["n_test"]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else settings["seeds"]
    rfmi_config: VectorRFConfig = settings["rfmi"]
    if args.rfmi_steps:
        rfmi_config = replace(rfmi_config, steps=args.rfmi_steps)
    if args.rfmi_batch:
        rfmi_config = replace(rfmi_config, batch=args.rfmi_batch)
    if args.rfmi_t_max:
        rfmi_config = replace(rfmi_config, t_max=args.rfmi_t_max)
    baseline_settings: BaselineSettings = replace(settings["baselines"], device=args.device)
    if args.doe_steps:
        baseline_settings = replace(baseline_settings, doe_steps=args.doe_steps)
    estimators = [e.strip() for e in args.estimators.split(",")] if args.estimators else list(settings["estimators"])
    ok, why = bmi_available()
    if not ok:
        skipped = [e for e in estimators if e in BMI_BASELINES]
        estimators = [e for e in estimators if e not in BMI_BASELINES]
        print(f"[bench] {why}\n[bench] running native tasks only; skipping {skipped}", file=sys.stderr)
    tasks = select_tasks(args.mode, args.tasks)
    if not tasks:
        raise SystemExit(f"no task matches {args.tasks!r}")
    (out / "config.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dict(mode=args.mode, n_train=n_train, n_test=n_test, seeds=seeds,
                                                     rfmi=rfmi_config.as_dict(), baselines=vars(baseline_settings),
                                                     estimators=estimators), indent=1))
    print(f"[bench] {len(tasks)} tasks × {len(seeds)} seeds × {estimators} → {csv_path}", file=sys.stderr)
    for seed in seeds:
        for group in groups_by_dims(tasks, args.group):
            done = done_keys(read_rows(csv_path))
            todo = {name: [e for e in estimators if (name, seed, e) not in done] for name in group}
            group = [name for name in group if todo[name]]
            if not group:
                continue
            splits = {name: load_split(tasks[name], n_train, n_test, seed, cache_dir) for name in group}
            for name in group:
                for estimator in todo[name]:
                    if estimator in RFMI_VARIANTS:
                        continue
                    start = time.perf_counter()
                    estimate = run_baseline(estimator, splits[name], seed, baseline_settings)
                    seconds = time.perf_counter() - start
                    append_rows(csv_path, [_row(name, tasks[name], estimator, seed, estimate, seconds, n_train, n_test)])
                    _log(name, seed, estimator, estimate, tasks[name].mutual_information, seconds)
            rfmi_group = [name for name in group if any(e in RFMI_VARIANTS for e in todo[name])]
            if rfmi_group:
                run_rfmi_group(rfmi_group, tasks, splits, todo, seed, rfmi_config, args.device, csv_path, n_train,
                               n_test)
    write_report(out, list(all_tasks()))
    return out


def run_rfmi_group(names, tasks, splits, todo, seed, config, device, csv_path, n_train, n_test) -> None:
    """One ensemble of conditional RFs (X given Y) for tasks of equal dims; its MI by ``estimate_mi`` per task."""
    wanted = {e for name in names for e in todo[name] if e in RFMI_VARIANTS}
    for marginals in dict.fromkeys(RFMI_VARIANTS[e][0] for e in RFMI_VARIANTS if e in wanted):
        members = [n for n in names if any(RFMI_VARIANTS[e][0] == marginals for e in todo[n] if e in RFMI_VARIANTS)]
        data = {n: _rfmi_inputs(splits[n], marginals) for n in members}
        start = time.perf_counter()
        copies = 2 if marginals == "gauss" else 1  # two independent models per task for the cross form
        x = torch.stack([data[n][0] for n in members for _ in range(copies)])
        y = torch.stack([data[n][1] for n in members for _ in range(copies)])
        model = train_vector_rf(x, y, replace(config, marginals=marginals), seed=seed, device=device,
                                progress=sys.stderr.isatty())
        train_seconds = (time.perf_counter() - start) / len(members)
        for i, name in enumerate(members):
            rows = []
            for estimator in (e for e in todo[name] if RFMI_VARIANTS.get(e, ("",))[0] == marginals):
                start = time.perf_counter()
                member = (copies * i, copies * i + 1) if RFMI_VARIANTS[estimator][1] == "cross" else copies * i
                mi, stderr = vector_rf_mi(model, data[name][2], data[name][3], member,
                                          replace(config, marginals=marginals, form=RFMI_VARIANTS[estimator][1]),
                                          seed=10_000 + seed)
                seconds = train_seconds + time.perf_counter() - start
                rows.append(_row(name, tasks[name], estimator, seed, mi, seconds, n_train, n_test, stderr))
                _log(name, seed, estimator, mi, tasks[name].mutual_information, seconds)
            append_rows(csv_path, rows)


def _rfmi_inputs(split, marginals: str) -> list[torch.Tensor]:
    """x_train, y_train, x_test, y_test for RFMI: the protocol's standardised rows, or their Gaussianised margins."""
    x_train, x_test, y_train, y_test = split.x_train, split.x_test, split.y_train, split.y_test
    if marginals == "gauss":
        (x_train, x_test), (y_train, y_test) = gaussianise_marginals(x_train, x_test), gaussianise_marginals(y_train, y_test)
    return [torch.from_numpy(a) for a in (x_train, y_train, x_test, y_test)]


def _log(name, seed, estimator, estimate, truth, seconds) -> None:
    print(f"[bench] {name} seed {seed} {estimator}: {estimate:.4f} (true {truth:.4f}, err {estimate - truth:+.4f}) "
          f"{seconds:.1f}s", file=sys.stderr, flush=True)


def write_report(out: Path, task_order: list[str]) -> None:
    rows = read_rows(out / "results.csv")
    if not rows:
        return
    summary = summarise(rows, task_order)
    table = markdown_table(summary)
    (out / "table.md").write_text(table)
    note = heatmap(summary, out / "heatmap.png")
    if note:
        print(f"[bench] {note}", file=sys.stderr)
    print(table)


def build_parser() -> CommandParser:
    """The command's flags, each with its range."""
    parser = CommandParser(prog="python -m rfmi_core.bench.synthetic", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="CPU subset (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="all 40 tasks, 3 seeds")
    parser.set_defaults(mode="quick")
    parser.add_argument("--tasks", help="comma-separated task ids or regexes (default: the mode's tasks)")
    parser.add_argument("--estimators", help="comma-separated subset of " + ", ".join((*RFMI_VARIANTS, *BASELINES)))
    parser.add_argument("--seeds", help="comma-separated seeds (quick: 0; full: 1,2,3)")
    parser.add_argument("--n-train", type=positive_int, help="training rows (quick 20000, full 100000)")
    parser.add_argument("--n-test", type=positive_int, help="test rows (quick 5000, full 10000)")
    parser.add_argument("--rfmi-steps", type=positive_int, help="RFMI training steps (quick 2500, full 20000)")
    parser.add_argument("--rfmi-batch", type=positive_int, help="RFMI batch per member (quick 512, full 1024)")
    parser.add_argument("--rfmi-t-max", type=open_unit, help="integrate RFMI over [0, t_max] (default 0.999)")
    parser.add_argument("--doe-steps", type=positive_int, help="DoE training steps (quick 2000, full 10000)")
    parser.add_argument("--group", type=positive_int, default=8, help="max tasks per RFMI ensemble (equal dims)")
    parser.add_argument("--device", default="cpu", help="torch device for RFMI and DoE (cuda on a GPU)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--out", help="output folder (default runs/synthetic-<mode>)")
    parser.add_argument("--cache-dir", help="sample cache for slow tasks (default <out>/cache)")
    parser.add_argument("--report", action="store_true", help="only rewrite table.md and heatmap.png from the CSV")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.threads == 1:  # bmi's JAX (CPU) otherwise takes every core; must be set before jax is imported
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    if args.report:
        write_report(Path(args.out or f"runs/synthetic-{args.mode}"), list(all_tasks()))
        return
    try:
        run(args)
    except KeyboardInterrupt:
        print("[bench] interrupted: finished rows are in results.csv; run again to resume", file=sys.stderr)
        raise SystemExit(130)


if __name__ == "__main__":
    run_cli(main, "python -m rfmi_core.bench.synthetic")
