"""Networks of the built-in image modality, in plain torch (no Lightning import).

* :class:`NCSNppEncoder`, :class:`NCSNppDecoder`: the paper's NCSN++ anchor encoder and rectified-flow decoder
  (docs/design/networks.md), laid out like the released checkpoints.
* :class:`GroupNormResNet`: the paper's GroupNorm ResNet-50 with its projection head (case study 2).
* :class:`LatentUNet`: a smaller latent-conditioned rectified-flow U-Net (the digits recipes' image decoder).
* :class:`AnchorTower`: a smaller multi-scale anchor encoder of the same kind (the digits recipes).
* :class:`TimmAnchorEncoder`: a timm backbone with the GroupNorm projection head of the representation
  recipes.
* :func:`rf_loss`, :func:`rf_sample`, :func:`rf_invert`: rectified-flow training and ODE integration.
* :func:`create_image_encoder`, :func:`create_image_decoder`: the networks above by name with their own
  arguments; :func:`register_image_encoder`, :func:`register_image_decoder` add one (:mod:`.factory`).
"""

from lzn_lightning.nets.anchor_tower import AnchorTower
from lzn_lightning.nets.factory import (
    create_image_decoder,
    create_image_encoder,
    register_image_decoder,
    register_image_encoder,
)
from lzn_lightning.nets.ncsnpp import NCSNppDecoder, NCSNppEncoder
from lzn_lightning.nets.rectified_flow import rf_invert, rf_loss, rf_sample
from lzn_lightning.nets.resnet_gn import GroupNormResNet
from lzn_lightning.nets.timm_encoder import TimmAnchorEncoder, group_norm_32
from lzn_lightning.nets.unet import LatentUNet

__all__ = [
    "AnchorTower",
    "GroupNormResNet",
    "LatentUNet",
    "NCSNppDecoder",
    "NCSNppEncoder",
    "TimmAnchorEncoder",
    "create_image_decoder",
    "create_image_encoder",
    "group_norm_32",
    "register_image_decoder",
    "register_image_encoder",
    "rf_invert",
    "rf_loss",
    "rf_sample",
]
