"""Training-health statistics logged during fit: what drifts before a run fails.

Three families, all cheap reductions of tensors the step already has (no extra forward pass):

* per-group gradient norms *before* clipping (``grad_norm/<modality>.<group>``): which network blows up;
* anchor statistics per instance field: mean norm, spread around their own mean and the distance of that mean
  from the origin (``anchor_norm``, ``anchor_spread``, ``anchor_offset``). Drift shows as a growing offset or
  norm; a collapse as a shrinking spread;
* latent statistics per latent field: ``latent_sq`` = E|z|^2 / d (the prior N(0, I) has 1) and ``latent_mean``
  = |E z| / sqrt(d) (for b prior draws about 1/sqrt(b)). A gap here is a gap between the latents the decoder
  trains on and the prior it samples from.
"""

from __future__ import annotations

import torch
from torch import Tensor


def anchor_stats(anchors: Tensor) -> dict[str, Tensor]:
    """``anchor_norm`` (mean row norm), ``anchor_spread`` (RMS distance from the mean anchor) and
    ``anchor_offset`` (norm of the mean anchor) of anchors [b, d]."""
    a = anchors.detach().float()
    centre = a.mean(dim=0)  # [d]
    return {
        "anchor_norm": a.norm(dim=1).mean(),
        "anchor_spread": (a - centre).square().sum(dim=1).mean().sqrt(),
        "anchor_offset": centre.norm(),
    }


def latent_stats(latents: Tensor) -> dict[str, Tensor]:
    """``latent_sq`` = E|z|^2/d (prior: 1) and ``latent_mean`` = |E z|/sqrt(d) of latents [b, d]."""
    z = latents.detach().float()
    d = z.shape[1]
    return {"latent_sq": z.square().sum(dim=1).mean() / d, "latent_mean": z.mean(dim=0).norm() / d**0.5}


def group_grad_norms(param_groups: list[dict]) -> dict[str, Tensor]:
    """L2 norm of the current gradients of each named optimiser group (groups without gradients are left
    out)."""
    norms = {}
    for group in param_groups:
        grads = [p.grad.detach() for p in group["params"] if p.grad is not None]
        if grads:
            norms[group.get("name", str(len(norms)))] = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])
            )
    return norms
