"""The stable target field (STF; Xu, Tong & Jaakkola, ICLR 2023) for the straight path: a lower-variance
flow-matching target made from several images of the same condition.

The conditional target u* = x1 − ε of one pair (x1, ε) is an unbiased but noisy draw of the marginal velocity
u(x_t | y) = (E[x1 | x_t, y] − x_t)/(1 − t). At small t (much noise) the posterior E[x1 | x_t, y] is close to the prior
mean E[x1 | y], and one x1 is a poor estimate of it: in the toy world the layout a prompt implies (which object goes
left) moves the per-pixel loss by ~7 % only, and a model trained on single-image targets never learnt it. STF
replaces E[x1 | x_t, y] by its self-normalised importance estimate over K reference images x1_k of the same condition,
the first being the image x_t was made from:

    u_STF = (Σ_k w_k·x1_k − x_t)/(1 − t),   w = softmax_k(−‖x_t − t·x1_k‖² / (2(1 − t)²))

(the Gaussian likelihood of x_t under each reference). K = 1 is the plain target; at large t the weights single out
x1_0 and u_STF → x1 − ε; at small t they are near uniform and u_STF averages K images. The bias vanishes as K grows.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["stf_velocity_target"]


def stf_velocity_target(x_t: Tensor, t: Tensor, references: Tensor) -> Tensor:
    """u_STF = (Σ_k w_k·x1_k − x_t)/(1 − t), w = softmax_k(−‖x_t − t·x1_k‖²/(2(1 − t)²)), paper convention (t = 1 data).

    ``x_t`` [B, ...], ``t`` [B] in [0, 1), ``references`` [B, K, ...] with references[:, 0] the image x_t was made from.
    """
    if references.ndim != x_t.ndim + 1 or references.shape[0] != x_t.shape[0] or references.shape[2:] != x_t.shape[1:]:
        raise ValueError(f"references must be [B, K, ...] matching x_t {tuple(x_t.shape)}; got {tuple(references.shape)}")
    if t.shape != (x_t.shape[0],):
        raise ValueError(f"t must be [B] = [{x_t.shape[0]}]; got {tuple(t.shape)}")
    if bool((t >= 1).any()):
        raise ValueError("t must be < 1: at t = 1 the image is clean and the velocity is undefined")
    per_image = [-1] + [1] * (x_t.ndim - 1)
    residual = x_t[:, None] - t.view(-1, 1, *per_image[1:]) * references  # [B, K, ...]
    log_w = -residual.flatten(2).square().sum(-1) / (2 * (1 - t[:, None]) ** 2)  # [B, K]
    weights = log_w.softmax(dim=1).view(*log_w.shape, *[1] * (x_t.ndim - 1))
    return ((weights * references).sum(1) - x_t) / (1 - t).view(per_image)
