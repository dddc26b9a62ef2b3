"""timm backbone + projection head: the anchor encoder of the representation recipes
(docs/design/lzn.md §3.4).

The reference (CS2) uses a ResNet-50 with every BatchNorm replaced by GroupNorm(32), the last norm of each
residual block zero-initialised, global average pooling, and a two-layer head

    Linear(feat -> hidden, no bias) -> GN(32) -> ReLU -> Linear(hidden -> out_dim, no bias) -> GN(32)

whose final GroupNorm fixes the anchor scale per group of dimensions (8 dims per group for out_dim 256). The
images arrive in [-1, 1] and are mapped to [0, 1] inside the encoder, without per-channel normalisation.

timm builds the trunk; ``timm`` is imported lazily so that importing :mod:`lzn_lightning.nets` stays cheap.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from lzn_lightning.nets.blocks import num_groups


def group_norm_32(num_channels: int, **kwargs: Any) -> nn.GroupNorm:
    """GroupNorm factory for timm's ``norm_layer``: 32 groups, fewer when 32 does not divide the channels.

    timm's ResNet calls ``norm_layer(num_channels, device=..., dtype=...)``; a plain function passes timm's
    ``get_norm_layer`` check. The group count is the largest divisor of ``num_channels`` not above 32 (unlike
    the U-Net blocks, there is no ``channels // 4`` cap, to match the reference's GroupNorm(32)).

    Args:
        num_channels: Channels to normalise.
        **kwargs: Passed to ``nn.GroupNorm`` (``eps``, ``affine``, ``device``, ``dtype``).

    Returns:
        The normalisation layer.
    """
    groups = next(g for g in range(min(32, num_channels), 0, -1) if num_channels % g == 0)
    return nn.GroupNorm(groups, num_channels, **kwargs)


def _head_norm(dim: int) -> nn.GroupNorm:
    """GroupNorm for the projection head: 32 groups, but never fewer than 8 dimensions per group.

    Why 8: the reference normalises its 256-d anchors (and 2048-d hidden layer) with GroupNorm(32), i.e. at
    least 8 dimensions per group. With a small ``out_dim`` (e.g. 32), 32 groups would hold one dimension each
    and the normalised output would be identically zero, so the group count shrinks to keep >= 8 dimensions
    per group.
    """
    return nn.GroupNorm(num_groups(dim, max_groups=32, min_group_size=8), dim)


def _is_timm_resnet(model: nn.Module) -> bool:
    from timm.models.resnet import ResNet

    return isinstance(model, ResNet)


def _small_input_stem(trunk: nn.Module, channels: int) -> None:
    """Make a timm ResNet keep the resolution in its stem (CIFAR-style ResNet), in place.

    The ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool) divides the resolution by 4 before the first
    stage, which leaves nothing of an 8x8 image. For the plain stem, ``conv1`` is swapped for a 3x3 stride-1
    conv with the same output channels; for timm's "deep" stems (a Sequential of three 3x3 convs, the first of
    stride 2) the first conv's stride is set to 1. ``maxpool`` becomes the identity in both cases. The norm
    ``bn1`` after the stem is kept.
    """
    conv1 = trunk.conv1
    if isinstance(conv1, nn.Conv2d):
        new = nn.Conv2d(channels, conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # timm's ResNet conv init
        trunk.conv1 = new
    elif isinstance(conv1, nn.Sequential) and isinstance(conv1[0], nn.Conv2d):
        conv1[0].stride = (1, 1)
    else:
        raise ValueError(f"small_input: unsupported ResNet stem {type(conv1).__name__}")
    trunk.maxpool = nn.Identity()


class TimmAnchorEncoder(nn.Module):
    """A timm backbone (pooled features) plus the LZN two-layer GroupNorm projection head.

    Args:
        backbone: timm model name, built with ``pretrained=False`` (no download).
        channels: Input image channels.
        out_dim: Anchor size (the LZN latent dimension; 256 in the reference).
        head_hidden: Hidden width of the projection head (2048 in the reference).
        group_norm: Build the trunk with GroupNorm(32) instead of BatchNorm via timm's ``norm_layer`` argument
            (supported by timm's ResNets; other backbones may not accept it).
        small_input: For a timm ResNet, replace the stem by a 3x3 stride-1 conv and drop the max-pool, so that
            8x8 to 32x32 images keep their resolution into the first stage. Raises for other backbones.
    """

    representation: ClassVar[str] = "features"  # ImageModality.embed: the pooled backbone output

    def __init__(
        self,
        backbone: str = "resnet50",
        channels: int = 3,
        out_dim: int = 256,
        head_hidden: int = 2048,
        group_norm: bool = True,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        import timm

        if out_dim < 1 or head_hidden < 1:
            raise ValueError(f"out_dim and head_hidden must be >= 1, got {out_dim}, {head_hidden}")
        self.channels = channels
        self.out_dim = out_dim
        kwargs: dict[str, Any] = {"norm_layer": group_norm_32} if group_norm else {}
        self.trunk = timm.create_model(backbone, pretrained=False, num_classes=0, in_chans=channels, **kwargs)
        if small_input:
            if not _is_timm_resnet(self.trunk):
                raise ValueError(
                    f"small_input=True needs a timm ResNet backbone, got {backbone!r} "
                    f"({type(self.trunk).__name__})"
                )
            _small_input_stem(self.trunk, channels)
        self.head = nn.Sequential(
            nn.Linear(self.feature_dim, head_hidden, bias=False),
            _head_norm(head_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(head_hidden, out_dim, bias=False),
            _head_norm(out_dim),  # fixes the anchor scale per group of dimensions
        )

    @property
    def feature_dim(self) -> int:
        """Size of the pooled trunk representation returned by :meth:`features`."""
        return int(self.trunk.num_features)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint the trunk's stages to save activation memory (the reference does this for ResNet-50)."""
        self.trunk.set_grad_checkpointing(enable)

    def features(self, x: Tensor) -> Tensor:
        """The pre-head pooled representation (the reference's "no head" embedding for probes).

        Args:
            x: [B, channels, H, W] images in [-1, 1].

        Returns:
            [B, feature_dim].
        """
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must be [B, {self.channels}, H, W], got {tuple(x.shape)}")
        return self.trunk(x * 0.5 + 0.5)  # [-1, 1] -> [0, 1], as the reference ResNet does internally

    def forward(self, x: Tensor) -> Tensor:
        """Encode images into anchors.

        Args:
            x: [B, channels, H, W] images in [-1, 1].

        Returns:
            [B, out_dim] anchors.
        """
        return self.head(self.features(x))
