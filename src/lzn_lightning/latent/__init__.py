"""The latent zoning maths in plain torch (no Lightning import).

Public, stable names: :func:`velocity`, :func:`compute_latent`, :func:`trace_back`, :func:`alignment_loss`.
"""

from lzn_lightning.latent.losses import alignment_loss
from lzn_lightning.latent.posterior import posterior_mean, velocity
from lzn_lightning.latent.solvers import SOLVERS, compute_latent
from lzn_lightning.latent.trace import nearest_anchor, trace_back

__all__ = [
    "SOLVERS",
    "alignment_loss",
    "compute_latent",
    "nearest_anchor",
    "posterior_mean",
    "trace_back",
    "velocity",
]
