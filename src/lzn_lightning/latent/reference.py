"""Reference-style materialising implementation of the latent ops (direct difference form).

This mirrors how the authors' code evaluates the field: it builds the [b, n, d] implied-noise tensor
eps_ij = (x_i - (1-tau) a_j)/tau at every evaluation. It is exact (no cancellation) but O(b·n·d) in memory.
It exists as the ground truth for tests (run it in float64) and as the baseline in benchmarks/latent_ops.py;
the package itself never calls it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def velocity_direct(x: Tensor, anchors: Tensor, tau: float, log_weights: Tensor | None = None) -> Tensor:
    """v_i = sum_j u_ij (eps_ij - a_j) / sum_j u_ij with u = w * exp(g - max g), g = -|eps_ij|^2/2."""
    return _velocity_and_logits(x, anchors, tau, log_weights)[0]


def _velocity_and_logits(
    x: Tensor, anchors: Tensor, tau: float, log_weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Returns (v [b, d], logits [b, n]) with logits = -|eps_ij|^2/2 + log w_j (unnormalised log
    posterior)."""
    eps = (x[:, None, :] - (1.0 - tau) * anchors[None, :, :]) / tau  # [b, n, d]
    g = -0.5 * (eps * eps).sum(dim=2)  # [b, n]
    if log_weights is not None:
        g = g + log_weights[None, :]
    u = torch.exp(g - g.max(dim=1, keepdim=True).values)
    v = (u[:, :, None] * (eps - anchors[None, :, :])).sum(dim=1) / u.sum(dim=1, keepdim=True)  # [b, d]
    return v, g


def euler_forward_direct(
    x: Tensor, anchors: Tensor, tau_start: float, tau_end: float, steps: int, checkpointed: bool = True
) -> Tensor:
    """Euler forward flow, each velocity call checkpointed as in the reference's Euler flow."""
    h = (tau_end - tau_start) / steps
    for k in range(steps):
        tau = tau_start + k * h
        if checkpointed and torch.is_grad_enabled():
            v = checkpoint(velocity_direct, x, anchors, tau, use_reentrant=False)
        else:
            v = velocity_direct(x, anchors, tau)
        x = x + h * v
    return x


def dpm_forward_direct(x: Tensor, anchors: Tensor, tau_start: float, tau_end: float, steps: int) -> Tensor:
    """DPM-Solver++ 3M written against the direct-form velocity, without checkpointing (as the reference)."""
    taus = [tau_start + k * (tau_end - tau_start) / steps for k in range(steps + 1)]
    lams = [math.log((1 - t) / t) for t in taus]
    ms: list[Tensor] = []
    for k in range(1, steps + 1):
        t_prev = taus[k - 1]
        m = x - t_prev * velocity_direct(x, anchors, t_prev)  # data prediction: m = x - tau v
        ms = [*ms[-2:], m]
        order = min(3, k) if steps >= 10 else min(3, k, steps + 1 - k)
        h = lams[k] - lams[k - 1]
        alpha, phi1 = 1 - taus[k], math.expm1(-h)
        x = (taus[k] / t_prev) * x - alpha * phi1 * ms[-1]
        if order == 2:
            r0 = (lams[k - 1] - lams[k - 2]) / h
            x = x - 0.5 * alpha * phi1 * (ms[-1] - ms[-2]) / r0
        elif order == 3:
            r0 = (lams[k - 1] - lams[k - 2]) / h
            r1 = (lams[k - 2] - lams[k - 3]) / h
            d1_0, d1_1 = (ms[-1] - ms[-2]) / r0, (ms[-2] - ms[-3]) / r1
            d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi2 = phi1 / h + 1
            phi3 = phi2 / h - 0.5
            x = x + alpha * phi2 * d1 - alpha * phi3 * d2
    return x


def trace_back_direct(
    latent: Tensor,
    anchors: Tensor,
    steps: int,
    log_weights: Tensor | None = None,
    targets: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Reverse Euler 1 -> 0 in the direct form, returning log P(target) before each step."""
    x, logps = latent, []
    for s in range(steps):
        tau = 1.0 - s / steps
        v, logits = _velocity_and_logits(x, anchors, tau, log_weights)
        if targets is not None:
            logps.append(torch.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1))
        x = x - v / steps
    return x, (torch.stack(logps) if targets is not None else None)
