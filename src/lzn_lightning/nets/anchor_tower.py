"""Multi-scale convolutional anchor encoder of the LZN generation recipes (docs/design/lzn.md §3.4).

The tower is the NCSN++ downsampling path (input conv, ResBlocks with attention, resamplers, middle
ResBlock-Attn-ResBlock) without any time embedding. Every feature map of its skip list plus the middle-block
output gets a small head, and the anchor is the sum of all head outputs, so every scale contributes directly
to the anchor:

    head(h) = Linear(head_hidden -> out_dim)(SiLU(Linear(head_channels*r*r -> head_hidden)(
              flatten(SiLU(Conv1x1(C -> head_channels)(h))))))

A head's first Linear has ``head_channels * r**2 * head_hidden`` weights (4.1M at r=32 with the reference's 20
and 200), so high-resolution heads dominate the size; the reference's 256x256 configs therefore keep heads
only at resolutions 4..64 (``head_min_resolution=4, head_max_resolution=64`` here). Anchors are unnormalised.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from lzn_lightning.nets.blocks import DownPath, conv1x1, linear
from lzn_lightning.nets.inputs import check_image


class _Head(nn.Module):
    """1x1 conv -> SiLU -> flatten -> Linear -> SiLU -> Linear, from one feature map to an anchor term."""

    def __init__(self, in_ch: int, res: int, head_channels: int, head_hidden: int, out_dim: int) -> None:
        super().__init__()
        self.conv = conv1x1(in_ch, head_channels)
        self.fc1 = linear(head_channels * res * res, head_hidden)
        self.fc2 = linear(head_hidden, out_dim)
        self.act = nn.SiLU()

    def forward(self, h: Tensor) -> Tensor:
        z = self.act(self.conv(h)).flatten(1)  # [B, head_channels, r, r] -> [B, head_channels*r*r]
        return self.fc2(self.act(self.fc1(z)))  # [B, out_dim]


class AnchorTower(nn.Module):
    """NCSN++-style downsampling tower with a linear head on every scale; the anchor is the sum of the heads.

    The defaults are the digits recipes' tower (``encoder: tower``).

    Args:
        channels: Image channels.
        size: Image height = width; must be divisible by ``2 ** (len(ch_mult) - 1)``.
        out_dim: Anchor size (the LZN latent dimension).
        width: Base channel count (NCSN++ ``nf``).
        ch_mult: Channel multiplier per resolution level; the resolution halves between levels.
        num_res_blocks: ResBlocks per level.
        head_channels: Channels of each head's 1x1 conv (reference ``num_base_channels`` = 20).
        head_hidden: Hidden units of each head's MLP (reference ``num_base_units`` = 200).
        head_min_resolution: Only feature maps at resolutions >= this get a head.
        dropout: ResBlock dropout (0.15 in the reference's CIFAR recipes).
        attn_resolutions: Resolutions that get self-attention after each ResBlock (never-reached ones are
            ignored).
        head_max_resolution: Only feature maps at resolutions <= this get a head (``None``: no limit). The
            reference's 256x256 configs use 64.
        resblock_updown: Downsample with BigGAN ResBlocks (2x2 average pool inside the block, as the
            reference) instead of a strided conv.
    """

    representation: ClassVar[str] = "anchor"
    """``ImageModality.embed`` returns the anchor (the heads see every scale; :meth:`features` is the deepest
    map only)."""

    def __init__(
        self,
        channels: int,
        size: int,
        out_dim: int,
        width: int = 32,
        ch_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        head_channels: int = 20,
        head_hidden: int = 200,
        head_min_resolution: int = 1,
        dropout: float = 0.0,
        attn_resolutions: tuple[int, ...] = (16,),
        head_max_resolution: int | None = None,
        resblock_updown: bool = False,
    ) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        if head_channels < 1 or head_hidden < 1:
            raise ValueError(
                f"head_channels and head_hidden must be >= 1, got {head_channels}, {head_hidden}"
            )
        self.channels = channels
        self.size = size
        self.out_dim = out_dim
        self.path = DownPath(
            channels,
            size,
            width,
            tuple(ch_mult),
            num_res_blocks,
            tuple(attn_resolutions),
            dropout,
            None,
            resblock_updown,
        )
        # Feature maps that can carry a head: the skip list, then the middle-block output.
        maps = [
            *zip(self.path.skip_channels, self.path.skip_resolutions, strict=True),
            (self.path.out_channels, self.path.out_resolution),
        ]
        max_res = size if head_max_resolution is None else head_max_resolution
        self.head_index: list[int] = [
            i for i, (_, r) in enumerate(maps) if head_min_resolution <= r <= max_res
        ]  # which feature maps have a head, in forward order
        if not self.head_index:
            raise ValueError(
                f"no feature map resolution lies in [{head_min_resolution}, {max_res}]; "
                f"the tower's resolutions are {sorted({r for _, r in maps}, reverse=True)}"
            )
        self.heads = nn.ModuleList(
            _Head(maps[i][0], maps[i][1], head_channels, head_hidden, out_dim) for i in self.head_index
        )

    @property
    def head_resolutions(self) -> list[int]:
        """Resolution of the feature map under each head, in forward order."""
        res = [*self.path.skip_resolutions, self.path.out_resolution]
        return [res[i] for i in self.head_index]

    def features(self, x: Tensor) -> Tensor:
        """The pre-head representation: the deepest feature map, globally average-pooled (as a ResNet's pool).

        Args:
            x: [B, channels, size, size] images in [-1, 1].

        Returns:
            [B, C] with C the middle block's channels (``width * ch_mult[-1]``).
        """
        check_image(x, self.channels, self.size)
        _, mid = self.path(x)
        return mid.mean(dim=(2, 3))  # [B, C, r, r] -> [B, C]

    def forward(self, x: Tensor) -> Tensor:
        """Encode images into anchors.

        Args:
            x: [B, channels, size, size] images in [-1, 1].

        Returns:
            [B, out_dim] anchors (the sum of all heads).
        """
        check_image(x, self.channels, self.size)
        skips, mid = self.path(x)
        maps = [*skips, mid]
        terms = [head(maps[i]) for i, head in zip(self.head_index, self.heads, strict=True)]
        return torch.stack(terms, dim=0).sum(dim=0)  # [n_heads, B, out_dim] -> [B, out_dim]
