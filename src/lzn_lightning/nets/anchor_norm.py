"""Normalisations that end an anchor encoder and fix the scale of the anchors."""

from __future__ import annotations

from torch import Tensor, nn

from lzn_lightning.nets.blocks import num_groups

ANCHOR_NORMS = ("none", "group", "batch")


class BatchAnchorNorm(nn.Module):
    """Standardise each anchor dimension over the batch, then scale: ``a = scale * BN(a)`` (no learnable
    affine).

    The anchors then cannot drift as a whole away from the origin or grow without bound, the two ways an
    unconstrained encoder made the minibatch flow ill-conditioned in our digits runs (the anchor norm grew
    from 0.8 to 99 in 400 steps while the gradient norm grew from 10 to 1e6, measured before the
    encoder-gradient fix; docs/notes/2026-12-01-anchor-drift.md re-measures it). Classes can still
    gather into tight clusters, which is what the zones need. In eval mode the running statistics are used, so
    an image's anchor does not depend on its batch-mates.

    Args:
        dim: Anchor size d.
        scale: Per-dimension standard deviation of the anchors over a batch.
    """

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"anchor_scale must be > 0, got {scale}")
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.scale = scale

    def forward(self, anchors: Tensor) -> Tensor:
        return self.scale * self.norm(anchors)  # [b, d]

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def anchor_norm(kind: str | bool, dim: int, scale: float) -> nn.Module | None:
    """The normalisation named by ``kind`` (``True`` means ``"group"``, ``False`` ``"none"``), or None.

    Raises:
        ValueError: An unknown kind.
    """
    kind = {True: "group", False: "none"}.get(kind, kind) if isinstance(kind, bool) else kind
    if kind not in ANCHOR_NORMS:
        raise ValueError(f"anchor_norm must be one of {ANCHOR_NORMS} (or true/false), got {kind!r}")
    if kind == "none":
        return None
    if kind == "group":  # learnable scale, bias zero-initialised (the reference ResNet head's last GroupNorm)
        norm = nn.GroupNorm(num_groups(dim, max_groups=32, min_group_size=8), dim)
        nn.init.zeros_(norm.bias)
        return norm
    return BatchAnchorNorm(dim, scale)
