"""GroupNorm ResNet-50 anchor encoder of the LZN paper's case study 2 (representation learning).

A ResNet whose BatchNorms are all GroupNorm(32), followed by global average pooling and a GroupNorm
projection head. The module tree is laid out key for key (names, shapes and order of the state dict and of
``parameters()``) like the authors' released encoder checkpoints, so those load with ``load_state_dict``
without any renaming, and the network computes exactly what theirs computes::

    net.0                 stem: conv7x7/2 (net.0.0), GN+ReLU (net.0.1.0), maxpool3x3/2 (net.0.2)
    net.1 .. net.4        stages: net.S.blocks.K.{projection.shortcut, projection.bn.0, net.0 .. net.5.0}
    head.layers.*         Linear, GN, ReLU, ..., Linear, GN

Plain torch only (no Lightning import). :meth:`GroupNormResNet.features` returns the pooled trunk feature
(the linear-probe representation); :meth:`GroupNormResNet.forward` returns the anchors.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint_sequential

_GROUPS = 32  # the paper replaces every BatchNorm by GroupNorm with 32 groups (PyTorch's default eps 1e-5)
_EXPANSION = 4  # bottleneck: the last 1x1 conv widens the block to 4x its inner width


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    # "same" padding for odd kernels (7 -> 3, 3 -> 1, 1 -> 0); no bias since a GroupNorm always follows
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2, bias=False)


def _norm(channels: int, relu: bool = True) -> nn.Sequential:
    # 2-slot Sequential (GN, ReLU or Identity): the GN weight sits at "<name>.0.weight" as in the checkpoints
    return nn.Sequential(nn.GroupNorm(_GROUPS, channels), nn.ReLU() if relu else nn.Identity())


class _Projection(nn.Module):
    """Projection shortcut of a stage's first block: strided 1x1 conv, then GroupNorm (no ReLU)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.shortcut = _conv(c_in, c_out, 1, stride)
        self.bn = _norm(c_out, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.shortcut(x))


class _Bottleneck(nn.Module):
    """Bottleneck block ``relu(shortcut(x) + main(x))``; the stride sits on the 3x3 conv."""

    def __init__(self, c_in: int, width: int, stride: int, project: bool) -> None:
        super().__init__()
        c_out = width * _EXPANSION
        # Built before the main path so that seeded construction draws the same random weights as theirs
        self.projection = _Projection(c_in, c_out, stride) if project else nn.Identity()
        self.net = nn.Sequential(
            _conv(c_in, width, 1),
            _norm(width),
            _conv(width, width, 3, stride),
            _norm(width),
            _conv(width, c_out, 1),
            _norm(c_out, relu=False),
        )
        # Zero GN scale on the residual branch: each block starts as (relu of) its shortcut
        nn.init.zeros_(self.net[5][0].weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.projection(x) + self.net(x))


class _Stage(nn.Module):
    """``num_blocks`` bottlenecks; only the first one strides and has a projection shortcut."""

    def __init__(self, num_blocks: int, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * _EXPANSION
        self.blocks = nn.ModuleList([_Bottleneck(c_in, width, stride, project=True)])
        self.blocks.extend(_Bottleneck(c_out, width, 1, project=False) for _ in range(num_blocks - 1))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class _Head(nn.Module):
    """Projection head: ``num_layers`` x (Linear without bias, GN(32)), ReLU between, none at the end."""

    def __init__(self, dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            last = i == num_layers - 1
            d_out = out_dim if last else dim
            self.layers.append(nn.Linear(dim, d_out, bias=False))
            # 32 groups as the paper; a small latent that 32 does not divide: its largest divisor below 32
            groups = next(g for g in range(min(_GROUPS, d_out), 0, -1) if d_out % g == 0)
            self.layers.append(nn.GroupNorm(groups, d_out))
            if last:
                nn.init.zeros_(self.layers[-1].bias)  # anchors start centred within each group
            else:
                self.layers.append(nn.ReLU())

    def forward(self, h: Tensor) -> Tensor:
        for layer in self.layers:
            h = layer(h)
        return h


class GroupNormResNet(nn.Module):
    """GroupNorm ResNet (ResNet-50 by default) with a GroupNorm projection head, images in [-1, 1].

    Args:
        out_dim: Anchor dimension (the head's output); its GroupNorm has 32 groups when 32 divides it (the
            paper's 256), else the largest divisor below 32.
        layers: Bottleneck blocks per stage; four stages (ResNet-50: ``(3, 4, 6, 3)``).
        width: Stem channels and inner width of the first stage (64 = "1x"); stages use width x 1, 2, 4, 8.
            Must be divisible by 32.
        channels: Input image channels.
        head_layers: Linear layers in the head (the paper uses 2).
        checkpoint_segments: If > 0, run the trunk with non-reentrant gradient checkpointing in this many
            segments (the authors train with 5); the outputs and gradients are unchanged.

    Raises:
        ValueError: On an invalid configuration.
    """

    representation: ClassVar[str] = "features"  # ImageModality.embed: the pooled trunk (the probe input)

    def __init__(
        self,
        out_dim: int = 256,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        width: int = 64,
        channels: int = 3,
        head_layers: int = 2,
        checkpoint_segments: int = 0,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive block counts, got {tuple(layers)}")
        if width <= 0 or width % _GROUPS or out_dim <= 0:
            raise ValueError(
                f"width ({width}) must be a positive multiple of {_GROUPS} (GroupNorm groups), "
                f"out_dim ({out_dim}) positive"
            )
        if channels < 1 or head_layers < 1 or checkpoint_segments < 0:
            raise ValueError(
                f"need channels >= 1, head_layers >= 1, checkpoint_segments >= 0; got {channels}, "
                f"{head_layers}, {checkpoint_segments}"
            )
        self.channels = channels
        self.out_dim = out_dim
        self.checkpoint_segments = checkpoint_segments
        stem = nn.Sequential(
            _conv(channels, width, 7, stride=2), _norm(width), nn.MaxPool2d(3, stride=2, padding=1)
        )  # [B, C, H, W] -> [B, width, H/4, W/4]
        stages, c_in = [], width
        for i, n in enumerate(layers):
            stride = 1 if i == 0 else 2  # the stem already pooled; the later stages halve the resolution
            stages.append(_Stage(n, c_in, width * 2**i, stride))
            c_in = width * 2**i * _EXPANSION
        self.net = nn.Sequential(stem, *stages)  # [B, C, H, W] -> [B, 32 * width, H/32, W/32]
        self.feature_dim = c_in  # 2048 for width 64
        self.head = _Head(c_in, out_dim, head_layers)

    def features(self, x: Tensor) -> Tensor:
        """Pooled trunk feature (the linear-probe representation).

        Args:
            x: Images ``[B, channels, H, W]`` in [-1, 1].

        Returns:
            ``[B, feature_dim]``.
        """
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images of shape [B, {self.channels}, H, W], got {list(x.shape)}")
        x = (x + 1.0) / 2.0  # the authors' encoder sees [0, 1] images, no per-channel normalisation
        if self.checkpoint_segments > 0:
            x = checkpoint_sequential(self.net, self.checkpoint_segments, x, use_reentrant=False)
        else:
            x = self.net(x)
        return x.mean(dim=(2, 3))  # global average pool: [B, feature_dim, h, w] -> [B, feature_dim]

    def forward(self, x: Tensor) -> Tensor:
        """Anchors of a batch of images.

        Args:
            x: Images ``[B, channels, H, W]`` in [-1, 1].

        Returns:
            ``[B, out_dim]``.
        """
        return self.head(self.features(x))


__all__ = ["GroupNormResNet"]
