"""Baseline MI estimators on a ``Split``: DoE (native PyTorch) and bmi's KSG, CCA, MINE, InfoNCE, NWJ, D–V.

Sizes follow MINDE's baseline runs (``src/baseline/eval_baselines.py``): critic hidden layers (d, d, 8) with d = 32 for
dim_x ≤ 10 and 128 up to 50 (256 above, lr 2e-3), Adam lr 1e-3, batch 256, early stopping on the held-out rows, which
are the first ``neural_test_rows`` of our test rows (bmi scores all n² pairs of its test set at every check, not jitted;
``train_test_split`` = n_train / (n_train + n_test_used)). KSG uses k = 10 on at most ``ksg_rows``
training rows (it is O(N log N) per query and collapses in high dimension anyway); CCA uses all training rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .doe import DoEConfig, estimate_doe
from .tasks import Split, bmi_available

__all__ = ["BaselineSettings", "BASELINES", "BMI_BASELINES", "run_baseline"]

BMI_NEURAL = {"mine": "MINEEstimator", "infonce": "InfoNCEEstimator", "nwj": "NWJEstimator",
              "dv": "DonskerVaradhanEstimator"}
BMI_BASELINES = ("ksg", "cca", *BMI_NEURAL)
BASELINES = ("doe-gauss", "doe-logistic", *BMI_BASELINES)


@dataclass
class BaselineSettings:
    neural_steps: int = 20_000  # max steps of bmi's critics (early stopping usually ends sooner)
    doe_steps: int = 10_000
    doe_batch: int = 256
    ksg_rows: int = 10_000
    neural_test_rows: int = 2_000  # bmi scores all n² test pairs, eagerly, at every test: 10k rows is 100M pairs
    device: str = "cpu"


def _critic_size(dim_x: int) -> tuple[tuple[int, ...], float]:
    d, lr = (32, 1e-3) if dim_x <= 10 else (128, 1e-3) if dim_x <= 50 else (256, 2e-3)
    return (d, d, 8), lr


def _patch_bmi_batches() -> None:
    """bmi draws each minibatch by ``jax.random.choice(..., replace=False)``: an eager permutation of all N training
    rows per step (minutes per 2000 steps on one CPU core at N = 20k). Draw indices with replacement instead (jitted);
    for batch 256 of N ≥ 20k the two laws differ in ~1.6 duplicate pairs per batch."""
    import jax
    from bmi.estimators.neural import _basic_training

    if getattr(_basic_training, "_rfmi_patched", False):
        return

    @jax.jit
    def take(xs, ys, key, batch_size_array):
        idx = jax.random.randint(key, batch_size_array.shape, 0, xs.shape[0])
        return xs[idx], ys[idx]

    def get_batch(xs, ys, key, batch_size):
        if batch_size is None:
            return xs, ys
        return take(xs, ys, key, jax.numpy.zeros((batch_size,), dtype=jax.numpy.int8))

    _basic_training.get_batch = get_batch
    _basic_training._rfmi_patched = True


def run_baseline(name: str, split: Split, seed: int, settings: BaselineSettings) -> float:
    """The estimate of I(X; Y) in nats by baseline ``name``."""
    if name.startswith("doe-"):
        family = "gaussian" if name == "doe-gauss" else "logistic"
        config = DoEConfig(family=family, steps=settings.doe_steps, batch=settings.doe_batch)
        return estimate_doe(split.x_train, split.y_train, split.x_test, split.y_test, config, seed, settings.device)
    ok, why = bmi_available()
    if not ok:
        raise RuntimeError(f"baseline {name!r} needs bmi: {why}")
    from bmi import estimators

    if name == "ksg":
        rows = min(settings.ksg_rows, split.x_train.shape[0])
        return float(estimators.KSGEnsembleFirstEstimator(neighborhoods=(10,)).estimate(
            split.x_train[:rows], split.y_train[:rows]))
    if name == "cca":
        return float(estimators.CCAMutualInformationEstimator().estimate(split.x_train, split.y_train))
    if name in BMI_NEURAL:
        _patch_bmi_batches()
        hidden, lr = _critic_size(split.x_train.shape[1])
        n_train, n_test = split.x_train.shape[0], min(split.x_test.shape[0], settings.neural_test_rows)
        estimator = getattr(estimators, BMI_NEURAL[name])(
            batch_size=256, max_n_steps=settings.neural_steps, train_test_split=n_train / (n_train + n_test),
            learning_rate=lr, hidden_layers=hidden, verbose=False, seed=seed)
        x = np.concatenate([split.x_train, split.x_test[:n_test]])
        y = np.concatenate([split.y_train, split.y_test[:n_test]])
        return float(estimator.estimate(x, y))
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")
