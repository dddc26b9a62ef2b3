"""The paper's NCSN++ image encoder and rectified-flow decoder (docs/design/networks.md).

Both networks keep every layer in one flat ``all_modules`` list in the order the forward pass meets it (the
layout of the authors' checkpoints, so ``lzn import-reference`` maps them name for name and their EMA lists
position for position). The two settings of the paper:

* CIFAR-10 (case studies 1 and 3): width 128, ``ch_mult=(1, 2, 2, 2)``, 4 blocks per level, attention at 16
  px, average-pool / nearest resampling, sinusoidal time embedding of 999 t.
* 256 px (AFHQ-Cat, CelebA-HQ, LSUN-Bedroom): ``ch_mult=(1, 1, 2, 2, 2, 2, 2)``, 2 blocks, ``fir=True`` (the
  [1,3,3,1] filter), ``progressive=True`` (the input image joins every level of the down path; the decoder's
  output is the sum of per-level image predictions, upsampled), Gaussian Fourier features of log(999 t), and
  the decoder output divided by 999 t (``scale_by_sigma``), heads only at 64..4 px.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn_lightning.nets.blocks import group_norm, timestep_embedding
from lzn_lightning.nets.inputs import check_image, latent_label_input
from lzn_lightning.nets.ncsnpp_layers import (
    AttnBlock,
    Combine,
    FourierFeatures,
    NoHead,
    ResBlock,
    conv,
    dense,
    fir_downsample,
    fir_upsample,
)

# Why 999: the networks see times as 999 t (t clamped to [0, 1]), the DDPM timestep range they were designed
# for.
_TIME_SCALE = 999.0


def _down_path(
    modules: list[nn.Module],
    channels: int,
    size: int,
    width: int,
    ch_mult: Sequence[int],
    num_res_blocks: int,
    attn_resolutions: Sequence[int],
    emb_dim: int | None,
    dropout: float,
    fir: bool,
    progressive: bool,
) -> list[tuple[int, int]]:
    """Append the input conv, the down levels and the middle block to ``modules``.

    Returns:
        (channels, resolution) of every skip feature map, in order (the input conv, each block, each
        downsample), then of the middle block's output.
    """
    block = dict(emb_dim=emb_dim, dropout=dropout, fir=fir)
    modules.append(conv(channels, width))
    skips = [(width, size)]
    ch, res = width, size
    for level, mult in enumerate(ch_mult):
        for _ in range(num_res_blocks):
            modules.append(ResBlock(ch, width * mult, **block))
            ch = width * mult
            if res in attn_resolutions:
                modules.append(AttnBlock(ch))
            skips.append((ch, res))
        if level != len(ch_mult) - 1:
            modules.append(ResBlock(ch, down=True, **block))
            res //= 2
            if progressive:
                modules.append(Combine(channels, ch))
            skips.append((ch, res))
    modules += [ResBlock(ch, **block), AttnBlock(ch), ResBlock(ch, **block)]
    return [*skips, (ch, res)]


def _run_down_path(
    layers: Iterator[nn.Module],
    x: Tensor,
    emb: Tensor | None,
    levels: int,
    blocks: int,
    attn: Sequence[int],
    progressive: bool,
) -> tuple[list[Tensor], Tensor]:
    """The forward pass of :func:`_down_path`: (skip feature maps, middle output)."""
    pyramid = x
    hs = [next(layers)(x)]
    for level in range(levels):
        for _ in range(blocks):
            h = next(layers)(hs[-1], emb)
            if h.shape[-1] in attn:
                h = next(layers)(h)
            hs.append(h)
        if level != levels - 1:
            h = next(layers)(hs[-1], emb)
            if progressive:
                pyramid = fir_downsample(pyramid)
                h = next(layers)(pyramid, h)
            hs.append(h)
    h = next(layers)(hs[-1], emb)
    h = next(layers)(h)
    return hs, next(layers)(h, emb)


class NCSNppEncoder(nn.Module):
    """The NCSN++ down path with a latent head on every feature map; the anchor is the sum of the heads.

    Each head: 1x1 conv to ``head_channels``, SiLU, flatten, ``head_layers`` linear layers (hidden
    ``head_hidden``,
    SiLU between) to ``latent_dim``. No time embedding. Heads at resolutions outside ``head_resolutions`` are
    left out (they add zero).

    Args:
        channels: Image channels.
        size: Image height = width.
        latent_dim: Anchor size.
        width: Base channels (``nf``).
        ch_mult: Channel multiplier per level; the resolution halves between levels.
        num_res_blocks: Residual blocks per level.
        attn_resolutions: Resolutions with self-attention.
        dropout: Residual-block dropout.
        fir: FIR [1,3,3,1] resampling (256 px configs).
        progressive: Feed the FIR-downsampled input image into every level (256 px configs).
        head_channels: 1x1-conv channels of each head.
        head_hidden: Hidden width of each head.
        head_layers: Linear layers per head (>= 2).
        head_resolutions: Resolutions that get a head (None: all).
    """

    representation: ClassVar[str] = "anchor"  # ImageModality.embed returns the anchor (heads at every scale)

    def __init__(
        self,
        channels: int,
        size: int,
        latent_dim: int,
        width: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        fir: bool = False,
        progressive: bool = False,
        head_channels: int = 20,
        head_hidden: int = 200,
        head_layers: int = 2,
        head_resolutions: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if size % 2 ** (len(ch_mult) - 1):
            raise ValueError(
                f"size {size} must be divisible by 2**(len(ch_mult)-1) = {2 ** (len(ch_mult) - 1)}"
            )
        if head_layers < 2:
            raise ValueError(f"head_layers must be >= 2, got {head_layers}")
        self.channels, self.size, self.latent_dim = channels, size, latent_dim
        self._shape = (len(ch_mult), num_res_blocks, tuple(attn_resolutions), progressive)
        modules: list[nn.Module] = []
        skips = _down_path(modules, channels, size, width, ch_mult, num_res_blocks, attn_resolutions, None,
                           dropout, fir, progressive)  # fmt: skip
        keep = set(head_resolutions) if head_resolutions is not None else None
        spatial: list[nn.Module] = []
        latent: list[nn.Module] = []
        for ch, res in skips:
            if keep is not None and res not in keep:
                spatial.append(NoHead())
                latent.append(NoHead())
                continue
            spatial.append(nn.Sequential(conv(ch, head_channels, kernel=1), nn.SiLU()))
            mlp: list[nn.Module] = [nn.Linear(head_channels * res * res, head_hidden)]
            for _ in range(head_layers - 2):
                mlp += [nn.SiLU(), nn.Linear(head_hidden, head_hidden)]
            mlp += [nn.SiLU(), nn.Linear(head_hidden, latent_dim)]
            latent.append(nn.Sequential(*mlp))
        # registration order = the checkpoints' parameter order: heads first, then the trunk
        self.spatial_transformations = nn.ModuleList(spatial)
        self.latent_transformations = nn.ModuleList(latent)
        self.all_modules = nn.ModuleList(modules)

    def _trunk(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        check_image(x, self.channels, self.size)
        levels, blocks, attn, progressive = self._shape
        return _run_down_path(iter(self.all_modules), x, None, levels, blocks, attn, progressive)

    def forward(self, x: Tensor) -> Tensor:
        """Anchors [B, latent_dim] of images [B, channels, size, size]."""
        hs, middle = self._trunk(x)
        anchor = x.new_zeros(x.shape[0], self.latent_dim)
        for h, spatial, latent in zip(
            [*hs, middle], self.spatial_transformations, self.latent_transformations, strict=True
        ):
            if not isinstance(spatial, NoHead):
                anchor = anchor + latent(spatial(h).flatten(1))  # [B, head_channels * res^2] -> [B, d]
        return anchor

    def features(self, x: Tensor) -> Tensor:
        """The middle block's output averaged over pixels, [B, C] (a trunk feature for probes)."""
        return self._trunk(x)[1].mean(dim=(2, 3))


class NCSNppDecoder(nn.Module):
    """The NCSN++ rectified-flow U-Net, its time-embedding MLP fed [latent, one-hot label, time features].

    Args:
        channels: Image channels.
        size: Image height = width.
        latent_dim: Size of the LZN latent.
        num_classes: Classes of the one-hot label input (0: none).
        width: Base channels (``nf``); the embedding MLP is ``4 * width`` wide.
        ch_mult: Channel multiplier per level.
        num_res_blocks: Residual blocks per level on the way down (one more on the way up).
        attn_resolutions: Resolutions with self-attention.
        dropout: Residual-block dropout.
        fir: FIR [1,3,3,1] resampling.
        progressive: Input-skip pyramid on the way down and output-skip image sum on the way up.
        time_embedding: ``"positional"`` (sinusoidal of 999 t, ``width`` dims) or ``"fourier"`` (Gaussian
            Fourier features of log(999 t), ``2 * width`` dims).
        fourier_scale: Standard deviation of the fixed Fourier frequencies.
        scale_by_sigma: Divide the output by 999 t (kept from the 256 px configs the paper trained with).
        latent_conditioning: If False, the latent input is always zeros (a plain RF baseline, same layout).
    """

    def __init__(
        self,
        channels: int,
        size: int,
        latent_dim: int,
        num_classes: int = 0,
        width: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        fir: bool = False,
        progressive: bool = False,
        time_embedding: str = "positional",
        fourier_scale: float = 16.0,
        scale_by_sigma: bool = False,
        latent_conditioning: bool = True,
    ) -> None:
        super().__init__()
        if time_embedding not in ("positional", "fourier"):
            raise ValueError(f"time_embedding must be 'positional' or 'fourier', got {time_embedding!r}")
        if size % 2 ** (len(ch_mult) - 1):
            raise ValueError(
                f"size {size} must be divisible by 2**(len(ch_mult)-1) = {2 ** (len(ch_mult) - 1)}"
            )
        self.channels, self.size, self.latent_dim, self.num_classes = channels, size, latent_dim, num_classes
        self.width, self.time_embedding, self.scale_by_sigma = width, time_embedding, scale_by_sigma
        self.latent_conditioning = latent_conditioning
        self._shape = (len(ch_mult), num_res_blocks, tuple(attn_resolutions), progressive)
        emb_dim = 4 * width
        modules: list[nn.Module] = []
        time_dim = width
        if time_embedding == "fourier":
            modules.append(FourierFeatures(width, fourier_scale))
            time_dim = 2 * width
        modules += [dense(latent_dim + num_classes + time_dim, emb_dim), dense(emb_dim, emb_dim)]
        skips = _down_path(modules, channels, size, width, ch_mult, num_res_blocks, attn_resolutions, emb_dim,
                           dropout, fir, progressive)  # fmt: skip
        skip_channels = [ch for ch, _ in skips[:-1]]
        ch, res = skips[-1]
        block = dict(emb_dim=emb_dim, dropout=dropout, fir=fir)
        for level in reversed(range(len(ch_mult))):
            for _ in range(num_res_blocks + 1):
                modules.append(ResBlock(ch + skip_channels.pop(), width * ch_mult[level], **block))
                ch = width * ch_mult[level]
            if res in attn_resolutions:
                modules.append(AttnBlock(ch))
            if progressive:  # this level's image prediction
                modules += [group_norm(ch), conv(ch, channels, scale=0.0)]
            if level != 0:
                modules.append(ResBlock(ch, up=True, **block))
                res *= 2
        assert not skip_channels and res == size
        if not progressive:
            modules += [group_norm(ch), conv(ch, channels, scale=0.0)]
        self.all_modules = nn.ModuleList(modules)

    def _conditioning(self, batch: int, t: Tensor, latent: Tensor | None, labels: Tensor | None) -> Tensor:
        """The latent and label part of the embedding MLP's input, [B, latent_dim + num_classes]."""
        dtype = self.all_modules[-1].weight.dtype
        parts = latent_label_input(self, batch, latent, labels, dtype, t.device)
        return torch.cat(parts, dim=1)

    def forward(
        self, x: Tensor, t: Tensor, latent: Tensor | None = None, labels: Tensor | None = None
    ) -> Tensor:
        """Rectified-flow velocity [B, C, H, W] at state ``x`` and times ``t`` [B] (or a scalar) in [0, 1]."""
        check_image(x, self.channels, self.size)
        b = x.shape[0]
        t = t.expand(b) if t.dim() == 0 else t
        if t.shape != (b,):
            raise ValueError(f"t must be [B={b}] or a scalar, got {tuple(t.shape)}")
        sigma = t.clamp(0.0, 1.0) * _TIME_SCALE  # [B]
        layers = iter(self.all_modules)
        if self.time_embedding == "fourier":
            time = next(layers)(torch.log(sigma))
        else:
            time = timestep_embedding(sigma, self.width)
        cond = torch.cat([self._conditioning(b, t, latent, labels), time.to(x.dtype)], dim=1)
        first, second = next(layers), next(layers)
        emb = second(F.silu(first(cond)))  # [B, 4 * width]

        levels, blocks, attn, progressive = self._shape
        hs, h = _run_down_path(layers, x, emb, levels, blocks, attn, progressive)
        image: Tensor | None = None  # the progressive output: per-level image predictions, summed
        for level in reversed(range(levels)):
            for _ in range(blocks + 1):
                h = next(layers)(torch.cat([h, hs.pop()], dim=1), emb)
            if h.shape[-1] in attn:
                h = next(layers)(h)
            if progressive:
                norm, out = next(layers), next(layers)
                level_image = out(F.silu(norm(h)))
                image = level_image if image is None else fir_upsample(image) + level_image
            if level != 0:
                h = next(layers)(h, emb)
        if image is None:
            norm, out = next(layers), next(layers)
            image = out(F.silu(norm(h)))
        if self.scale_by_sigma:
            image = image / sigma[:, None, None, None]
        return image
