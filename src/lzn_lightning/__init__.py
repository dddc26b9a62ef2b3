"""lzn-lightning: Latent Zoning Networks on PyTorch Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lzn_lightning.config import AlignConfig, FlowConfig
from lzn_lightning.data import LZNDataModule
from lzn_lightning.inference import LZNInference
from lzn_lightning.latent import compute_latent, trace_back, velocity
from lzn_lightning.linear_probe import LinearProbeModule
from lzn_lightning.modality import Modality
from lzn_lightning.module import LZNLightningModule, load_for_inference

if TYPE_CHECKING:
    from lzn_lightning.recipes import build_run

__version__ = "0.1.0"

__all__ = [
    "AlignConfig",
    "FlowConfig",
    "LZNDataModule",
    "LZNInference",
    "LZNLightningModule",
    "LinearProbeModule",
    "Modality",
    "__version__",
    "build_run",
    "compute_latent",
    "load_for_inference",
    "trace_back",
    "velocity",
]


def __getattr__(name: str) -> Any:
    """``build_run`` on first use: it loads LightningCLI, the callbacks and every built-in plug-in, which
    ``import lzn_lightning`` (and the ``lzn`` command before it sets its defaults) need not."""
    if name == "build_run":
        from lzn_lightning.recipes import build_run

        globals()["build_run"] = build_run
        return build_run
    raise AttributeError(f"module 'lzn_lightning' has no attribute {name!r}")
