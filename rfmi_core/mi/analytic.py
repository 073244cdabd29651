"""Exact velocity fields with known mutual information, for tests and demos.

For data x1 ~ N(μ, Σ) on the path x_t = t·x1 + (1 − t)·x0, x_t ~ N(tμ, C_t) with C_t = t²Σ + (1 − t)²I, and the
marginal velocity E[x1 − x0 | x_t] is linear in x_t:

    u_t(x) = μ + (tΣ − (1 − t)I)·C_t⁻¹·(x − tμ).

- ``GaussianChannel``: Y ~ N(0, I), X = A·Y + N(0, Σ_n). u(·|y) uses μ = A·y, Σ = Σ_n; u(·|∅) uses μ = 0,
  Σ = AAᵀ + Σ_n. I(X; Y) = ½·log det Σ_X / det Σ_{X|Y}.
- ``GaussianMixture``: Y ~ Categorical(π), X | Y = k ~ N(μ_k, s_k²I). u(·|k) is the component's Gaussian velocity and
  u(·|∅) = Σ_k p(k | x_t)·u(·|k). I(X; Y) = H(Y) − H(Y|X), estimated by Monte Carlo from the exact densities.
- ``TwoPartGaussianChannel``: a prompt of two parts, Y1, Y2 independent N(0, I), X = A1·Y1 + A2·Y2 + N(0, Σ_n);
  exact velocities given (y1, y2), y1 alone, y2 alone and ∅, and closed-form I(X; Y), I(X; Y1), I(X; Y2 | Y1), … for
  the phrase MI (``phrase_mi``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from .stats import mean_and_standard_error

__all__ = ["gaussian_velocity", "gaussian_log_density", "GaussianChannel", "GaussianMixture", "TwoPartGaussianChannel"]


def gaussian_log_density(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """log N(x; mean, cov) per row of x [B, D] (mean [B, D] or [D]), float64."""
    return MultivariateNormal(mean.double(), covariance_matrix=cov.double()).log_prob(x.double())


def gaussian_velocity(x: Tensor, t: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """u_t(x) = μ + (tΣ − (1 − t)I)·C_t⁻¹·(x − tμ) for x1 ~ N(μ, Σ).

    x [B, D], t [B], mean [B, D] or [D], cov [D, D]; float64 internally, returns x's dtype.
    """
    batch, dim = x.shape
    x64, t64 = x.double(), t.double().reshape(batch, 1, 1)
    mean = mean.double().expand(batch, dim)
    eye = torch.eye(dim, dtype=torch.float64, device=x.device)
    cov = cov.double().to(x.device)
    c_t = t64**2 * cov + (1 - t64) ** 2 * eye  # [B, D, D]
    centred = (x64 - t64[:, :, 0] * mean).unsqueeze(-1)
    gain = t64 * cov - (1 - t64) * eye
    return (mean + (gain @ torch.linalg.solve(c_t, centred)).squeeze(-1)).to(x.dtype)


class GaussianChannel:
    """Y ~ N(0, I_dy); X = A·Y + N(0, Σ_n). Conditions are y [B, dy]; ``None`` means ∅ (unconditional)."""

    def __init__(self, mixing: Tensor, noise_cov: Tensor):
        self.mixing = mixing.double()
        self.noise_cov = noise_cov.double()
        self.marginal_cov = self.mixing @ self.mixing.T + self.noise_cov
        self.dim_x, self.dim_y = self.mixing.shape

    @classmethod
    def random(cls, dim_x: int = 4, dim_y: int = 2, noise_scale: float = 0.5, seed: int = 0) -> "GaussianChannel":
        g = torch.Generator().manual_seed(seed)
        mixing = torch.randn(dim_x, dim_y, generator=g, dtype=torch.float64) / math.sqrt(dim_y)
        root = torch.randn(dim_x, dim_x, generator=g, dtype=torch.float64) / math.sqrt(dim_x)
        noise_cov = noise_scale**2 * (0.5 * root @ root.T + 0.5 * torch.eye(dim_x, dtype=torch.float64))
        return cls(mixing, noise_cov)

    @property
    def true_mi(self) -> float:
        """½·log det Σ_X / det Σ_{X|Y}, nats."""
        return 0.5 * float(torch.logdet(self.marginal_cov) - torch.logdet(self.noise_cov))

    def pointwise_mi(self, x: Tensor, y: Tensor) -> Tensor:
        """i(x; y) = log N(x; A·y, Σ_n) − log N(x; 0, Σ_X) per image [B], nats (its mean over the joint is
        ``true_mi``)."""
        zero = torch.zeros(self.dim_x, dtype=torch.float64)
        return (gaussian_log_density(x, y.double() @ self.mixing.T, self.noise_cov)
                - gaussian_log_density(x, zero, self.marginal_cov))

    def sample_condition(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.dim_y, generator=generator, dtype=torch.float64).float()

    def sample_data(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        root = torch.linalg.cholesky(self.noise_cov)
        eps = torch.randn(y.shape[0], self.dim_x, generator=generator, dtype=torch.float64)
        return (y.double() @ self.mixing.T + eps @ root.T).float()

    def velocity(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            return gaussian_velocity(x, t, torch.zeros(self.dim_x, dtype=torch.float64), self.marginal_cov)
        return gaussian_velocity(x, t, y.double().to(x.device) @ self.mixing.T.to(x.device), self.noise_cov)


class GaussianMixture:
    """Y ~ Categorical(π); X | Y = k ~ N(μ_k, s_k²·I). Conditions are labels [B] (long); ``None`` means ∅."""

    def __init__(self, means: Tensor, scales: Tensor, weights: Tensor):
        self.means = means.double()  # [K, D]
        self.scales = scales.double()  # [K]
        self.weights = weights.double() / weights.double().sum()  # [K]
        self.num_components, self.dim_x = self.means.shape

    @classmethod
    def random(cls, num_components: int = 3, dim_x: int = 4, spread: float = 1.5, seed: int = 0) -> "GaussianMixture":
        g = torch.Generator().manual_seed(seed)
        means = spread * torch.randn(num_components, dim_x, generator=g, dtype=torch.float64)
        scales = 0.5 + 0.5 * torch.rand(num_components, generator=g, dtype=torch.float64)
        weights = 1.0 + torch.rand(num_components, generator=g, dtype=torch.float64)
        return cls(means, scales, weights)

    def sample_condition(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)

    def sample_data(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(labels.shape[0], self.dim_x, generator=generator, dtype=torch.float64)
        return (self.means[labels] + self.scales[labels, None] * eps).float()

    def log_component_densities(self, x: Tensor, t: Tensor | float = 1.0) -> Tensor:
        """log N(x; t·μ_k, (t²s_k² + (1 − t)²)·I) for every k: [B, K] (t = 1 gives the data densities)."""
        x = x.double()
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
        var = t**2 * self.scales**2 + (1 - t) ** 2  # [B or 1, K]
        sq = ((x[:, None, :] - t[:, :, None] * self.means[None]) ** 2).sum(-1)  # [B, K]
        return -0.5 * sq / var - 0.5 * self.dim_x * torch.log(2 * math.pi * var)

    def velocity(self, x: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
        eye = torch.eye(self.dim_x, dtype=torch.float64)
        per_component = torch.stack(
            [gaussian_velocity(x, t, self.means[k], self.scales[k] ** 2 * eye).double() for k in range(self.num_components)],
            dim=1,
        )  # [B, K, D]
        if labels is not None:
            return per_component[torch.arange(x.shape[0]), labels.long()].to(x.dtype)
        log_post = self.log_component_densities(x, t) + torch.log(self.weights)
        posterior = torch.softmax(log_post, dim=1)  # p(k | x_t)
        return (posterior[:, :, None] * per_component).sum(1).to(x.dtype)

    def pointwise_mi(self, x: Tensor, labels: Tensor) -> Tensor:
        """i(x; k) = log N(x; μ_k, s_k²I) − log Σ_j π_j·N(x; μ_j, s_j²I) per image [B], nats."""
        log_comp = self.log_component_densities(x)
        return log_comp[torch.arange(x.shape[0]), labels.long()] - torch.logsumexp(log_comp + torch.log(self.weights), 1)

    def monte_carlo_mi(self, n: int = 200_000, seed: int = 1) -> tuple[float, float]:
        """(I(X; Y), its standard error) = E[log p(x|y) − log p(x)] over n exact samples, nats."""
        g = torch.Generator().manual_seed(seed)
        labels = self.sample_condition(n, g)
        x = self.sample_data(labels, g).double()
        mean, standard_error = mean_and_standard_error(self.pointwise_mi(x, labels))
        return float(mean), float(standard_error)


class TwoPartGaussianChannel:
    """A prompt of two parts: Y1 ~ N(0, I_d1), Y2 ~ N(0, I_d2) independent; X = A1·Y1 + A2·Y2 + N(0, Σ_n).

    A condition is a pair ``(y1, y2)`` whose missing part is ``None`` (``(y1, None)`` is y∖y2), or ``None`` for ∅.
    Every conditional is Gaussian (condition on the known part, marginalise the other):

        X | y1, y2 ~ N(A1·y1 + A2·y2, Σ_n)      X | y1 ~ N(A1·y1, A2A2ᵀ + Σ_n)
        X | y2     ~ N(A2·y2, A1A1ᵀ + Σ_n)      X      ~ N(0, A1A1ᵀ + A2A2ᵀ + Σ_n)

    so each velocity is ``gaussian_velocity`` with that mean and covariance, and every MI is ½·log det ratio:
    I(X; Y) = ½·log |Σ_X|/|Σ_n|, I(X; Y1) = ½·log |Σ_X|/|A2A2ᵀ + Σ_n|, I(X; Y2 | Y1) = ½·log |A2A2ᵀ + Σ_n|/|Σ_n|
    (and the same with 1 and 2 swapped); the chain rule I(X; Y) = I(X; Y1) + I(X; Y2 | Y1) holds exactly.
    """

    def __init__(self, mixing_1: Tensor, mixing_2: Tensor, noise_cov: Tensor):
        self.mixing_1, self.mixing_2, self.noise_cov = mixing_1.double(), mixing_2.double(), noise_cov.double()
        if self.mixing_1.shape[0] != self.mixing_2.shape[0] or self.noise_cov.shape != (self.mixing_1.shape[0],) * 2:
            raise ValueError(f"mixing_1 {tuple(mixing_1.shape)}, mixing_2 {tuple(mixing_2.shape)} and noise_cov "
                             f"{tuple(noise_cov.shape)} must share dim X (rows; noise_cov is [dim X, dim X])")
        self.dim_x, self.dim_y1 = self.mixing_1.shape
        self.dim_y2 = self.mixing_2.shape[1]
        self.cov_given_y1 = self.mixing_2 @ self.mixing_2.T + self.noise_cov  # Cov(X | y1)
        self.cov_given_y2 = self.mixing_1 @ self.mixing_1.T + self.noise_cov  # Cov(X | y2)
        self.marginal_cov = self.mixing_1 @ self.mixing_1.T + self.cov_given_y1

    @classmethod
    def random(cls, dim_x: int = 4, dim_y1: int = 1, dim_y2: int = 1, noise_scale: float = 0.5,
               seed: int = 0) -> "TwoPartGaussianChannel":
        g = torch.Generator().manual_seed(seed)
        mixing_1 = torch.randn(dim_x, dim_y1, generator=g, dtype=torch.float64) / math.sqrt(dim_y1)
        mixing_2 = torch.randn(dim_x, dim_y2, generator=g, dtype=torch.float64) / math.sqrt(dim_y2)
        root = torch.randn(dim_x, dim_x, generator=g, dtype=torch.float64) / math.sqrt(dim_x)
        noise_cov = noise_scale**2 * (0.5 * root @ root.T + 0.5 * torch.eye(dim_x, dtype=torch.float64))
        return cls(mixing_1, mixing_2, noise_cov)

    @staticmethod
    def _half_log_det_ratio(numerator: Tensor, denominator: Tensor) -> float:
        return 0.5 * float(torch.logdet(numerator) - torch.logdet(denominator))

    @property
    def true_mi(self) -> float:
        """I(X; Y1, Y2) = ½·log |Σ_X|/|Σ_n|, nats."""
        return self._half_log_det_ratio(self.marginal_cov, self.noise_cov)

    @property
    def mi_y1(self) -> float:
        """I(X; Y1) = ½·log |Σ_X|/|A2A2ᵀ + Σ_n|, nats."""
        return self._half_log_det_ratio(self.marginal_cov, self.cov_given_y1)

    @property
    def mi_y2(self) -> float:
        """I(X; Y2) = ½·log |Σ_X|/|A1A1ᵀ + Σ_n|, nats."""
        return self._half_log_det_ratio(self.marginal_cov, self.cov_given_y2)

    @property
    def mi_y2_given_y1(self) -> float:
        """I(X; Y2 | Y1) = ½·log |A2A2ᵀ + Σ_n|/|Σ_n|, nats."""
        return self._half_log_det_ratio(self.cov_given_y1, self.noise_cov)

    @property
    def mi_y1_given_y2(self) -> float:
        """I(X; Y1 | Y2) = ½·log |A1A1ᵀ + Σ_n|/|Σ_n|, nats."""
        return self._half_log_det_ratio(self.cov_given_y2, self.noise_cov)

    def pointwise_mi_y2_given_y1(self, x: Tensor, y: tuple[Tensor, Tensor]) -> Tensor:
        """i(x; y2 | y1) = log N(x; A1·y1 + A2·y2, Σ_n) − log N(x; A1·y1, A2A2ᵀ + Σ_n) per image [B], nats: the
        point-wise phrase MI of part 2 given part 1 (its mean over the joint is ``mi_y2_given_y1``)."""
        y1, y2 = (part.double() for part in y)
        mean_1 = y1 @ self.mixing_1.T
        return (gaussian_log_density(x, mean_1 + y2 @ self.mixing_2.T, self.noise_cov)
                - gaussian_log_density(x, mean_1, self.cov_given_y1))

    def sample_condition(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(y1 [n, d1], y2 [n, d2]) from the prior."""
        y1 = torch.randn(n, self.dim_y1, generator=generator, dtype=torch.float64).float()
        y2 = torch.randn(n, self.dim_y2, generator=generator, dtype=torch.float64).float()
        return y1, y2

    def sample_data(self, y: tuple[Tensor, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """x ~ p(x | y1, y2), [n, dim X]."""
        y1, y2 = y
        root = torch.linalg.cholesky(self.noise_cov)
        eps = torch.randn(y1.shape[0], self.dim_x, generator=generator, dtype=torch.float64)
        return (y1.double() @ self.mixing_1.T + y2.double() @ self.mixing_2.T + eps @ root.T).float()

    def velocity(self, x: Tensor, t: Tensor, y: tuple[Tensor | None, Tensor | None] | None) -> Tensor:
        """The exact velocity given (y1, y2), (y1, None), (None, y2), or ∅ (None or (None, None))."""
        y1, y2 = (None, None) if y is None else y
        mean = torch.zeros(self.dim_x, dtype=torch.float64, device=x.device)
        if y1 is not None:
            mean = mean + y1.double().to(x.device) @ self.mixing_1.T.to(x.device)
        if y2 is not None:
            mean = mean + y2.double().to(x.device) @ self.mixing_2.T.to(x.device)
        cov = {(True, True): self.noise_cov, (True, False): self.cov_given_y1,
               (False, True): self.cov_given_y2, (False, False): self.marginal_cov}[(y1 is not None, y2 is not None)]
        return gaussian_velocity(x, t, mean, cov)
