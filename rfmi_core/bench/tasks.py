"""Benchmark tasks: ``bmi``'s 40 (when installed) and native Gaussians, sampled once per seed and cached as .npz.

Protocol (MINDE / RFMI): ``task.sample(n_train + n_test, seed)``, X and Y standardised separately with the training
rows' mean and std, first n_train rows train, last n_test rows test.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["GaussianTask", "NATIVE_TASKS", "bmi_available", "bmi_tasks", "all_tasks", "Split", "load_split",
           "QUICK_TASKS", "SLOW_TO_SAMPLE"]

SLOW_TO_SAMPLE = re.compile(r"spiral")  # a matrix exponential per sample: 43 s per 110k rows on 1 CPU core


@dataclass(frozen=True)
class GaussianTask:
    """(X, Y) jointly Gaussian with unit variances and a given cross-correlation; MI in closed form (nats)."""

    name: str
    cross: np.ndarray  # [dim_x, dim_y] correlations between X_i and Y_j
    within: float = 0.0  # correlation within X and within Y (off-diagonal)

    @property
    def dim_x(self) -> int:
        return self.cross.shape[0]

    @property
    def dim_y(self) -> int:
        return self.cross.shape[1]

    @property
    def covariance(self) -> np.ndarray:
        dx, dy = self.dim_x, self.dim_y
        blocks = [[_within(dx, self.within), self.cross], [self.cross.T, _within(dy, self.within)]]
        return np.block(blocks)

    @property
    def mutual_information(self) -> float:
        """½·(log det Σ_X + log det Σ_Y − log det Σ)."""
        cov, dx = self.covariance, self.dim_x
        logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
        return float(0.5 * (logdet(cov[:dx, :dx]) + logdet(cov[dx:, dx:]) - logdet(cov)))

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        joint = rng.multivariate_normal(np.zeros(self.dim_x + self.dim_y), self.covariance, size=n, method="cholesky")
        return joint[:, : self.dim_x].astype(np.float32), joint[:, self.dim_x :].astype(np.float32)


def _within(dim: int, rho: float) -> np.ndarray:
    return np.full((dim, dim), rho) + (1 - rho) * np.eye(dim)


def _dense(dim: int, rho: float) -> np.ndarray:
    return np.full((dim, dim), rho)


# Same laws (and MI) as bmi's 1v1-normal-0.75 and multinormal-dense-5-5-0.5, but their own sampler and names.
NATIVE_TASKS = {
    task.name: task
    for task in (
        GaussianTask("gauss-1v1-0.75", np.array([[0.75]])),
        GaussianTask("gauss-dense-5-5-0.5", _dense(5, 0.5), within=0.5),
    )
}

# Quick mode: native tasks always; these bmi tasks (one or two per family) when bmi is installed.
QUICK_TASKS = (
    "1v1-normal-0.75",
    "student-identity-1-1-1",
    "swissroll_x-normal_cdf-1v1-normal-0.75",
    "multinormal-dense-5-5-0.5",
    "half_cube-multinormal-sparse-5-5-2-2.0",
    "spiral-multinormal-sparse-3-3-2-2.0",
    "asinh-student-identity-2-2-1",
)


def bmi_available() -> tuple[bool, str]:
    """(True, "") when ``import bmi`` works, else (False, why)."""
    try:
        import bmi  # noqa: F401
    except Exception as error:  # ImportError, or old-jax breakage (jax.core.pp_eqn_rules)
        return False, f"benchmark-mi (bmi) is not importable here ({type(error).__name__}: {error}); see the bench extra"
    return True, ""


def bmi_tasks() -> dict:
    """bmi's 40 tasks in BENCHMARK_TASKS order (id -> Task), {} without bmi."""
    ok, _ = bmi_available()
    if not ok:
        return {}
    import bmi

    return dict(bmi.benchmark.BENCHMARK_TASKS)


def all_tasks() -> dict:
    """Native tasks first, then bmi's 40 when installed."""
    return {**NATIVE_TASKS, **bmi_tasks()}


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    seconds: float  # time to draw (0 when cached)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0, keepdims=True), train.std(0, keepdims=True) + 1e-8
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def load_split(task, n_train: int, n_test: int, seed: int, cache_dir: str | Path | None = None,
               cache_all: bool = False) -> Split:
    """Standardised train/test rows of ``task`` for ``seed``; slow samplers (spiral) go through an .npz cache."""
    n = n_train + n_test
    cache = None
    task_id = getattr(task, "id", None) or task.name  # bmi: id is the BENCHMARK_TASKS key, name is for display
    if cache_dir is not None and (cache_all or SLOW_TO_SAMPLE.search(task_id)):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", task_id)
        cache = Path(cache_dir) / f"{safe}__n{n}__seed{seed}.npz"
    start = time.perf_counter()
    if cache is not None and cache.exists():
        with np.load(cache) as data:
            x, y = data["x"], data["y"]
    else:
        x, y = (np.asarray(a, dtype=np.float32) for a in task.sample(n, seed=seed))
        if cache is not None:
            _save_npz_atomic(cache, x=x, y=y)
    seconds = time.perf_counter() - start
    x_train, x_test = _standardise(x[:n_train], x[n_train:])
    y_train, y_test = _standardise(y[:n_train], y[n_train:])
    return Split(x_train, y_train, x_test, y_test, seconds)


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
