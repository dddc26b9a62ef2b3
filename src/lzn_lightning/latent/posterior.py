"""Zone posteriors and the velocity of the minibatch flow, in O(b·n) memory.

For query rows ``x`` [b, d] and anchors ``a`` [n, d] with weights ``w`` (lzn_reference.md §1.1):

    logit_ij = -||x_i - (1-tau) a_j||^2 / (2 tau^2) + log w_j
    P = softmax_j(logit),   m_i = sum_j P_ij a_j,   v_i = (x_i - m_i) / tau

The reference materialises the [b, n, d] differences. Here the row-constant ||x_i||^2 is dropped (softmax is
shift invariant), which leaves two GEMMs:

    logit_ij = s * <x_i, a_j> + bias_j,   s = (1-tau)/tau^2,   bias_j = -(1-tau)^2 ||a_j||^2 / (2 tau^2) + log w_j

To keep the cancellation small, the logits are computed with both sides centred on the anchor mean c (exact:
x - (1-tau) a_j is unchanged when x -> x - (1-tau) c and a_j -> a_j - c); the mean m uses the raw anchors. The softmax/GEMM core is a custom autograd function
that saves only its inputs and recomputes P chunk by chunk in backward (flash-attention style), so neither the
forward nor the backward ever holds more than one [chunk, n] block.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lzn_lightning.latent._precision import compute_dtype, full_precision

# Why 2**24: one [chunk, n] float32 block of 16M entries is 64 MiB; a few live at once in backward. Large enough
# that the GEMMs stay efficient, small enough that n=8192 on a 24 GiB machine never comes near the limit.
_BLOCK_ELEMENTS = 2**24


def _row_chunks(b: int, n: int) -> list[slice]:
    step = max(1, min(b, _BLOCK_ELEMENTS // max(n, 1)))
    return [slice(i, min(i + step, b)) for i in range(0, b, step)]


def _softmax_mean_logit_grad(p: Tensor, grad_m: Tensor, k: Tensor) -> Tensor:
    """d<grad_m, m>/d logits for m = P @ a, written so that near-one-hot rows cancel nothing.

    The textbook form ``P_ij * (<g_i, a_j> - <g_i, m_i>)`` subtracts two nearly equal numbers when row i is
    (nearly) one-hot: the true value is O(1 - P_ij*) while each term is O(|g||a|). With <g_i, m_i> taken from the
    forward's mean (a different reduction, as this package once did) float32 leaves only rounding error, which the
    caller multiplies by s = (1-tau)/tau^2 (up to 1e8). Here both terms come from the same products G and are
    shifted by the same per-row reference G_ij* (j* = the row's most probable zone) before they meet:

        d_ij = P_ij * ((G_ij - G_ij*) - sum_k P_ik (G_ik - G_ij*)),   G = g @ a^T

    which is the same value in exact arithmetic (the shift cancels because sum_k P_ik = 1), but now the dominant
    column is exactly ``-P_ij* sum_k P_ik (G_ik - G_ij*)``: a sum of small terms, each with small relative error.
    Differences of G only involve a_j - a_j*, so the centred anchors ``k`` give the same values with less
    rounding than the raw ones.

    Args:
        p: Posterior block [c, n].
        grad_m: Upstream gradient of the rows' means [c, d].
        k: Centred anchors [n, d].

    Returns:
        Gradient with respect to the logits [c, n].
    """
    g_a = grad_m @ k.T  # [c, n]
    ref = g_a.gather(1, p.argmax(dim=1, keepdim=True))  # [c, 1]: G at each row's dominant zone
    g_a = g_a - ref
    return p * (g_a - (p * g_a).sum(dim=1, keepdim=True))


class _SoftmaxMean(torch.autograd.Function):
    """m = softmax(s * q @ k.T + bias) @ v and log P[i, target_i], recomputing P in backward.

    ``k`` are the centred anchors (for accurate logits) and ``v`` the raw anchors (so that a one-hot posterior
    returns an anchor bit-exactly, which keeps x - m accurate at tiny tau).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, s: float, targets: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        b = q.shape[0]
        m = q.new_empty(b, v.shape[1])
        logp = q.new_zeros(b)
        lse = q.new_empty(b)
        with full_precision():
            for rows in _row_chunks(b, k.shape[0]):
                logits = torch.addmm(bias.unsqueeze(0), q[rows], k.T, alpha=s)  # [c, n]
                lse[rows] = torch.logsumexp(logits, dim=1)
                p = torch.exp(logits - lse[rows, None])  # [c, n]
                m[rows] = p @ v  # [c, d]
                if targets is not None:
                    logp[rows] = logits.gather(1, targets[rows, None]).squeeze(1) - lse[rows]
        ctx.save_for_backward(q, k, v, bias, lse, targets)
        ctx.s = s
        return m, logp

    @staticmethod
    def backward(ctx: Any, grad_m: Tensor, grad_logp: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        q, k, v, bias, lse, targets = ctx.saved_tensors
        s = ctx.s
        grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        grad_bias = torch.zeros_like(bias)
        with full_precision():
            grad_m = grad_m.to(q.dtype)
            grad_logp = grad_logp.to(q.dtype)
            for rows in _row_chunks(q.shape[0], k.shape[0]):
                logits = torch.addmm(bias.unsqueeze(0), q[rows], k.T, alpha=s)  # [c, n]
                p = torch.exp(logits - lse[rows, None])  # [c, n]
                d_logits = _softmax_mean_logit_grad(p, grad_m[rows], k)  # [c, n]
                if targets is not None:
                    # d log P[i, t_i] / d logits = onehot(t_i) - P_i
                    d_logits -= grad_logp[rows, None] * p
                    d_logits.scatter_add_(1, targets[rows, None], grad_logp[rows, None])
                grad_v += p.T @ grad_m[rows]
                grad_k += s * (d_logits.T @ q[rows])
                grad_q[rows] = s * (d_logits @ k)
                grad_bias += d_logits.sum(dim=0)
        return grad_q, grad_k, grad_v, grad_bias, None, None


def _zone_bias(a_c: Tensor, tau: float) -> Tensor:
    """-(1-tau)^2 |a_c|^2 / (2 tau^2) per row of centred anchors [n, d] -> [n] (the GEMM form's anchor term)."""
    return -((1.0 - tau) ** 2) / (2.0 * tau**2) * (a_c * a_c).sum(dim=1)


def _prepare(
    x: Tensor, anchors: Tensor, tau: float, log_weights: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, float, Tensor]:
    """Centre, cast and build the per-anchor bias. Returns (x_c, a_c, bias, s, centre)."""
    if x.dim() != 2 or anchors.dim() != 2 or x.shape[1] != anchors.shape[1]:
        raise ValueError(
            f"expected x [b, d] and anchors [n, d] with the same d, got {tuple(x.shape)} and {tuple(anchors.shape)}"
        )
    if log_weights is not None and log_weights.shape != (anchors.shape[0],):
        raise ValueError(f"log_weights must have shape [n]={anchors.shape[0]}, got {tuple(log_weights.shape)}")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    dtype = compute_dtype(x, anchors, log_weights)
    x, anchors = x.to(dtype), anchors.to(dtype)
    centre = anchors.mean(dim=0).detach()  # [d]; any constant works, the mean minimises cancellation
    a_c = anchors - centre
    x_c = x - (1.0 - tau) * centre
    bias = _zone_bias(a_c, tau)  # [n]
    if log_weights is not None:
        bias = bias + log_weights.to(dtype)
    return x_c, a_c, bias, (1.0 - tau) / tau**2, centre


def _posterior_mean_with_own(x: Tensor, anchors: Tensor, own: Tensor, tau: float) -> Tensor:
    """m_i over the field ``anchors`` [n, d] plus row i's own anchor ``own[i]``: n+1 zones per row.

    One extra logit per row, so a whole batch costs O(b·n) like a shared field, where calling the flow once per
    row with its own [n+1, d] field would cost b separate flows. Plain autograd (used for inference).
    """
    x_c, a_c, bias, s, centre = _prepare(x, anchors, tau, None)
    own = own.to(x_c.dtype)
    own_c = own - centre  # [b, d]
    # The same logit convention as the GEMM form (row constant |x_c|^2 dropped): s <x_c, a_c> + bias.
    own_logit = s * (x_c * own_c).sum(dim=1) + _zone_bias(own_c, tau)  # [b]
    raw = anchors.to(x_c.dtype)
    n = raw.shape[0]
    parts = []
    for rows in _row_chunks(x.shape[0], n + 1):
        logits = torch.addmm(bias.unsqueeze(0), x_c[rows], a_c.T, alpha=s)  # [c, n]
        p = torch.softmax(torch.cat([logits, own_logit[rows, None]], dim=1), dim=1)  # [c, n+1]
        parts.append(p[:, :n] @ raw + p[:, n:] * own[rows])  # [c, d]
    return torch.cat(parts)


def posterior_mean(
    x: Tensor,
    anchors: Tensor,
    tau: float,
    log_weights: Tensor | None = None,
    targets: Tensor | None = None,
    own: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Posterior mean of the anchors given x at flow time tau, and optionally log P(target zone).

    Args:
        x: Query points [b, d].
        anchors: Anchors [n, d].
        tau: Flow time in (0, 1].
        log_weights: Optional log mixture weights [n] (-inf for a zone with weight 0).
        targets: Optional LongTensor [b] of zone indices.
        own: Optional [b, d]: row i's field is ``anchors`` plus ``own[i]`` (no weights or targets then).

    Returns:
        ``(m, logp)``: m [b, d] = sum_j P_ij a_j, and logp [b] = log P[i, targets[i]] (None without targets).
    """
    if own is not None:
        if log_weights is not None or targets is not None:
            raise ValueError("own anchors take no log_weights or targets")
        if own.shape != x.shape:
            raise ValueError(f"own must have the shape of x {tuple(x.shape)}, got {tuple(own.shape)}")
        with full_precision():
            return _posterior_mean_with_own(x, anchors, own, tau), None
    with full_precision():
        x_c, a_c, bias, s, _ = _prepare(x, anchors, tau, log_weights)
        if targets is not None:
            if targets.shape != (x.shape[0],):
                raise ValueError(f"targets must have shape [b]={x.shape[0]}, got {tuple(targets.shape)}")
            targets = targets.to(device=x.device, dtype=torch.long)
        m, logp = _SoftmaxMean.apply(x_c, a_c, anchors.to(x_c.dtype), bias, s, targets)
        return m, (logp if targets is not None else None)


def velocity(x: Tensor, anchors: Tensor, tau: float, log_weights: Tensor | None = None) -> Tensor:
    """Velocity of the minibatch flow-matching ODE at (x, tau): v = (x - m(x, tau)) / tau.

    The exact marginal velocity of the path x_tau = tau*eps + (1-tau)*a_J from the weighted Dirac mixture of
    ``anchors`` (tau=0) to N(0, I) (tau=1); lzn_reference.md §1.1.

    Args:
        x: Points [b, d].
        anchors: Anchors [n, d].
        tau: Flow time in (0, 1].
        log_weights: Optional log mixture weights [n].

    Returns:
        Velocity [b, d] in float32 (float64 for float64 inputs).
    """
    m, _ = posterior_mean(x, anchors, tau, log_weights)
    with full_precision():
        return (x.to(m.dtype) - m) / tau
