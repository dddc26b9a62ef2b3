"""The reference's reconstruction metric (Recon): the L2 error of ``model.reconstruct``, in [-1, 1] units."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor


def reconstruction_l2(original: Tensor, reconstructed: Tensor) -> float:
    """Mean over images of the L2 norm of the error over (C, H, W), in [-1, 1] units (the reference's
    Recon)."""
    err = (reconstructed.float() - original.float()).flatten(1)  # [N, C*H*W]
    return float(err.norm(dim=1).mean()) if len(err) else math.nan


def mean_reconstruction_l2(
    model: Any, images: Tensor, repeats: int, seed: int = 0, **reconstruct_kwargs: Any
) -> tuple[float, Tensor]:
    """The reference's Recon: ``model.reconstruct`` of all ``images`` in one batch (one field), once per
    prior-noise seed ``seed, seed + 1, ...``; returns the mean :func:`reconstruction_l2` and the last
    reconstruction.

    Args:
        model: An LZN model (or an :class:`~lzn_lightning.inference.LZNInference`).
        images: Float [N, C, H, W] in [-1, 1].
        repeats: Number of prior-noise draws.
        seed: Seed of the first draw.
        **reconstruct_kwargs: Passed on to ``reconstruct`` (``labels``, ``context``, ``steps``, ...).
    """
    errors, recon = [], images
    for r in range(repeats):
        recon = model.reconstruct(
            images, batch_size=len(images), seed=seed + r, progress=False, **reconstruct_kwargs
        )
        errors.append(reconstruction_l2(images, recon))
    return sum(errors) / len(errors), recon
