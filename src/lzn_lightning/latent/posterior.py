"""Zone posteriors and the velocity of the minibatch flow, in O(b·n + n²) memory.

For query rows ``x`` [b, d] and anchors ``a`` [n, d] with weights ``w`` (docs/design/lzn.md §1.1):

    logit_ij = -||x_i - (1-tau) a_j||^2 / (2 tau^2) + log w_j
    P = softmax_j(logit),   m_i = sum_j P_ij a_j,   v_i = (x_i - m_i) / tau

The reference materialises the [b, n, d] differences. Here each row is written relative to a *reference zone*
r(i) (its most probable one) and row constants are dropped (softmax is shift invariant):

    logit_ij = s <u_i, a_j> - c ||a_j - a_r(i)||^2 + log w_j,   u_i = x_i - (1-tau) a_r(i),
    s = (1-tau)/tau^2,   c = (1-tau)^2 / (2 tau^2)

which is exact for any r(i). Why the reference: the plain GEMM form ``s <x_i, a_j> - c ||a_j||^2`` makes the
logits of two nearly coinciding anchors (a duplicate image, two dropout passes of one caption, an encoder that
maps many inputs close together) the small difference of two numbers of size ~|x||a|/tau^2 (up to 1e12 at
tau = 1e-4), so float32 loses them entirely. With the reference, u_i is as small as the row's distance to its
zone (~tau·sqrt(d) at the flow's start) and ||a_j - a_r||^2 comes from the anchors' own differences (the
matrix ``pairwise_sq_dist``, computed once per flow in float64), so nearby zones compete with the accuracy
of the direct form. Exact duplicates get exactly equal logits.

The softmax/GEMM core is a custom autograd function that saves only its inputs (plus each row's reference
index) and recomputes P chunk by chunk in backward (flash-attention style), so neither the forward nor the
backward ever holds more than one [chunk, n] block besides the [n, n] distances, which every step of a flow
shares.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lzn_lightning.latent._precision import compute_dtype, full_precision

# Why 2**24: one [chunk, n] float32 block of 16M entries is 64 MiB; a few live at once in backward. Large
# enough that the GEMMs stay efficient, small enough that n=8192 on a 24 GiB machine never comes near the
# limit.
_BLOCK_ELEMENTS = 2**24


def _row_chunks(b: int, n: int) -> list[slice]:
    step = max(1, min(b, _BLOCK_ELEMENTS // max(n, 1)))
    return [slice(i, min(i + step, b)) for i in range(0, b, step)]


def _softmax_mean_logit_grad(p: Tensor, grad_m: Tensor, k: Tensor) -> Tensor:
    """d<grad_m, m>/d logits for m = P @ a, written so that near-one-hot rows cancel nothing.

    The textbook form ``P_ij * (<g_i, a_j> - <g_i, m_i>)`` subtracts two nearly equal numbers when row i is
    (nearly) one-hot: the true value is O(1 - P_ij*) while each term is O(|g||a|). With <g_i, m_i> taken from
    the forward's mean (a different reduction, as this package once did) float32 leaves only rounding error,
    which the caller multiplies by s = (1-tau)/tau^2 (up to 1e8). Here both terms come from the same products
    G and are shifted by the same per-row reference G_ij* (j* = the row's most probable zone) before they
    meet:

        d_ij = P_ij * ((G_ij - G_ij*) - sum_k P_ik (G_ik - G_ij*)),   G = g @ a^T

    which is the same value in exact arithmetic (the shift cancels because sum_k P_ik = 1), but now the
    dominant column is exactly ``-P_ij* sum_k P_ik (G_ik - G_ij*)``: a sum of small terms, each with small
    relative error. Differences of G only involve a_j - a_j*, so the centred anchors ``k`` give the same
    values with less rounding than the raw ones.

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


def cross_sq_dist(p: Tensor, q: Tensor) -> Tensor:
    """||p_i - q_j||^2 [b, n] for all pairs of rows p [b, d] and q [n, d], accurate for nearly coinciding
    rows, differentiable.

    Computed as |p_i|^2 + |q_j|^2 - 2 <p_i, q_j> in float64 (then cast back). Why float64: in float32 that
    form loses the distance of two nearby anchors to cancellation (rounding of ~|a|^2 where D is ~|a|^2 *
    1e-8), and D enters the logits multiplied by (1-tau)^2 / (2 tau^2), up to 5e7. Float32 inputs multiply
    exactly in float64, so what is left is a rounding of ~1e-16 |a|^2: below 1e-3 nats of logit for |a| up to
    100 at tau = 1e-4. One [b, d] x [d, n] GEMM, where differencing all pairs costs b·n·d elementwise work
    both ways; two float64 [b, n] blocks are its peak memory.
    """
    with full_precision():
        if p.dtype == torch.float64:  # no wider type: difference the pairs (the ground truths' case)
            parts = []
            for rows in _row_chunks(p.shape[0], q.shape[0] * q.shape[1]):  # [c, n, d] blocks of bounded size
                diff = p[rows, None, :] - q[None, :, :]  # [c, n, d]
                parts.append((diff * diff).sum(dim=2))  # [c, n]
            return torch.cat(parts)
        wide_p = p.double()
        wide_q = wide_p if q is p else q.double()
        sq_p = (wide_p * wide_p).sum(dim=1)  # [b]
        sq_q = sq_p if q is p else (wide_q * wide_q).sum(dim=1)  # [n]
        # Not clamped at 0: a rounding of -1e-16 |a|^2 is harmless in the logits, and a clamp would keep a
        # [b, n] float64 mask for backward.
        dist = torch.addmm(sq_p[:, None] + sq_q[None, :], wide_p, wide_q.T, beta=1.0, alpha=-2.0)  # [b, n]
        return dist.to(p.dtype)


def pairwise_sq_dist(anchors: Tensor) -> Tensor:
    """||a_j - a_k||^2 for all anchor pairs [n, n] (``cross_sq_dist(anchors, anchors)``): one GEMM per flow,
    which every step shares."""
    return cross_sq_dist(anchors, anchors)


def _scales(tau: float) -> tuple[float, float]:
    """(s, c) = ((1-tau)/tau^2, (1-tau)^2/(2 tau^2)): the factors of <u, a_j> and |a_j - a_r|^2 in a logit."""
    return (1.0 - tau) / tau**2, (1.0 - tau) ** 2 / (2.0 * tau**2)


def _reference_logits(
    q: Tensor, k: Tensor, sq_dist: Tensor, bias: Tensor | None, ref: Tensor, tau: float
) -> tuple[Tensor, Tensor]:
    """(u [c, d], logits [c, n]) for rows q [c, d] with references ref [c]: u_i = q_i - (1-tau) k_r (small,
    the row's offset from its reference zone) and logit_ij = s <u_i, k_j> - c D[r, j] + bias_j."""
    s, c = _scales(tau)
    u = q - (1.0 - tau) * k[ref]  # [c, d]
    logits = torch.addmm(sq_dist[ref], u, k.T, beta=-c, alpha=s)  # [c, n]
    return u, (logits if bias is None else logits + bias)


def _choose_references(
    q: Tensor, k: Tensor, sq_dist: Tensor, bias: Tensor | None, tau: float
) -> tuple[Tensor, Tensor]:
    """Each row's most probable zone [c] and its logits [c, n] written relative to it.

    A first guess comes from the plain GEMM logits (cheap, inaccurate between nearby zones); when the accurate
    logits then put another zone first in some row, the block is recomputed with those references. Why the
    whole block: backward recomputes it with the same GEMM shapes, so forward and backward see the same
    rounding (a GEMM of a few rows rounds differently, and P moves with logit changes of 1e-2 nats).
    """
    s, c = _scales(tau)
    coarse = torch.addmm((k * k).sum(dim=1), q, k.T, beta=-c, alpha=s)  # [c, n]
    if bias is not None:
        coarse = coarse + bias
    ref = coarse.argmax(dim=1)  # [c]
    _, logits = _reference_logits(q, k, sq_dist, bias, ref, tau)
    better = logits.argmax(dim=1)
    if bool((better != ref).any()):
        ref = better
        _, logits = _reference_logits(q, k, sq_dist, bias, ref, tau)
    return ref, logits


def _normalised(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """P [c, n] = softmax(logits) with rows that sum to 1 to rounding, and each row's (top, total).

    Why not exp(logits - logsumexp): the logits are exact only up to a row constant and can be large
    (|u||a|s ~ 1e5 at tau = 1e-4), where float32 spaces numbers 0.01 apart; a separately rounded logsumexp
    then scales a whole row of P by up to 1%, and m = P a by the same factor (a latent error of 1% of |a|).
    """
    top = logits.max(dim=1).values  # [c]
    e = torch.exp(logits - top[:, None])  # [c, n]
    total = e.sum(dim=1)  # [c]
    return e / total[:, None], top, total


class _SoftmaxMean(torch.autograd.Function):
    """m = softmax(logits) @ v and log P[i, target_i], the logits written relative to each row's reference
    zone (module docstring); P is recomputed in backward from the saved inputs and references.

    ``k`` are the centred anchors (small GEMM operands), ``v`` the raw anchors (so that a one-hot posterior
    returns an anchor bit-exactly, which keeps x - m accurate at tiny tau), ``sq_dist`` their pairwise squared
    distances.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, q: Tensor, k: Tensor, v: Tensor, sq_dist: Tensor, bias: Tensor | None, tau: float,
        targets: Tensor | None,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        b = q.shape[0]
        m = q.new_empty(b, v.shape[1])
        logp = q.new_zeros(b)
        ref = torch.empty(b, dtype=torch.long, device=q.device)
        with full_precision():
            for rows in _row_chunks(b, k.shape[0]):
                ref[rows], logits = _choose_references(q[rows], k, sq_dist, bias, tau)  # [c], [c, n]
                p, top, total = _normalised(logits)  # [c, n], [c], [c]
                m[rows] = p @ v  # [c, d]
                if targets is not None:
                    logp[rows] = logits.gather(1, targets[rows, None]).squeeze(1) - top - total.log()
        ctx.save_for_backward(q, k, v, sq_dist, bias, ref, targets)
        ctx.tau = tau
        return m, logp

    @staticmethod
    def backward(ctx: Any, grad_m: Tensor, grad_logp: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        q, k, v, sq_dist, bias, ref, targets = ctx.saved_tensors
        tau = ctx.tau
        s, c = _scales(tau)
        grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        grad_dist = torch.zeros_like(sq_dist)
        grad_bias = torch.zeros_like(bias) if bias is not None else None
        with full_precision():
            grad_m = grad_m.to(q.dtype)
            grad_logp = grad_logp.to(q.dtype)
            for rows in _row_chunks(q.shape[0], k.shape[0]):
                r = ref[rows]
                u, logits = _reference_logits(q[rows], k, sq_dist, bias, r, tau)  # [c, d], [c, n]
                p = _normalised(logits)[0]  # [c, n]
                d_logits = _softmax_mean_logit_grad(p, grad_m[rows], k)  # [c, n]
                if targets is not None:
                    # d log P[i, t_i] / d logits = onehot(t_i) - P_i
                    d_logits -= grad_logp[rows, None] * p
                    d_logits.scatter_add_(1, targets[rows, None], grad_logp[rows, None])
                grad_v += p.T @ grad_m[rows]
                grad_u = s * (d_logits @ k)  # [c, d]
                grad_q[rows] = grad_u
                grad_k += s * (d_logits.T @ u)
                grad_k.index_add_(0, r, grad_u, alpha=-(1.0 - tau))  # through u = q - (1-tau) k_r
                grad_dist.index_add_(0, r, d_logits, alpha=-c)
                if grad_bias is not None:
                    grad_bias += d_logits.sum(dim=0)
        return grad_q, grad_k, grad_v, grad_dist, grad_bias, None, None


def _prepare(
    x: Tensor, anchors: Tensor, tau: float, log_weights: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Check, cast and centre. Returns (x_c, a_c, log_weights, centre)."""
    if x.dim() != 2 or anchors.dim() != 2 or x.shape[1] != anchors.shape[1]:
        raise ValueError(
            f"expected x [b, d] and anchors [n, d] with the same d, got {tuple(x.shape)} and "
            f"{tuple(anchors.shape)}"
        )
    if log_weights is not None and log_weights.shape != (anchors.shape[0],):
        raise ValueError(
            f"log_weights must have shape [n]={anchors.shape[0]}, got {tuple(log_weights.shape)}"
        )
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    dtype = compute_dtype(x, anchors, log_weights)
    x, anchors = x.to(dtype), anchors.to(dtype)
    centre = anchors.mean(dim=0).detach()  # [d]; any constant works, the mean keeps the GEMM operands small
    a_c = anchors - centre
    x_c = x - (1.0 - tau) * centre
    return x_c, a_c, (log_weights.to(dtype) if log_weights is not None else None), centre


def _posterior_mean_with_own(
    x: Tensor, anchors: Tensor, own: Tensor, tau: float, own_sq_dist: Tensor
) -> Tensor:
    """m_i over the field ``anchors`` [n, d] plus row i's own anchor ``own[i]``: n+1 zones per row.

    One extra logit per row, so a whole batch costs O(b·n) like a shared field, where calling the flow once
    per row with its own [n+1, d] field would cost b separate flows. Each row's reference zone is its own
    anchor (where a bank latent starts): the logits of the module docstring with r(i) = own, the distance term
    from ``own_sq_dist`` [b, n] = ||own_i - a_j||^2, which a solver computes once for all its steps
    (``cross_sq_dist``). Plain autograd (used for inference).
    """
    x_c, a_c, _, centre = _prepare(x, anchors, tau, None)
    s, c = _scales(tau)
    own = own.to(x_c.dtype)
    own_c = own - centre  # [b, d]
    u = x_c - (1.0 - tau) * own_c  # [b, d]
    own_logit = s * (u * own_c).sum(dim=1)  # [b]: the reference zone's distance term is 0
    raw = anchors.to(x_c.dtype)
    own_sq_dist = own_sq_dist.to(x_c.dtype)
    n = raw.shape[0]
    parts = []
    for rows in _row_chunks(x.shape[0], n + 1):
        logits = torch.addmm(own_sq_dist[rows], u[rows], a_c.T, beta=-c, alpha=s)  # [c, n]
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
    sq_dist: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Posterior mean of the anchors given x at flow time tau, and optionally log P(target zone).

    Args:
        x: Query points [b, d].
        anchors: Anchors [n, d].
        tau: Flow time in (0, 1].
        log_weights: Optional log mixture weights [n] (-inf for a zone with weight 0).
        targets: Optional LongTensor [b] of zone indices.
        own: Optional [b, d]: row i's field is ``anchors`` plus ``own[i]`` (no weights or targets then).
        sq_dist: Optional ``pairwise_sq_dist(anchors)`` [n, n], or with ``own`` ``cross_sq_dist(own,
            anchors)`` [b, n], which a solver computes once for all its steps (None: computed here).

    Returns:
        ``(m, logp)``: m [b, d] = sum_j P_ij a_j, and logp [b] = log P[i, targets[i]] (None without targets).
    """
    if own is not None:
        if log_weights is not None or targets is not None:
            raise ValueError("own anchors take no log_weights or targets")
        if own.shape != x.shape:
            raise ValueError(f"own must have the shape of x {tuple(x.shape)}, got {tuple(own.shape)}")
        if sq_dist is not None and sq_dist.shape != (x.shape[0], anchors.shape[0]):
            raise ValueError(f"with own, sq_dist must be [b, n], got {tuple(sq_dist.shape)}")
        with full_precision():
            if sq_dist is None:
                dtype = compute_dtype(x, anchors)
                sq_dist = cross_sq_dist(own.to(dtype), anchors.to(dtype))
            return _posterior_mean_with_own(x, anchors, own, tau, sq_dist), None
    with full_precision():
        x_c, a_c, log_weights, _ = _prepare(x, anchors, tau, log_weights)
        raw = anchors.to(x_c.dtype)
        if sq_dist is None:
            sq_dist = pairwise_sq_dist(raw)
        if targets is not None:
            if targets.shape != (x.shape[0],):
                raise ValueError(f"targets must have shape [b]={x.shape[0]}, got {tuple(targets.shape)}")
            targets = targets.to(device=x.device, dtype=torch.long)
        m, logp = _SoftmaxMean.apply(x_c, a_c, raw, sq_dist.to(x_c.dtype), log_weights, tau, targets)
        return m, (logp if targets is not None else None)


def velocity(x: Tensor, anchors: Tensor, tau: float, log_weights: Tensor | None = None) -> Tensor:
    """Velocity of the minibatch flow-matching ODE at (x, tau): v = (x - m(x, tau)) / tau.

    The exact marginal velocity of the path x_tau = tau*eps + (1-tau)*a_J from the weighted Dirac mixture of
    ``anchors`` (tau=0) to N(0, I) (tau=1); docs/design/lzn.md §1.1.

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
