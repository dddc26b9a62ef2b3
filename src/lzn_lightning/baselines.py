"""Baseline objectives that run inside the same framework as LZN, for side-by-side comparisons.

They are ``align`` forms that skip the latent flow and compare anchors directly:

* ``"infonce"``: the contrastive (SimCLR/InfoNCE-style) objective between two views: cosine similarities of a
  view-1 anchor to every gathered view-2 anchor, divided by a temperature, cross-entropy towards its own view-2
  anchor. Same positives and negatives as the LZN two-view alignment (one direction, the global batch).
* ``"ce"``: supervised cross-entropy of an instance anchor over the label anchors with logits
  ``-||a - c_k||^2 / 2`` (a prototype classifier; its prediction is the nearest label anchor, the same decision
  rule LZN applies at the end of the reverse flow).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

BASELINE_FORMS = ("infonce", "ce")


def infonce_logits(source: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """Cosine-similarity logits [b, n] of source anchors [b, d] against target anchors [n, d]."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.normalize(source, dim=1) @ F.normalize(targets, dim=1).T / temperature  # [b, n]


def prototype_logits(anchors: Tensor, table: Tensor) -> Tensor:
    """Logits [b, K] = -||a_i - c_k||^2 / 2 of anchors [b, d] against class anchors [K, d]."""
    return -0.5 * (anchors[:, None, :] - table[None, :, :]).pow(2).sum(-1)  # [b, K]; K is small


def baseline_logits(form: str, source: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """The logits of a baseline ``form`` (see the module docstring)."""
    if form == "infonce":
        return infonce_logits(source, targets, temperature)
    if form == "ce":
        return prototype_logits(source, targets)
    raise ValueError(f"unknown baseline form {form!r}; choose one of {BASELINE_FORMS}")


def baseline_loss(form: str, source: Tensor, targets: Tensor, index: Tensor, temperature: float = 0.1) -> Tensor:
    """Mean cross-entropy of the baseline ``form`` towards target row ``index`` [b] of each source row."""
    return F.cross_entropy(baseline_logits(form, source, targets, temperature), index)
