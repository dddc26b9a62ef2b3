"""Classification accuracy of predicted labels."""

from __future__ import annotations

from torch import Tensor


def label_accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Fraction of ``predictions`` [N] equal to ``labels`` [N] (both on the same device)."""
    return float((predictions == labels).float().mean())
