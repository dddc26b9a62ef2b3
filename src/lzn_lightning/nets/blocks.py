"""Building blocks shared by the rectified-flow U-Net and the anchor tower (NCSN++/DDPM style).

Both networks are assembled from the same pieces, so the U-Net's downsampling path and the anchor tower stay
architecturally identical (docs/design/lzn.md §3.4):

* :class:`ResBlock`: the BigGAN-type residual block of NCSN++ (GroupNorm, SiLU, 3x3 conv, optional time/latent
  embedding added as a per-channel bias, GroupNorm, SiLU, dropout, zero-initialised 3x3 conv, 1x1 skip),
  optionally resampling inside the block (``resample="down"|"up"``, NCSN++ ``resblock_type="biggan"``).
* :class:`AttnBlock`: single-head self-attention over all pixels (NCSN++ ``AttnBlockpp``).
* :class:`Downsample` / :class:`Upsample`: strided 3x3 conv / nearest x2 followed by a 3x3 conv (DDPM).
* :func:`timestep_embedding`: the DDPM sinusoidal embedding.

Residual branches are divided by sqrt(2) (NCSN++ ``skip_rescale=True``) so that the activation variance does
not grow with depth. Convolutions and linear layers use Xavier-uniform weights and zero biases (NCSN++
``default_init``); the last layer of every residual branch is zero-initialised (NCSN++ ``init_scale=0``), so
each block starts as an identity map.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Resample = Literal["none", "up", "down"]

# Why 1/sqrt(2): the residual sum x + h of two unit-variance signals has variance 2; NCSN++
# (skip_rescale=True) rescales it back so that deep stacks of blocks keep unit-scale activations.
_SKIP_SCALE = 1.0 / math.sqrt(2.0)


def num_groups(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """Number of GroupNorm groups: ``min(max_groups, channels // min_group_size)``, made a divisor.

    NCSN++ uses ``min(channels // 4, 32)`` groups; that only works when it divides ``channels``, so the
    largest divisor of ``channels`` not above that bound is used instead (at least 1).

    Args:
        channels: Number of channels to normalise.
        max_groups: Upper bound on the number of groups.
        min_group_size: Lower bound on the channels per group (unless there are fewer channels than that).

    Returns:
        A group count that divides ``channels``.
    """
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    bound = max(1, min(max_groups, channels // min_group_size))
    return next(g for g in range(bound, 0, -1) if channels % g == 0)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with :func:`num_groups` groups and the NCSN++ epsilon.

    Args:
        channels: Number of channels to normalise.

    Returns:
        The normalisation layer.
    """
    # Why eps=1e-6: NCSN++ uses 1e-6 rather than torch's default 1e-5.
    return nn.GroupNorm(num_groups(channels), channels, eps=1e-6)


def default_init(module: nn.Module, zero: bool = False) -> nn.Module:
    """Xavier-uniform weights and zero bias (NCSN++ ``default_init``), or all zeros when ``zero``.

    Args:
        module: A ``nn.Conv2d`` or ``nn.Linear``.
        zero: Zero-initialise the weights too (the last layer of a residual branch or of the network).

    Returns:
        The same module, initialised in place.
    """
    assert isinstance(module, (nn.Conv2d, nn.Linear))
    if zero:
        nn.init.zeros_(module.weight)
    else:
        nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, zero: bool = False) -> nn.Conv2d:
    """3x3 convolution with padding 1 and NCSN++ initialisation."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)
    default_init(conv, zero=zero)
    return conv


def conv1x1(in_ch: int, out_ch: int, zero: bool = False) -> nn.Conv2d:
    """1x1 convolution with NCSN++ initialisation."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=1)
    default_init(conv, zero=zero)
    return conv


def linear(in_features: int, out_features: int) -> nn.Linear:
    """Linear layer with NCSN++ initialisation."""
    layer = nn.Linear(in_features, out_features)
    default_init(layer)
    return layer


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (scaled) times, as in DDPM/NCSN++ ``get_timestep_embedding``.

    Args:
        t: [B] times (the networks pass ``999 * t``).
        dim: Embedding size.
        max_period: Longest wavelength.

    Returns:
        [B, dim] embedding ``[sin(t * f_k), cos(t * f_k)]`` with ``f_k = max_period^(-k / (dim/2 - 1))``,
        zero-padded by one column when ``dim`` is odd.
    """
    half = dim // 2
    if half < 2:
        raise ValueError(f"timestep embedding needs dim >= 4, got {dim}")
    dtype = torch.promote_types(t.dtype, torch.float32)  # float32, or float64 for float64 times
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / (half - 1))
    args = t.to(dtype)[:, None] * freqs[None, :]  # [B, half]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # [B, 2*half]
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))  # [B, dim]
    return emb


def naive_downsample(x: Tensor) -> Tensor:
    """2x2 average pooling: NCSN++'s downsampling without FIR filtering (here and in ncsnpp_layers.py)."""
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def _naive_up(x: Tensor) -> Tensor:
    # Nearest x2; ncsnpp_layers.naive_upsample gives the same values (see there why both stay).
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class ResBlock(nn.Module):
    """BigGAN-type residual block of NCSN++, optionally conditioned on an embedding and resampling.

    ``h = Conv(SiLU(GN(x)))`` (resampled between the activation and the conv when ``resample`` is set),
    ``h += Dense(SiLU(emb))`` per channel, ``h = Conv0(Dropout(SiLU(GN(h))))`` with ``Conv0``
    zero-initialised, output ``(skip(x) + h) / sqrt(2)``. ``skip`` is a 1x1 conv when the channel count
    changes or the block resamples, else the identity.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        emb_dim: Size of the conditioning embedding; ``None`` for an unconditioned block (the anchor tower).
        dropout: Dropout probability before the second conv.
        resample: ``"down"`` halves and ``"up"`` doubles the resolution inside the block.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int | None = None,
        dropout: float = 0.0,
        resample: Resample = "none",
    ) -> None:
        super().__init__()
        if resample not in ("none", "up", "down"):
            raise ValueError(f"resample must be 'none', 'up' or 'down', got {resample!r}")
        self.resample = resample
        self.norm1 = group_norm(in_ch)
        self.conv1 = conv3x3(in_ch, out_ch)
        self.emb_proj = linear(emb_dim, out_ch) if emb_dim is not None else None
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_ch, out_ch, zero=True)
        self.skip = conv1x1(in_ch, out_ch) if in_ch != out_ch or resample != "none" else nn.Identity()

    def _resample(self, x: Tensor) -> Tensor:
        if self.resample == "down":
            return naive_downsample(x)
        if self.resample == "up":
            return _naive_up(x)
        return x

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """Apply the block.

        Args:
            x: [B, in_ch, H, W] features.
            emb: [B, emb_dim] conditioning embedding (required iff the block was built with ``emb_dim``).

        Returns:
            [B, out_ch, H', W'] with H' = H/2, H or 2H for down, none, up.
        """
        h = self._resample(F.silu(self.norm1(x)))
        h = self.conv1(h)
        if self.emb_proj is not None:
            if emb is None:
                raise ValueError("this ResBlock is conditioned: pass the embedding")
            h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # [B, out_ch, 1, 1] bias per channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(self._resample(x)) + h) * _SKIP_SCALE


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions (NCSN++ ``AttnBlockpp``, skip-rescaled).

    Args:
        channels: Feature channels (also the attention width).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = conv1x1(channels, 3 * channels)
        self.proj = conv1x1(channels, channels, zero=True)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """Apply attention; ``emb`` is accepted and ignored so that all blocks share one call signature.

        Args:
            x: [B, C, H, W] features.
            emb: Ignored.

        Returns:
            [B, C, H, W].
        """
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x))  # [B, 3C, H, W]
        qkv = qkv.reshape(b, 3, 1, c, h * w).transpose(-1, -2)  # [B, 3, heads=1, HW, C]
        q, k, v = qkv.unbind(dim=1)  # each [B, 1, HW, C]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, 1, HW, C], softmax(q k^T / sqrt(C)) v
        out = out.transpose(-1, -2).reshape(b, c, h, w)  # [B, C, H, W]
        return (x + self.proj(out)) * _SKIP_SCALE


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 conv (DDPM ``resamp_with_conv``).

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels, stride=2)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """[B, C, H, W] -> [B, C, H/2, W/2]; ``emb`` is ignored (same call signature as :class:`ResBlock`)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour x2 then a 3x3 conv (DDPM ``resamp_with_conv``).

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """[B, C, H, W] -> [B, C, 2H, 2W]; ``emb`` is ignored (same call signature as :class:`ResBlock`)."""
        return self.conv(_naive_up(x))


def make_downsample(channels: int, emb_dim: int | None, dropout: float, resblock_updown: bool) -> nn.Module:
    """The module between two resolution levels of a downsampling path.

    Args:
        channels: Channels in and out.
        emb_dim: Conditioning embedding size of a resampling ResBlock (``None``: unconditioned).
        dropout: Dropout of a resampling ResBlock.
        resblock_updown: Use a BigGAN ResBlock with ``resample="down"`` (the NCSN++ reference) instead of a
            strided conv.

    Returns:
        A module called as ``module(x, emb)``.
    """
    if resblock_updown:
        return ResBlock(channels, channels, emb_dim, dropout, resample="down")
    return Downsample(channels)


def make_upsample(channels: int, emb_dim: int | None, dropout: float, resblock_updown: bool) -> nn.Module:
    """The module between two resolution levels of an upsampling path (see :func:`make_downsample`)."""
    if resblock_updown:
        return ResBlock(channels, channels, emb_dim, dropout, resample="up")
    return Upsample(channels)


class DownPath(nn.Module):
    """The NCSN++ downsampling path: input conv, ResBlocks (+ attention) per level, resamplers, middle block.

    Shared by :class:`~lzn_lightning.nets.unet.LatentUNet` (with an embedding, keeping the skips for the
    decoder) and :class:`~lzn_lightning.nets.anchor_tower.AnchorTower` (without one, putting a head on every
    skip).

    Args:
        channels: Image channels.
        size: Image height = width.
        width: Base channel count (NCSN++ ``nf``).
        ch_mult: Channel multiplier per resolution level; the resolution halves between levels.
        num_res_blocks: ResBlocks per level.
        attn_resolutions: Resolutions at which every ResBlock is followed by self-attention.
        dropout: ResBlock dropout.
        emb_dim: Conditioning embedding size, ``None`` for no conditioning.
        resblock_updown: Resample with BigGAN ResBlocks instead of strided conv.
    """

    def __init__(
        self,
        channels: int,
        size: int,
        width: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        dropout: float,
        emb_dim: int | None,
        resblock_updown: bool,
    ) -> None:
        super().__init__()
        check_architecture(channels, size, width, ch_mult, num_res_blocks)
        self.conv_in = conv3x3(channels, width)
        self.skip_channels: list[int] = [width]
        self.skip_resolutions: list[int] = [size]
        self.levels = nn.ModuleList()
        ch, res = width, size
        for i, mult in enumerate(ch_mult):
            level = Level()
            for _ in range(num_res_blocks):
                level.blocks.append(ResBlock(ch, width * mult, emb_dim, dropout))
                ch = width * mult
                level.attns.append(AttnBlock(ch) if res in attn_resolutions else nn.Identity())
                self.skip_channels.append(ch)
                self.skip_resolutions.append(res)
            if i != len(ch_mult) - 1:
                level.resample = make_downsample(ch, emb_dim, dropout, resblock_updown)
                res //= 2
                self.skip_channels.append(ch)
                self.skip_resolutions.append(res)
            self.levels.append(level)
        self.mid_block1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = AttnBlock(ch)
        self.mid_block2 = ResBlock(ch, ch, emb_dim, dropout)
        self.out_channels = ch
        self.out_resolution = res

    def forward(self, x: Tensor, emb: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """Run the path.

        Args:
            x: [B, channels, size, size].
            emb: [B, emb_dim] or ``None``.

        Returns:
            ``(skips, mid)``: the skip list (input-conv output, every ResBlock/attention output, every
            downsample output; shapes ``[B, skip_channels[i], skip_resolutions[i], ...]``) and the
            middle-block output ``[B, out_channels, out_resolution, out_resolution]``.
        """
        h = self.conv_in(x)
        skips = [h]
        for level in self.levels:
            assert isinstance(level, Level)
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, emb))
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h, emb)
                skips.append(h)
        h = self.mid_block2(self.mid_attn(self.mid_block1(h, emb)), emb)
        return skips, h


class Level(nn.Module):
    """One resolution level: ResBlocks, attention (or identity) after each, the resampler to the next."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attns = nn.ModuleList()
        self.resample: nn.Module | None
        self.register_module("resample", None)  # set by the builder except on the last level


def check_architecture(
    channels: int, size: int, width: int, ch_mult: tuple[int, ...], num_res_blocks: int
) -> None:
    """Raise ``ValueError`` for an architecture that cannot be built.

    Args:
        channels: Image channels (>= 1).
        size: Image side; must be divisible by ``2 ** (len(ch_mult) - 1)``.
        width: Base channels (>= 1).
        ch_mult: Non-empty tuple of positive multipliers.
        num_res_blocks: ResBlocks per level (>= 1).
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if len(ch_mult) == 0 or any(m < 1 for m in ch_mult):
        raise ValueError(f"ch_mult must be a non-empty tuple of positive ints, got {ch_mult}")
    if num_res_blocks < 1:
        raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
    factor = 2 ** (len(ch_mult) - 1)
    if size < 1 or size % factor != 0:
        raise ValueError(
            f"size {size} must be divisible by 2**(len(ch_mult)-1) = {factor} for ch_mult={ch_mult}; "
            "use fewer levels or a size that halves cleanly (e.g. 28 -> 14 -> 7 allows 3 levels)"
        )
