"""The importance-sampling density for RFMI on existing samples (paper Prop. 3.3).

The MI integrand carries the weight r(t) = t/(1 − t), which diverges at t → 1. Drawing t from a density proportional
to r(t) cancels it; to keep that density normalisable it is held constant above t_ε:

    q(t) = min(r(t), r(t_ε)) / Z,   Z = ∫₀¹ min(r, r(t_ε)) dt = −log(1 − t_ε).

Its CDF below t_ε is F(t) = (−t − log(1 − t))/Z, inverted in closed form with the Lambert W function (branch 0):
t = 1 + W₀(−exp(−1 − Z·p)). Above t_ε it is linear. The importance weight r(t)/q(t) equals Z below t_ε and
Z·r(t)/r(t_ε) above, so E_q[r/q · f] = ∫₀¹ r·f dt exactly: the truncation changes the variance, not the target.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import lambertw
from torch import Tensor

from .checks import require_unit_interval

__all__ = ["TruncatedRatioDensity"]

_SERIES_BELOW = 1e-5  # unnormalised CDF mass under which the inverse uses its series (t < ~4.5e-3)


class TruncatedRatioDensity:
    """q(t) ∝ min(t/(1 − t), t_ε/(1 − t_ε)) on [0, 1]; pdf, cdf, icdf and sampling, in float64."""

    def __init__(self, t_eps: float = 0.99):
        require_unit_interval("t_eps", t_eps, open_left=True, open_right=True)
        self.t_eps = float(t_eps)
        self.ratio_at_eps = self.t_eps / (1.0 - self.t_eps)
        self.normaliser = -float(np.log1p(-self.t_eps))
        self._mass_below_eps = -self.t_eps - float(np.log1p(-self.t_eps))  # ∫₀^{t_ε} r(t) dt, unnormalised

    def __repr__(self) -> str:
        return f"TruncatedRatioDensity(t_eps={self.t_eps})"

    def ratio(self, t: np.ndarray | float) -> np.ndarray:
        """The untruncated MI weight r(t) = t/(1 − t) (paper Eq. 5)."""
        t = np.asarray(t, dtype=np.float64)
        return t / (1.0 - t)

    def pdf(self, t: np.ndarray | float) -> np.ndarray:
        t = self._check_t(t)
        return np.minimum(self.ratio(np.minimum(t, self.t_eps)), self.ratio_at_eps) / self.normaliser

    def cdf(self, t: np.ndarray | float) -> np.ndarray:
        t = self._check_t(t)
        below = np.minimum(t, self.t_eps)
        mass = -below - np.log1p(-below)
        mass = np.where(t > self.t_eps, self._mass_below_eps + (t - self.t_eps) * self.ratio_at_eps, mass)
        return mass / self.normaliser

    def icdf(self, p: np.ndarray | float) -> np.ndarray:
        """Inverse CDF: t = 1 + W₀(−exp(−1 − Z·p)) below t_ε, linear above."""
        p = np.asarray(p, dtype=np.float64)
        if not np.all((p >= 0) & (p <= 1)):
            raise ValueError(f"p must lie in [0, 1]; got values in [{p.min()}, {p.max()}]")
        mass = p * self.normaliser
        with np.errstate(invalid="ignore"):
            lower = 1.0 + lambertw(-np.exp(-1.0 - mass), k=0).real
        # At the branch point z = −1/e (mass → 0) rounding of z can leave W undefined; there the series inverse of
        # mass = t²/2 + t³/3 + …, t = q − q²/3 + q³/36 with q = √(2·mass), is exact to O(q⁴).
        q = np.sqrt(2.0 * mass)
        lower = np.where(mass < _SERIES_BELOW, q - q**2 / 3 + q**3 / 36, lower)
        upper = self.t_eps + (mass - self._mass_below_eps) / self.ratio_at_eps
        return np.clip(np.where(mass <= self._mass_below_eps, lower, upper), 0.0, 1.0)

    def importance_weight(self, t: np.ndarray | float) -> np.ndarray:
        """r(t)/q(t): Z below t_ε, Z·r(t)/r(t_ε) above."""
        t = self._check_t(t)
        return self.normaliser * np.maximum(self.ratio(np.minimum(t, 1 - 1e-12)) / self.ratio_at_eps, 1.0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of t by inverse CDF from torch.rand (so ``generator`` makes them reproducible), float64 on the CPU."""
        if n < 1:
            raise ValueError(f"n must be a positive number of draws; got {n}")
        device = generator.device if generator is not None else torch.device("cpu")
        uniform = torch.rand(n, generator=generator, dtype=torch.float64, device=device).cpu()
        return torch.from_numpy(self.icdf(uniform.numpy()))

    @staticmethod
    def _check_t(t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if not np.all((t >= 0) & (t <= 1)):
            raise ValueError(f"t must lie in [0, 1]; got values in [{t.min()}, {t.max()}]")
        return t
