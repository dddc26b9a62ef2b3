"""Reverse flow: latents -> anchor space, with the per-step log posterior of the target zone.

The maths: docs/design/lzn.md §1.3, §2.1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lzn_lightning.latent._precision import compute_dtype, full_precision
from lzn_lightning.latent.posterior import pairwise_sq_dist, posterior_mean


def trace_back(
    latent: Tensor,
    anchors: Tensor,
    steps: int = 100,
    log_weights: Tensor | None = None,
    targets: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Integrate the flow backwards from tau=1 to tau=0 with Euler, through the field of ``anchors``.

    Step s evaluates at tau_s = 1 - s/steps (s = 0..steps-1) and updates x <- x - v(x, tau_s)/steps, so the
    final point lies at tau=0, near one anchor. ``logp[s, i]`` is log P(zone targets[i] | x_s, tau_s),
    evaluated at the state *before* step s; row 0 (tau=1) carries only the weights.

    Args:
        latent: Latents [b, d] (state at tau=1).
        anchors: Target anchors [n, d].
        steps: Number of Euler steps S.
        log_weights: Optional log mixture weights [n] (e.g. log class frequencies).
        targets: Optional LongTensor [b] of zone indices into ``anchors``.

    Returns:
        ``(point, logp)``: final point [b, d], and logp [S, b] (None when ``targets`` is None).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dtype = compute_dtype(latent, anchors, log_weights)
    logps: list[Tensor] = []
    with full_precision():
        x = latent.to(dtype)
        anchors = anchors.to(dtype)
        h = 1.0 / steps
        sq_dist = pairwise_sq_dist(anchors)  # once for every step
        for s in range(steps):
            tau = 1.0 - s * h
            m, logp = posterior_mean(x, anchors, tau, log_weights, targets, sq_dist=sq_dist)
            if logp is not None:
                logps.append(logp)
            x = x - (h / tau) * (x - m)
    return x, (torch.stack(logps) if targets is not None else None)


def nearest_anchor(point: Tensor, anchors: Tensor) -> Tensor:
    """Index of the nearest anchor (squared L2) for each row of ``point`` [b, d] -> LongTensor [b]."""
    with full_precision():
        return torch.cdist(point.float(), anchors.float()).argmin(dim=1)
