"""Forward latent computation: anchors -> Gaussian latents (docs/design/lzn.md §1.2).

Two solvers over the field ``velocity(x, tau; anchors)``:

* ``"euler"``: starts at tau=eps (default 1e-4), N equal steps, ends exactly at tau=1.
* ``"dpm++"``: 3rd-order multistep DPM-Solver++ in lambda = log((1-tau)/tau) with alpha=1-tau, sigma=tau. Its
  data prediction x0_hat is exactly the posterior mean m(x, tau), so the solver works on m directly. Starts at
  tau=eps (default 1e-3), ends at tau=0.999 (the reference stops short of 1, where lambda is -inf).

Each step keeps only its [b, d] state for backward (the posterior core recomputes its [b, n] blocks), so the
memory of a backward pass is O(b·n) for the blocks plus O(steps·b·d) for the states.
"""

from __future__ import annotations

import math

from torch import Tensor

from lzn_lightning.latent._precision import compute_dtype, full_precision
from lzn_lightning.latent.posterior import cross_sq_dist, pairwise_sq_dist, posterior_mean

SOLVERS = ("euler", "dpm++")
_DEFAULT_EPS = {"euler": 1e-4, "dpm++": 1e-3}
_DEFAULT_END = {"euler": 1.0, "dpm++": 0.999}


def _lam(tau: float) -> float:
    return math.log((1.0 - tau) / tau)


def _field_sq_dist(anchors: Tensor, own: Tensor | None) -> Tensor:
    """The squared distances every step of a flow shares: between the anchors [n, n], or with ``own`` from
    each row's own anchor to the anchors [b, n] (the bank context)."""
    return pairwise_sq_dist(anchors) if own is None else cross_sq_dist(own, anchors)


def euler_forward(
    x: Tensor,
    anchors: Tensor,
    tau_start: float,
    tau_end: float,
    steps: int,
    log_weights: Tensor | None = None,
    own: Tensor | None = None,
) -> Tensor:
    """Euler integration of dx/dtau = (x - m)/tau from tau_start to tau_end in equal steps."""
    h = (tau_end - tau_start) / steps
    sq_dist = _field_sq_dist(anchors, own)  # once for every step
    for k in range(steps):
        tau = tau_start + k * h
        m, _ = posterior_mean(x, anchors, tau, log_weights, own=own, sq_dist=sq_dist)
        x = x + (h / tau) * (x - m)
    return x


def dpm_solver_pp_forward(
    x: Tensor,
    anchors: Tensor,
    tau_start: float,
    tau_end: float,
    steps: int,
    log_weights: Tensor | None = None,
    order: int = 3,
    lower_order_final: bool = True,
    own: Tensor | None = None,
) -> Tensor:
    """Multistep DPM-Solver++ (data prediction = posterior mean m) on a uniform tau grid.

    Step 1 is first order, step 2 second order, later steps ``order`` (3); with ``lower_order_final`` and
    fewer than 10 steps the last steps drop order as in the reference solver. NFE = steps.
    """
    taus = [tau_start + k * (tau_end - tau_start) / steps for k in range(steps + 1)]
    lams = [_lam(t) for t in taus]
    ms: list[Tensor] = []  # data predictions m_{k-1}, m_{k-2}, m_{k-3} (most recent last)
    sq_dist = _field_sq_dist(anchors, own)  # once for every step
    for k in range(1, steps + 1):
        m, _ = posterior_mean(x, anchors, taus[k - 1], log_weights, own=own, sq_dist=sq_dist)
        ms = [*ms[-2:], m]
        step_order = min(order, k)
        if lower_order_final and steps < 10:
            step_order = min(step_order, steps + 1 - k)
        h = lams[k] - lams[k - 1]
        sigma_ratio = taus[k] / taus[k - 1]
        alpha = 1.0 - taus[k]
        phi1 = math.expm1(-h)
        x = sigma_ratio * x - (alpha * phi1) * ms[-1]
        if step_order == 2:
            r0 = (lams[k - 1] - lams[k - 2]) / h
            x = x - (0.5 * alpha * phi1 / r0) * (ms[-1] - ms[-2])
        elif step_order == 3:
            r0 = (lams[k - 1] - lams[k - 2]) / h
            r1 = (lams[k - 2] - lams[k - 3]) / h
            d1_0 = (ms[-1] - ms[-2]) / r0
            d1_1 = (ms[-2] - ms[-3]) / r1
            d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            x = x + (alpha * phi2) * d1 - (alpha * phi3) * d2
    return x


def compute_latent(
    anchors: Tensor,
    start: Tensor,
    noise: Tensor,
    steps: int = 20,
    solver: str = "euler",
    eps: float | None = None,
    tau_end: float | None = None,
    log_weights: Tensor | None = None,
    self_in_field: bool = False,
) -> Tensor:
    """Latent computation: push ``start`` anchors through the flow of all ``anchors`` to the Gaussian side.

    The initial point is ``eps*noise + (1-eps)*start`` at tau=eps; the noise picks where inside its zone each
    latent lands (docs/design/lzn.md §1.2). Differentiable w.r.t. ``anchors``, ``start`` and ``noise``.

    Args:
        anchors: All anchors defining the field [n, d] (the gathered global batch under DDP).
        start: The caller's own anchors [b, d] (a subset of ``anchors`` in the DDP case).
        noise: Prior noise [b, d] (the caller scales it, e.g. by 0.45 for representation learning).
        steps: Number of solver steps (= network-free function evaluations).
        solver: ``"euler"`` or ``"dpm++"``.
        eps: Start time; default 1e-4 (euler) or 1e-3 (dpm++).
        tau_end: End time; default 1.0 (euler) or 0.999 (dpm++).
        log_weights: Optional log mixture weights [n].
        self_in_field: Row i's field is ``anchors`` plus its own ``start[i]`` (which is then not among
            ``anchors``): the batch-independent bank context of inference, for a whole batch at the cost of
            one shared field. Exactly ``compute_latent(cat([anchors, start[i:i+1]]), start[i:i+1],
            noise[i:i+1])`` per row.

    Returns:
        Latents [b, d] in float32 (float64 for float64 inputs).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if start.shape != noise.shape:
        raise ValueError(
            f"start {tuple(start.shape)} and noise {tuple(noise.shape)} must have the same shape"
        )
    if start.dim() != 2 or anchors.dim() != 2 or start.shape[1] != anchors.shape[1]:
        raise ValueError(
            f"expected anchors [n, d] and start [b, d], got {tuple(anchors.shape)} and {tuple(start.shape)}"
        )
    eps = _DEFAULT_EPS[solver] if eps is None else eps
    tau_end = _DEFAULT_END[solver] if tau_end is None else tau_end
    if not 0.0 < eps < tau_end <= 1.0:
        raise ValueError(f"need 0 < eps < tau_end <= 1, got eps={eps}, tau_end={tau_end}")
    dtype = compute_dtype(anchors, start, noise)
    with full_precision():
        x = eps * noise.to(dtype) + (1.0 - eps) * start.to(dtype)
        anchors = anchors.to(dtype)
        own = start.to(dtype) if self_in_field else None
        if solver == "euler":
            return euler_forward(x, anchors, eps, tau_end, steps, log_weights, own=own)
        if tau_end >= 1.0:
            raise ValueError("dpm++ needs tau_end < 1 (lambda = log((1-tau)/tau) is -inf at tau=1)")
        return dpm_solver_pp_forward(x, anchors, eps, tau_end, steps, log_weights, own=own)
