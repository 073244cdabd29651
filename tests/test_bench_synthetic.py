"""The synthetic MI benchmark: RFMI for vectors and DoE against closed-form MI, quick mode, resumable CSV, ranks."""

import csv

import numpy as np
import pytest
import torch

from rfmi_core.bench import report
from rfmi_core.bench.doe import DoEConfig, estimate_doe
from rfmi_core.bench.synthetic import main
from rfmi_core.bench.tasks import NATIVE_TASKS, bmi_available, load_split
from rfmi_core.bench.vector_rf import VectorRFConfig, estimate_vector_mi

GAUSS = NATIVE_TASKS["gauss-1v1-0.75"]  # X, Y ~ N(0, 1), ρ = 0.75: I = −½·log(1 − ρ²) = 0.4133 nats


@pytest.fixture(scope="module")
def gauss_split():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small MLPs: one thread is as fast, and the result does not depend on the core count
    yield load_split(GAUSS, 20_000, 5_000, seed=0)
    torch.set_num_threads(threads)


def test_native_gaussian_truth_is_closed_form():
    assert GAUSS.mutual_information == pytest.approx(-0.5 * np.log(1 - 0.75**2), abs=1e-12)
    assert NATIVE_TASKS["gauss-dense-5-5-0.5"].mutual_information == pytest.approx(0.5928, abs=1e-4)


def test_rfmi_recovers_bivariate_gaussian_mi(gauss_split):
    s = gauss_split
    config = VectorRFConfig(steps=1500, batch=256, n_t=16)
    mi = estimate_vector_mi(s.x_train, s.y_train, s.x_test, s.y_test, config, seed=0)
    assert mi == pytest.approx(GAUSS.mutual_information, abs=0.05)


@pytest.mark.parametrize("family", ["gaussian", "logistic"])
def test_doe_recovers_bivariate_gaussian_mi(gauss_split, family):
    s = gauss_split
    mi = estimate_doe(s.x_train, s.y_train, s.x_test, s.y_test, DoEConfig(family=family, steps=1500), seed=0)
    assert mi == pytest.approx(GAUSS.mutual_information, abs=0.05)


def test_quick_mode_on_two_native_tasks_writes_and_resumes(tmp_path):
    args = ["--quick", "--tasks", "gauss-1v1-0.75,gauss-dense-5-5-0.5", "--estimators", "rfmi,doe-gauss",
            "--n-train", "2000", "--n-test", "500", "--rfmi-steps", "60", "--doe-steps", "60", "--out", str(tmp_path)]
    main(args)
    rows = report.read_rows(tmp_path / "results.csv")
    assert sorted((r["task"], r["estimator"]) for r in rows) == sorted(
        (t, e) for t in ("gauss-1v1-0.75", "gauss-dense-5-5-0.5") for e in ("rfmi", "doe-gauss"))
    assert all(np.isfinite(float(r["estimate"])) for r in rows)
    assert "rfmi rank" in (tmp_path / "table.md").read_text()
    main(args)  # everything is done: nothing is appended
    assert len(report.read_rows(tmp_path / "results.csv")) == len(rows)


def test_append_is_a_whole_file_rewrite(tmp_path):
    path = tmp_path / "r.csv"
    row = dict(task="a", dim_x=1, dim_y=1, true_mi=1.0, estimator="rfmi", seed=0, estimate=0.9)
    report.append_rows(path, [row])
    report.append_rows(path, [{**row, "seed": 1}])
    with path.open() as handle:
        assert [r["seed"] for r in csv.DictReader(handle)] == ["0", "1"]
    assert not list(tmp_path.glob("*.tmp"))


def test_table_ranks_and_counts_wins():
    rows = [dict(task=t, dim_x=1, dim_y=1, true_mi=1.0, estimator=e, seed=s, estimate=v)
            for t, e, s, v in [("a", "rfmi", 0, 0.98), ("a", "rfmi", 1, 1.00), ("a", "ksg", 0, 0.90),
                               ("b", "rfmi", 0, 0.70), ("b", "ksg", 0, 0.95), ("b", "rfmi-dot", 0, 1.0)]]
    summary = report.summarise(rows, ["a", "b"])
    assert summary["stats"][("a", "rfmi")][:2] == pytest.approx((0.99, np.std([0.98, 1.0], ddof=1)))
    table = report.markdown_table(summary)
    assert "| 1/2 |" in table and "| 2/2 |" in table  # rfmi-dot is a variant, not a competitor
    assert "smallest |error| on 1 of 2 tasks" in table and "within 0.05 nats on 1 of 2" in table


@pytest.mark.skipif(not bmi_available()[0], reason=bmi_available()[1] or "bmi present")
def test_bmi_tasks_match_the_vendored_truth():
    from rfmi_core.bench.tasks import bmi_tasks

    tasks = bmi_tasks()
    assert len(tasks) == 40
    assert tasks["1v1-normal-0.75"].mutual_information == pytest.approx(GAUSS.mutual_information, abs=1e-9)
    assert tasks["multinormal-dense-5-5-0.5"].mutual_information == pytest.approx(
        NATIVE_TASKS["gauss-dense-5-5-0.5"].mutual_information, abs=1e-9)


def test_gaussianised_margins_are_monotone_and_standard_normal():
    from rfmi_core.bench.vector_rf import gaussianise_marginals

    rng = np.random.default_rng(0)
    train, test = rng.standard_cauchy((20_000, 2)), rng.standard_cauchy((5_000, 2))
    out_train, out_test = gaussianise_marginals(train, test)
    assert out_train.mean(0) == pytest.approx([0, 0], abs=1e-6)
    assert out_train.std(0) == pytest.approx([1, 1], abs=2e-3)
    for j in range(2):  # a strictly increasing map per coordinate: ranks are kept, so I(X; Y) is unchanged
        assert np.all(np.diff(out_test[np.argsort(test[:, j]), j]) >= 0)


@pytest.mark.skipif(not bmi_available()[0], reason=bmi_available()[1] or "bmi present")
@pytest.mark.parametrize("name", ["ksg", "cca", "mine", "infonce", "nwj", "dv"])
def test_bmi_baselines_recover_bivariate_gaussian_mi(name):
    """Each of bmi's baselines, as the benchmark calls it, on ρ = 0.75 (0.4133 nats): small N and 2000 critic steps,
    so the tolerance is loose (0.1 nats); it checks the wiring (arguments, patched batches, train/test split), not the
    estimators' accuracy, which the benchmark reports."""
    from rfmi_core.bench.baselines import BaselineSettings, run_baseline

    split = load_split(GAUSS, 5_000, 2_000, seed=0)
    estimate = run_baseline(name, split, seed=0, settings=BaselineSettings(neural_steps=2_000, neural_test_rows=1_000))
    assert estimate == pytest.approx(GAUSS.mutual_information, abs=0.1)
