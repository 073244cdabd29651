"""RFMI for vectors: a conditional rectified flow on X given Y, and its MI by importance-sampled time (Prop. 3.3).

One MLP v(x_t, t, c) learns both velocities: c = y (conditional) or c = ∅ (y zeroed, a flag cleared), with y dropped to
∅ with probability ``p_uncond`` during training (as CFG models are trained). The CFM loss on x_t = t·x1 + (1 − t)·x0,
x0 ~ N(0, I), is ‖v(x_t, t, c) − (x1 − x0)‖²; its minimiser is u_t(x_t|c) = E[x1 − x0 | x_t, c] whatever the law of
training times, so t is drawn half from U(0, 1) and half from the MI density q (where the estimator looks). Then

    I(X; Y) = ∫₀¹ t/(1 − t) · E[u_t(x_t|y)·(u_t(x_t|y) − u_t(x_t|∅))] dt = ∫₀¹ t/(1 − t) · E‖u_y − u_∅‖² dt

(the two agree for exact fields, since E_{y|x_t}[u_y] = u_∅) is estimated on held-out pairs by
``estimate_mi_draws_from_pairs`` (importance-sampled t, ``density.TruncatedRatioDensity``). With learned fields the
forms differ (``vector_rf_mi``): the default "cross" form Δ_a·Δ_b of two independently trained models was the most
accurate on the benchmark (docs/synthetic_quick.md). By default each coordinate is first Gaussianised
(``gaussianise_marginals``), which leaves I(X; Y) unchanged.

``members`` independent MLPs of the same shape train together (batched matmuls, one optimiser whose per-parameter
state keeps them independent), so the two models of the cross form, and several tasks or seeds of equal dims, cost
one training loop.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..mi.conventions import straight_path
from ..mi.density import TruncatedRatioDensity
from ..mi.estimate import estimate_mi_draws_from_pairs
from ..util.progress import progress_bar
from ..mi.stats import mean_and_standard_error

__all__ = ["VectorRFConfig", "EnsembleVelocityMLP", "train_vector_rf", "vector_rf_mi", "default_hidden",
           "gaussianise_marginals", "estimate_vector_mi"]


def default_hidden(dim_x: int, dim_y: int) -> int:
    """MLP width by problem size (MINDE's rule, one step wider): 128 to 10 dims in all, 256 to 50, 512 above."""
    total = dim_x + dim_y
    return 128 if total <= 10 else 256 if total <= 50 else 512


@dataclass
class VectorRFConfig:
    """All hyperparameters of the vector RF and its MI estimate (units: steps, samples, nats)."""

    hidden: int = 0  # 0: ``default_hidden`` by dims
    depth: int = 3  # residual blocks
    steps: int = 4000
    batch: int = 512
    lr: float = 2e-3  # Adam, cosine-decayed to lr/20, 200 warm-up steps
    weight_decay: float = 0.0
    ema: float = 0.999  # the estimate uses the EMA weights
    p_uncond: float = 0.3  # probability of dropping y to ∅ in training
    t_mix: float = 0.5  # fraction of training times from q (the rest uniform)
    t_eps: float = 0.99  # q ∝ min(t/(1 − t), t_ε/(1 − t_ε)) (density.TruncatedRatioDensity); unbiased for any t_ε
    t_max: float = 0.999  # integrate over [0, t_max] only (1.0: all of it); see ``vector_rf_mi``
    n_t: int = 32  # time draws per test sample
    marginals: str = "gauss"  # "gauss": ``gaussianise_marginals`` first; "standard": the protocol's standardisation
    form: str = "cross"  # "cross" (2 models, default), "squared" or "dot" (Prop. 3.3): see ``vector_rf_mi``
    fourier: int = 8  # sin/cos time frequencies

    def resolved_hidden(self, dim_x: int, dim_y: int) -> int:
        return self.hidden or default_hidden(dim_x, dim_y)

    def as_dict(self) -> dict:
        return asdict(self)


class EnsembleLinear(nn.Module):
    """``members`` independent affine maps: x [E, B, d_in] → [E, B, d_out] (or one member's x [B, d_in])."""

    def __init__(self, members: int, d_in: int, d_out: int, zero: bool = False):
        super().__init__()
        bound = 0.0 if zero else 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(members, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(members, 1, d_out))

    def forward(self, x: Tensor, member: int | None = None) -> Tensor:
        if member is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.addmm(self.bias[member], x, self.weight[member])


def time_features(t: Tensor, fourier: int) -> Tensor:
    """[..., 2·fourier + 1]: sin/cos(π·2^k·t) for k < fourier, and logit(t)/4 with t clamped to [1e-5, 1 − 1e-5]."""
    freqs = math.pi * 2.0 ** torch.arange(fourier, dtype=t.dtype, device=t.device)
    angles = t.unsqueeze(-1) * freqs
    tc = t.clamp(1e-5, 1 - 1e-5)
    logit = (torch.log(tc) - torch.log1p(-tc)).unsqueeze(-1) / 4
    return torch.cat([angles.sin(), angles.cos(), logit], dim=-1)


class EnsembleVelocityMLP(nn.Module):
    """v(x_t, t, c) for ``members`` independent models: input [x_t, y·keep, keep, time features], residual SiLU MLP."""

    def __init__(self, members: int, dim_x: int, dim_y: int, hidden: int, depth: int = 3, fourier: int = 8):
        super().__init__()
        self.members, self.dim_x, self.dim_y, self.fourier = members, dim_x, dim_y, fourier
        self.inp = EnsembleLinear(members, dim_x + dim_y + 1 + 2 * fourier + 1, hidden)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EnsembleLinear(members, hidden, hidden), EnsembleLinear(members, hidden, hidden)])
            for _ in range(depth)
        )
        self.out = EnsembleLinear(members, hidden, dim_x)

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor | None, member: int | None = None,
                keep: Tensor | None = None) -> Tensor:
        """x_t [E, B, dx] (or [B, dx] with ``member``), t [E, B] / [B], y like x_t with dy or None for ∅.

        ``keep`` [..., 1] (1 = y, 0 = ∅ per row) mixes conditional and unconditional rows in one pass.
        """
        if keep is None:
            keep = torch.ones_like(x_t[..., :1]) if y is not None else torch.zeros_like(x_t[..., :1])
        if y is None:
            y = x_t.new_zeros(*x_t.shape[:-1], self.dim_y)
        h = torch.cat([x_t, y * keep, keep, time_features(t, self.fourier)], dim=-1)
        h = nn.functional.silu(self.inp(h, member))
        for first, second in self.blocks:
            h = h + second(nn.functional.silu(first(h, member)), member)
        return self.out(nn.functional.silu(h), member)


def gaussianise_marginals(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each coordinate mapped through Φ⁻¹ of the training rows' empirical CDF (midpoint ranks, linear between them).

    A strictly increasing map per coordinate of X (and, separately, of Y) leaves I(X; Y) unchanged, and makes heavy
    tails (Student-t, half-cube, CDF-squashed tasks) Gaussian in each margin, which a velocity MLP fits far better.
    """
    from scipy.special import ndtri

    train, test = np.asarray(train, dtype=np.float64), np.asarray(test, dtype=np.float64)
    n = train.shape[0]
    out_train, out_test = np.empty_like(train), np.empty_like(test)
    levels = (np.arange(n) + 0.5) / n
    for j in range(train.shape[1]):
        order = np.sort(train[:, j])
        out_train[:, j] = ndtri(np.interp(train[:, j], order, levels))
        out_test[:, j] = ndtri(np.interp(test[:, j], order, levels))  # beyond the training range: the end levels
    return out_train.astype(np.float32), out_test.astype(np.float32)


def _cosine_lr(step: int, steps: int, warmup: int = 200, floor: float = 0.05) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train_vector_rf(
    x: Tensor,
    y: Tensor,
    config: VectorRFConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    should_stop=None,
) -> EnsembleVelocityMLP:
    """Train ``E`` conditional RFs of X given Y at once; x [E, N, dx], y [E, N, dy] (or [N, dx], [N, dy] for E = 1).

    Returns the EMA model in eval mode. ``should_stop()`` (optional) is polled every 100 steps to honour interrupts.
    """
    config = config or VectorRFConfig()
    if x.ndim == 2:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if x.ndim != 3 or y.ndim != 3 or x.shape[:2] != y.shape[:2]:
        raise ValueError(f"x and y must be [E, N, d] with equal E and N; got {tuple(x.shape)} and {tuple(y.shape)}")
    members, n, dim_x = x.shape
    dim_y = y.shape[2]
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)
    model = EnsembleVelocityMLP(members, dim_x, dim_y, config.resolved_hidden(dim_x, dim_y), config.depth,
                                config.fourier).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, config.steps))
    x, y = x.to(device, torch.float32), y.to(device, torch.float32)
    density = TruncatedRatioDensity(config.t_eps)
    q_pool = density.sample(200_000, gen).to(device, torch.float32)
    batch = min(config.batch, n)
    member_index = torch.arange(members, device=device).unsqueeze(1)
    for step in progress_bar(range(config.steps), enabled=progress, desc="vector RF"):
        if should_stop is not None and step % 100 == 0 and should_stop():
            break
        idx = torch.randint(0, n, (members, batch), generator=gen).to(device)
        x1, yb = x[member_index, idx], y[member_index, idx]
        from_q = torch.rand(members, batch, generator=gen).to(device) < config.t_mix
        t = torch.where(from_q, q_pool[torch.randint(0, q_pool.numel(), (members, batch), generator=gen).to(device)],
                        torch.rand(members, batch, generator=gen).to(device))
        x0 = torch.randn(members, batch, dim_x, generator=gen).to(device)
        x_t, target = straight_path(x1, x0, t)
        keep = (torch.rand(members, batch, 1, generator=gen).to(device) >= config.p_uncond).float()
        pred = model(x_t, t, yb, keep=keep)
        loss = ((pred - target) ** 2).sum(-1).mean(-1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(config.ema, (1 + step) / (10 + step))
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
    return ema.eval()


@torch.no_grad()
def vector_rf_mi(
    model: EnsembleVelocityMLP,
    x: Tensor,
    y: Tensor,
    member: int | tuple[int, int] = 0,
    config: VectorRFConfig | None = None,
    seed: int = 0,
    chunk: int = 65536,
) -> tuple[float, float]:
    """(MI, its Monte-Carlo standard error) in nats on held-out pairs x [N, dx], y [N, dy], by ``estimate_mi``.

    u(·|y) is the model given y and u(·|∅) the model given ∅. ``form``: "dot" u_y·(u_y − u_∅) (Prop. 3.3);
    "squared" ‖Δ‖², Δ = u_y − u_∅; "cross" Δ_a·Δ_b for ``member = (a, b)``, two models trained independently on the
    same rows: their errors δ_a, δ_b average out of Δ_a·Δ_b = ‖Δ‖² + Δ·(δ_a + δ_b) + δ_a·δ_b, where ‖Δ + δ‖² keeps
    the positive E‖δ‖² (weighted by t/(1 − t)). Each is passed to ``estimate_mi_draws_from_pairs`` as (u, u_0) with
    u·(u − u_0) equal to the wanted integrand.

    Above t_ε the importance weight Z·r(t)/r(t_ε) is unbounded, and a learned Δ does not vanish at t → 1 as the true
    one does (Δ ~ (1 − t)), so rare draws near 1 can dominate (an MC standard error of 0.2 nats was seen on a 1-D
    Gaussian). ``t_max < 1`` drops the integrand above t_max, a bias of O((1 − t_max)²) for smooth densities.
    """
    config = config or VectorRFConfig()
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    a, b = (member, member) if isinstance(member, int) else member
    if config.form == "cross" and a == b:
        raise ValueError("form='cross' needs two members, member=(a, b) with a != b")
    k = config.n_t
    per_sample = []
    step = max(1, chunk // max(1, k))
    for start in range(0, x.shape[0], step):
        xb = x[start : start + step].to(device, torch.float32)
        yb = y[start : start + step].to(device, torch.float32)

        def pair(x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
            y_rep = yb.repeat(x_t.shape[0] // yb.shape[0], 1)
            u_y, u_0 = model(x_t, t, y_rep, a), model(x_t, t, None, a)
            if config.t_max < 1:
                keep = (t <= config.t_max).to(u_y.dtype).unsqueeze(-1)  # 0 · (0 − 0) = 0 above t_max, any form
                u_y, u_0 = u_y * keep, u_0 * keep
            if config.form == "dot":
                return u_y, u_0
            if config.form == "squared":
                return u_y - u_0, torch.zeros_like(u_0)  # u·(u − 0) = ‖Δ‖²
            if config.form == "cross":
                delta_a, delta_b = u_y - u_0, model(x_t, t, y_rep, b) - model(x_t, t, None, b)
                delta_b = delta_b * keep if config.t_max < 1 else delta_b
                return delta_a, delta_a - delta_b  # u·(u − u_0) = Δ_a·Δ_b
            raise ValueError(f"form must be 'dot', 'squared' or 'cross'; got {config.form!r}")

        draws = estimate_mi_draws_from_pairs(pair, xb, k, config.t_eps, gen, draws_per_call=k)
        per_sample.append(draws.mean(dim=1))
    mean, standard_error = mean_and_standard_error(torch.cat(per_sample).double())
    return float(mean), float(standard_error)


def estimate_vector_mi(
    x_train: np.ndarray | Tensor,
    y_train: np.ndarray | Tensor,
    x_test: np.ndarray | Tensor,
    y_test: np.ndarray | Tensor,
    config: VectorRFConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> float:
    """One-call RFMI of I(X; Y) in nats: train on (x_train, y_train), estimate on (x_test, y_test)."""
    config = config or VectorRFConfig()
    if config.marginals == "gauss":
        (x_train, x_test), (y_train, y_test) = gaussianise_marginals(x_train, x_test), gaussianise_marginals(y_train, y_test)
    tensors = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (x_train, y_train, x_test, y_test)]
    members = 2 if config.form == "cross" else 1
    x, y = tensors[0].expand(members, *tensors[0].shape), tensors[1].expand(members, *tensors[1].shape)
    model = train_vector_rf(x, y, config, seed, device)
    return vector_rf_mi(model, tensors[2], tensors[3], (0, 1) if members == 2 else 0, config, seed + 1)[0]
