"""lzn-lightning: Latent Zoning Networks on PyTorch Lightning."""

from lzn_lightning.checkpoints import AtomicCheckpointIO
from lzn_lightning.config import AlignConfig, FlowConfig
from lzn_lightning.inference import LZNInference
from lzn_lightning.latent import alignment_loss, compute_latent, trace_back, velocity
from lzn_lightning.linear_probe import LinearProbeModule
from lzn_lightning.modality import Modality
from lzn_lightning.module import LZNLightningModule, load_for_inference

__version__ = "0.1.0"

__all__ = [
    "AlignConfig",
    "AtomicCheckpointIO",
    "FlowConfig",
    "LZNInference",
    "LZNLightningModule",
    "LinearProbeModule",
    "Modality",
    "__version__",
    "alignment_loss",
    "compute_latent",
    "load_for_inference",
    "trace_back",
    "velocity",
]
