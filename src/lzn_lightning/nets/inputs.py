"""Input checks and conditioning vectors shared by the image networks.

:func:`check_image` refuses a batch of the wrong shape with a message that names it;
:func:`latent_label_input` builds the ``[latent, one-hot label]`` conditioning of the decoders
(:class:`~lzn_lightning.nets.unet.LatentUNet` and the paper's
:class:`~lzn_lightning.nets.ncsnpp.NCSNppDecoder`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def latent_label_input(
    net: nn.Module,
    batch: int,
    latent: Tensor | None,
    labels: Tensor | None,
    dtype: torch.dtype,
    device: torch.device,
) -> list[Tensor]:
    """The decoders' conditioning parts ``[latent [B, d], one_hot(labels) [B, K] if K > 0]``, checked.

    ``net`` is the decoder (its ``latent_dim``, ``num_classes``, ``latent_conditioning`` are read). A missing
    latent (or ``latent_conditioning=False``, the plain-RF baseline) is zeros; missing labels of a
    label-conditioned decoder are an all-zero one-hot (the "no class" input).
    """
    latent_dim, num_classes = net.latent_dim, net.num_classes
    if latent is not None and (latent.dim() != 2 or latent.shape != (batch, latent_dim)):
        raise ValueError(f"latent must be [B={batch}, {latent_dim}], got {tuple(latent.shape)}")
    if latent is None or not net.latent_conditioning:
        parts = [torch.zeros(batch, latent_dim, device=device, dtype=dtype)]
    else:
        parts = [latent.to(dtype)]
    if labels is not None:
        if num_classes == 0:
            raise ValueError("labels were given but the network was built with num_classes=0")
        if labels.dim() != 1 or labels.shape[0] != batch:
            raise ValueError(f"labels must be [B={batch}], got {tuple(labels.shape)}")
        if labels.dtype.is_floating_point:
            raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
        parts.append(F.one_hot(labels.long(), num_classes).to(dtype))  # [B, num_classes]
    elif num_classes > 0:
        parts.append(torch.zeros(batch, num_classes, device=device, dtype=dtype))
    return parts


def check_image(x: Tensor, channels: int, size: int, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is [B, channels, size, size].

    Args:
        x: The input batch.
        channels: Expected channels.
        size: Expected height and width.
        name: Argument name for the message.
    """
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2] != size or x.shape[3] != size:
        raise ValueError(f"{name} must be [B, {channels}, {size}, {size}], got {tuple(x.shape)}")
