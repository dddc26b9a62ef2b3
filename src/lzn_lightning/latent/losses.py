"""Latent alignment loss (docs/design/lzn.md §2.1 steps 5-6)."""

from __future__ import annotations

from torch import Tensor

FORMS = ("prob", "log")


def alignment_loss(logp: Tensor, cutoff: float = 0.2, form: str = "prob") -> Tensor:
    """Alignment loss from the per-step log posteriors of the target zone.

    Drops the first ``int(S * cutoff)`` steps (nearest tau=1, uninformative), takes the max over the remaining
    steps per row (the gradient flows through the argmax step only), then returns ``-mean(p)`` (``"prob"``, the
    joint-model label loss) or ``-mean(log p)`` (``"log"``, the representation-learning loss).

    Args:
        logp: [S, b] log posteriors from :func:`trace_back`.
        cutoff: Fraction of leading steps to drop, in [0, 1).
        form: ``"prob"`` or ``"log"``.

    Returns:
        Scalar loss.
    """
    if form not in FORMS:
        raise ValueError(f"unknown alignment form {form!r}; choose one of {FORMS}")
    if logp.dim() != 2:
        raise ValueError(f"logp must be [S, b], got {tuple(logp.shape)}")
    if not 0.0 <= cutoff < 1.0:
        raise ValueError(f"cutoff must be in [0, 1), got {cutoff}")
    first = int(logp.shape[0] * cutoff)
    best = logp[first:].float().max(dim=0).values  # [b]: max of log p == log of max p
    return -best.exp().mean() if form == "prob" else -best.mean()
