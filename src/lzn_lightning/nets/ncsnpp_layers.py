"""The layers of the paper's NCSN++ image networks, laid out key for key like the released checkpoints.

Every submodule and parameter name here (``GroupNorm_0``, ``Conv_0``, ``Dense_0``, ``NIN_0.W`` ...) is the
name the authors' checkpoints use, so ``lzn import-reference`` loads them without a renaming table; the
classes are written from what the layers compute (docs/design/networks.md). Two conventions differ from
torch's own layers:

* initialisation is the DDPM "variance scaling, fan-average, uniform" rule (Xavier-uniform when ``scale=1``),
  with ``scale=0`` meaning 1e-10 rather than exact zero, biases zero;
* the attention projections (``NIN``) hold their weight as [in, out] and apply it to the channel axis.

The GroupNorm helper and the average-pool downsampling are blocks.py's (the same layers and numbers). The
residual and attention blocks are not: blocks.py's (the digits recipes' U-Net and anchor tower) have other
parameter names and shapes, exact-zero initialisation and a skip rescale by multiplication, and existing
checkpoints hold that layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn_lightning.nets.blocks import group_norm, naive_downsample

# Why 1e-10: the reference treats an init scale of 0 (residual branch ends, output convs) as 1e-10, not 0, so
# those weights start tiny but not exactly zero.
_ZERO_SCALE = 1e-10
# The FIR kernel of the 256 px configs: a separable [1, 3, 3, 1] binomial filter (normalised to sum 1).
FIR_KERNEL = (1.0, 3.0, 3.0, 1.0)
_SQRT2 = math.sqrt(2.0)


@torch.no_grad()
def variance_scaling_(weight: Tensor, scale: float = 1.0) -> Tensor:
    """Fill ``weight`` uniformly with variance ``scale / fan_avg`` (fans over dims 0 and 1 times the rest)."""
    scale = _ZERO_SCALE if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_avg = (weight.shape[0] + weight.shape[1]) * receptive / 2
    bound = math.sqrt(3.0 * scale / fan_avg)
    return weight.uniform_(-bound, bound)


def conv(in_ch: int, out_ch: int, kernel: int = 3, scale: float = 1.0) -> nn.Conv2d:
    """A same-padded convolution with variance-scaling weights and zero bias."""
    layer = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
    variance_scaling_(layer.weight, scale)
    nn.init.zeros_(layer.bias)
    return layer


def dense(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer with variance-scaling weights and zero bias."""
    layer = nn.Linear(in_features, out_features)
    variance_scaling_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _fir_weight(x: Tensor, gain: float) -> Tensor:
    """The depthwise 4x4 FIR filter [C, 1, 4, 4] for ``x``'s channels, summing to ``gain``."""
    k = torch.tensor(FIR_KERNEL, dtype=x.dtype, device=x.device)
    k2 = torch.outer(k, k)
    k2 = k2 * (gain / k2.sum())
    return k2.expand(x.shape[1], 1, 4, 4)


def fir_downsample(x: Tensor) -> Tensor:
    """Halve the resolution: filter with the [1,3,3,1] kernel (pad 1 each side), keep every second pixel."""
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), _fir_weight(x, 1.0), stride=2, groups=x.shape[1])


def fir_upsample(x: Tensor) -> Tensor:
    """Double the resolution: zero-stuff, pad (2, 1), filter with the [1,3,3,1] kernel times 4 (its gain)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    # the kernel is symmetric, so correlation (conv2d) equals the convolution the FIR definition asks for
    return F.conv2d(F.pad(up, (2, 1, 2, 1)), _fir_weight(x, 4.0), groups=c)


def naive_upsample(x: Tensor) -> Tensor:
    """Nearest-neighbour 2x upsampling."""
    # Not blocks.py's F.interpolate: the same values, but its backward sums the four gradients in another
    # order (last-bit differences), so sharing it would change the paper networks' training numerics.
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class NIN(nn.Module):
    """A per-pixel linear map over channels with weight ``W`` [in, out] and bias ``b`` [out]."""

    def __init__(self, in_ch: int, out_ch: int, scale: float = 0.1) -> None:
        super().__init__()
        self.W = nn.Parameter(variance_scaling_(torch.empty(in_ch, out_ch), scale))
        self.b = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        """[B, in, H, W] -> [B, out, H, W]."""
        return torch.einsum("bchw,co->bohw", x, self.W) + self.b[None, :, None, None]


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, residual and rescaled by 1/sqrt(2).

    Kept apart from blocks.AttnBlock: four ``NIN`` [in, out] weights here, one 1x1 ``qkv`` conv [3C, C] there.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, scale=0.0)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        b, c, h, w = x.shape
        y = self.GroupNorm_0(x)
        q, k, v = (proj(y).flatten(2) for proj in (self.NIN_0, self.NIN_1, self.NIN_2))  # [B, C, HW] each
        weights = torch.softmax(
            torch.einsum("bcn,bcm->bnm", q, k) * c**-0.5, dim=-1
        )  # [B, HW(query), HW(key)]
        out = torch.einsum("bnm,bcm->bcn", weights, v).reshape(b, c, h, w)
        return (x + self.NIN_3(out)) / _SQRT2


class ResBlock(nn.Module):
    """BigGAN-type residual block: GN-SiLU-(resample)-conv, + time bias, GN-SiLU-dropout-conv; skip 1x1 conv.

    Args:
        in_ch: Input channels.
        out_ch: Output channels (default ``in_ch``).
        emb_dim: Size of the conditioning embedding (None: the block takes none, as in the encoder).
        up: Double the resolution inside the block.
        down: Halve the resolution inside the block.
        dropout: Dropout before the second conv.
        fir: Resample with the FIR filter instead of nearest / average pooling.

    Kept apart from blocks.ResBlock: the authors' parameter names, 1e-10 not 0 init and ``(x + h) / sqrt(2)``
    (blocks.py multiplies by 1/sqrt(2), which differs in the last bit).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        emb_dim: int | None = None,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.0,
        fir: bool = False,
    ) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.up, self.down, self.fir = up, down, fir
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = conv(in_ch, out_ch)
        if emb_dim is not None:
            self.Dense_0 = dense(emb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv(out_ch, out_ch, scale=0.0)
        self.Conv_2 = conv(in_ch, out_ch, kernel=1) if (in_ch != out_ch or up or down) else None

    def _resample(self, x: Tensor) -> Tensor:
        if self.up:
            return fir_upsample(x) if self.fir else naive_upsample(x)
        if self.down:
            return fir_downsample(x) if self.fir else naive_downsample(x)
        return x

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """[B, in, H, W] (and [B, emb_dim]) -> [B, out, H', W']."""
        h = self._resample(F.silu(self.GroupNorm_0(x)))
        x = self._resample(x)
        h = self.Conv_0(h)
        if emb is not None:
            h = h + self.Dense_0(F.silu(emb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(F.silu(self.GroupNorm_1(h))))
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        return (x + h) / _SQRT2


class Combine(nn.Module):
    """Adds a 1x1-conv projection of the input pyramid's image to a feature map (progressive input)."""

    def __init__(self, pyramid_ch: int, channels: int) -> None:
        super().__init__()
        self.Conv_0 = conv(pyramid_ch, channels, kernel=1)

    def forward(self, pyramid: Tensor, h: Tensor) -> Tensor:
        """[B, pyramid_ch, H, W], [B, channels, H, W] -> [B, channels, H, W]."""
        return self.Conv_0(pyramid) + h


class FourierFeatures(nn.Module):
    """Gaussian Fourier features ``[sin 2 pi s W, cos 2 pi s W]`` of a scalar; ``W`` is fixed."""

    def __init__(self, size: int, scale: float = 16.0) -> None:
        super().__init__()
        # A parameter with requires_grad=False, not a buffer: the released checkpoints store it among the
        # parameters, and it counts in the network's parameter total.
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, s: Tensor) -> Tensor:
        """[B] -> [B, 2 * size]."""
        proj = s[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class NoHead(nn.Module):
    """Placeholder for a feature map without a latent head (keeps the head indices of the checkpoints)."""
