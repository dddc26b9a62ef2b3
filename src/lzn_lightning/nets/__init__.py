"""Networks of the built-in image modality, in plain torch (no Lightning import).

* :class:`LatentUNet`: the latent-conditioned rectified-flow U-Net (image decoder).
* :class:`AnchorTower`: the multi-scale convolutional anchor encoder of the generation recipes.
* :class:`TimmAnchorEncoder`: a timm backbone with the GroupNorm projection head of the representation
  recipes.
* :func:`rf_loss`, :func:`rf_sample`, :func:`rf_invert`: rectified-flow training and ODE integration.
"""

from lzn_lightning.nets.anchor_tower import AnchorTower
from lzn_lightning.nets.rectified_flow import rf_invert, rf_loss, rf_sample
from lzn_lightning.nets.timm_encoder import TimmAnchorEncoder, group_norm_32
from lzn_lightning.nets.unet import LatentUNet

__all__ = [
    "AnchorTower",
    "LatentUNet",
    "TimmAnchorEncoder",
    "group_norm_32",
    "rf_invert",
    "rf_loss",
    "rf_sample",
]
