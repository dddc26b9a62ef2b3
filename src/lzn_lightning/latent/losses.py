"""Latent alignment loss (docs/design/lzn.md §2.1 steps 5-6)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def best_zone_log_prob(logp: Tensor, cutoff: float = 0.2) -> Tensor:
    """Per row, the best log posterior of the target zone over the steps kept after the cut-off.

    Drops the first ``int(S * cutoff)`` steps (nearest tau=1, uninformative) and takes the max over the
    remaining steps per row; the gradient flows through the argmax step only.

    Args:
        logp: [S, b] log posteriors from :func:`trace_back`.
        cutoff: Fraction of leading steps to drop, in [0, 1).

    Returns:
        Float32 [b] (max of log p, which is the log of max p).
    """
    if logp.dim() != 2:
        raise ValueError(f"logp must be [S, b], got {tuple(logp.shape)}")
    if not 0.0 <= cutoff < 1.0:
        raise ValueError(f"cutoff must be in [0, 1), got {cutoff}")
    first = int(logp.shape[0] * cutoff)
    return logp[first:].float().max(dim=0).values  # [b]


def zone_probability_loss(logp: Tensor, cutoff: float = 0.2) -> Tensor:
    """``-mean(max p)``: the probability form (the joint-model label loss)."""
    return -best_zone_log_prob(logp, cutoff).exp().mean()


def zone_log_probability_loss(logp: Tensor, cutoff: float = 0.2) -> Tensor:
    """``-mean(log max p)``: the log form (the representation-learning loss)."""
    return -best_zone_log_prob(logp, cutoff).mean()


ALIGNMENT_LOSSES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "prob": zone_probability_loss,
    "log": zone_log_probability_loss,
}
FORMS = tuple(ALIGNMENT_LOSSES)


def alignment_loss(logp: Tensor, cutoff: float = 0.2, form: str = "prob") -> Tensor:
    """Alignment loss from the per-step log posteriors of the target zone.

    Drops the first ``int(S * cutoff)`` steps (nearest tau=1, uninformative), takes the max over the remaining
    steps per row (the gradient flows through the argmax step only), then returns ``-mean(p)`` (``"prob"``,
    the joint-model label loss) or ``-mean(log p)`` (``"log"``, the representation-learning loss).

    Args:
        logp: [S, b] log posteriors from :func:`trace_back`.
        cutoff: Fraction of leading steps to drop, in [0, 1).
        form: ``"prob"`` or ``"log"``.

    Returns:
        Scalar loss.
    """
    if form not in ALIGNMENT_LOSSES:
        raise ValueError(f"unknown alignment form {form!r}; choose one of {FORMS}")
    return ALIGNMENT_LOSSES[form](logp, cutoff)
