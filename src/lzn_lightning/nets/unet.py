"""Latent-conditioned rectified-flow U-Net: the LZN image decoder (docs/design/lzn.md §3.4, NCSN++ RF).

The network predicts the rectified-flow velocity ``v(x_t, t)`` (t=0 noise, t=1 data). It is the NCSN++ U-Net
of the RectifiedFlow repository except for its conditioning input: the first layer of the time-embedding MLP
takes ``concat[latent, one_hot(label), sinusoidal(999 t)]``, so the LZN latent (and the class label in the
joint recipe) conditions every ResBlock through the same per-channel bias as the time.

Kept from NCSN++ (CIFAR config): BigGAN-type ResBlocks with skip rescaling, single-head attention after every
down-path ResBlock and once per up-path level at ``attn_resolutions``, a middle ResBlock-Attn-ResBlock, a
zero-initialised output conv. Not implemented: FIR resampling, the progressive input/output pyramids, Gaussian
Fourier time features and ``scale_by_sigma`` of the reference's 256x256 configs; a 256x256 net here is the
CIFAR design with more levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn_lightning.nets.blocks import (
    AttnBlock,
    DownPath,
    Level,
    ResBlock,
    conv3x3,
    group_norm,
    linear,
    make_upsample,
    timestep_embedding,
)
from lzn_lightning.nets.inputs import check_image, latent_label_input

# Why 999: the RF NCSN++ config embeds integer-like "timesteps"; the reference feeds 999 * t (t clamped to
# [0, 1]) to the sinusoidal embedding, whose frequencies were designed for timesteps in [0, 1000).
_TIME_SCALE = 999.0


class LatentUNet(nn.Module):
    """Rectified-flow U-Net conditioned on an LZN latent and optionally a class label.

    The defaults are the digits recipes' decoder (``decoder: unet``).

    Args:
        channels: Image channels.
        size: Image height = width; must be divisible by ``2 ** (len(ch_mult) - 1)``.
        latent_dim: Size of the LZN latent fed to the conditioning MLP.
        num_classes: Number of classes for one-hot label conditioning; 0 disables labels.
        width: Base channel count (NCSN++ ``nf``); the embedding MLP is ``4 * width`` wide.
        ch_mult: Channel multiplier per resolution level; the resolution halves between levels.
        num_res_blocks: ResBlocks per level on the way down (one more per level on the way up).
        attn_resolutions: Resolutions that get self-attention (resolutions never reached are ignored).
        dropout: ResBlock dropout.
        latent_conditioning: If False, the latent input is always zeros (an unconditional RF baseline with the
            same parameter layout).
        resblock_updown: Resample between levels with BigGAN ResBlocks (2x2 average pool / nearest, as NCSN++
            ``resblock_type="biggan"``, which the reference uses) instead of a strided conv / nearest + conv.
    """

    def __init__(
        self,
        channels: int,
        size: int,
        latent_dim: int,
        num_classes: int = 0,
        width: int = 32,
        ch_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attn_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        latent_conditioning: bool = True,
        resblock_updown: bool = False,
    ) -> None:
        super().__init__()
        if latent_dim < 0:
            raise ValueError(f"latent_dim must be >= 0, got {latent_dim}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if width < 4:
            raise ValueError(f"width must be >= 4 (it is also the time-embedding size), got {width}")
        self.channels = channels
        self.size = size
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.width = width
        self.latent_conditioning = latent_conditioning
        ch_mult = tuple(ch_mult)
        attn_resolutions = tuple(attn_resolutions)

        emb_dim = 4 * width
        self.cond_dim = latent_dim + num_classes + width
        self.emb_mlp = nn.Sequential(linear(self.cond_dim, emb_dim), nn.SiLU(), linear(emb_dim, emb_dim))

        self.down = DownPath(
            channels,
            size,
            width,
            ch_mult,
            num_res_blocks,
            attn_resolutions,
            dropout,
            emb_dim,
            resblock_updown,
        )

        skip_channels = list(self.down.skip_channels)
        ch, res = self.down.out_channels, self.down.out_resolution
        self.up_levels = nn.ModuleList()  # coarsest level first
        for i in reversed(range(len(ch_mult))):
            level = Level()
            for j in range(num_res_blocks + 1):
                level.blocks.append(ResBlock(ch + skip_channels.pop(), width * ch_mult[i], emb_dim, dropout))
                ch = width * ch_mult[i]
                # NCSN++ attends once per up-path level, after its last ResBlock.
                last = j == num_res_blocks
                level.attns.append(AttnBlock(ch) if last and res in attn_resolutions else nn.Identity())
            if i != 0:
                level.resample = make_upsample(ch, emb_dim, dropout, resblock_updown)
                res *= 2
            self.up_levels.append(level)
        assert not skip_channels and res == size
        self.norm_out = group_norm(ch)
        self.conv_out = conv3x3(ch, channels, zero=True)

    def _conditioning(self, batch: int, t: Tensor, latent: Tensor | None, labels: Tensor | None) -> Tensor:
        """The input of the embedding MLP, [B, latent_dim + num_classes + width]."""
        dtype = self.emb_mlp[0].weight.dtype
        parts = latent_label_input(self, batch, latent, labels, dtype, t.device)
        parts.append(timestep_embedding(t.clamp(0.0, 1.0) * _TIME_SCALE, self.width).to(dtype))
        return torch.cat(parts, dim=1)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        latent: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Predict the rectified-flow velocity.

        Args:
            x: [B, channels, size, size] state x_t.
            t: [B] (or scalar) RF times in [0, 1] (t=0 noise, t=1 data); clamped to [0, 1] as the reference.
            latent: [B, latent_dim] LZN latents; ``None`` (or ``latent_conditioning=False``) feeds zeros.
            labels: [B] integer labels in [0, num_classes); ``None`` feeds an all-zero one-hot.

        Returns:
            [B, channels, size, size] velocity.
        """
        check_image(x, self.channels, self.size)
        batch = x.shape[0]
        if t.dim() == 0:
            t = t.expand(batch)
        if t.dim() != 1 or t.shape[0] != batch:
            raise ValueError(f"t must be [B={batch}] or a scalar, got {tuple(t.shape)}")
        emb = self.emb_mlp(self._conditioning(batch, t, latent, labels))  # [B, 4*width]

        skips, h = self.down(x, emb)
        for level in self.up_levels:
            assert isinstance(level, Level)
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))  # concat on channels
            if level.resample is not None:
                h = level.resample(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))
