"""The I-MMSE integrand read along the sampler's own path: a free stand-in for the exact point-wise MI, measured and
not shipped (it does not clear the bar: benchmarks/pmi_draws.py, research.toy.selection_study).

Along the Euler path of an image x_final the flow-matching target of step i is taken as u*_i = (x_final − x_i)/(1 − t_i)
and the exact form's integrand summed with the grid's weights: Σ_i t_i/(1 − t_i)·(‖u*_i − u_∅‖² − ‖u*_i − u_y‖²)·Δt_i.
Since x_final is known only at the end, each step keeps V += 2a_i·δ_i/σ_i and S += a_i·(−2δ_i·x_i/σ_i − ‖u_y‖² + ‖u_∅‖²)
(a_i = t_i/σ_i·Δt_i, δ = u_y − u_∅, σ_i = 1 − t_i), and the score is V·x_final + S: no step is held.
"""

from __future__ import annotations

import torch
from torch import Tensor


class PathImmse:
    """An ``euler_sample`` observer; ``score(x_final)`` [B] after the loop."""

    def __init__(self) -> None:
        self.vector: Tensor | None = None
        self.scalar: Tensor | None = None

    def __call__(self, sigma: Tensor, sigma_next: Tensor, x: Tensor, t: Tensor, u: list[Tensor]) -> None:
        s = float(sigma)
        a = (1 - s) / s * (s - float(sigma_next))
        u_y, u_0 = u[0], u[1]
        delta = u_y - u_0
        if self.vector is None:
            self.vector, self.scalar = torch.zeros_like(x), torch.zeros(x.shape[0], device=x.device)
        self.vector += (2 * a / s) * delta
        self.scalar += a * (-2 / s * (delta * x).flatten(1).sum(1) - u_y.square().flatten(1).sum(1)
                            + u_0.square().flatten(1).sum(1))

    def score(self, x_final: Tensor) -> Tensor:
        return (self.vector * x_final).flatten(1).sum(1) + self.scalar
