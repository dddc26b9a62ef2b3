"""Image transforms shared by the datamodules: the SimCLR-like two-view augmentation and value conversion.

Every datamodule hands the model float32 images in [-1, 1]. Augmentations run on tensors (torchvision
``transforms.v2``) or PIL images; colour operations need [0, 1], so the pipeline converts in and out.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


def to_signed(x: Tensor | Image.Image) -> Tensor:
    """Convert an image to float32 in [-1, 1].

    Args:
        x: A PIL image, a uint8 tensor [C, H, W] in [0, 255], or a float tensor already in [-1, 1].

    Returns:
        A float32 tensor [C, H, W] in [-1, 1].
    """
    if isinstance(x, Image.Image):
        x = F.pil_to_tensor(x)
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1.0
    return x.float()


def to_unit(x: Tensor | Image.Image) -> Tensor:
    """Convert an image (PIL, uint8 or float in [-1, 1]) to float32 in [0, 1], as colour transforms expect."""
    if isinstance(x, Image.Image):
        x = F.pil_to_tensor(x)
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return (x.float() + 1.0) / 2.0


class ToUnit:
    """Transform: image (PIL, uint8, or float in [-1, 1]) -> float32 in [0, 1] (a class, so it pickles)."""

    def __call__(self, x: Any) -> Tensor:
        return to_unit(x)


class UnitToSigned:
    """Transform: float tensor in [0, 1] -> float32 in [-1, 1], clamped (blur and jitter may overshoot)."""

    def __call__(self, x: Tensor) -> Tensor:
        return (x * 2.0 - 1.0).clamp_(-1.0, 1.0)


class ToSigned:
    """Transform: image (PIL, uint8, or float in [-1, 1]) -> float32 tensor in [-1, 1]."""

    def __call__(self, x: Any) -> Tensor:
        return to_signed(x)


def blur_kernel_size(size: int) -> int:
    """Gaussian-blur kernel size for images of side ``size``: about 10% of the side, odd, at least 3.

    Why 10%: SimCLR's choice (23 px at 224). Why odd: the kernel needs a centre pixel. Why >= 3: a 1-px
    kernel is no blur, which small images (8x8 digits) would otherwise get.
    """
    k = int(0.1 * size)
    if k % 2 == 0:
        k += 1
    return max(k, 3)


def two_view_transform(
    size: int | tuple[int, int],
    channels: int = 3,
    scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = True,
    jitter_strength: float = 1.0,
    blur: bool = True,
    blur_p: float = 0.5,
) -> v2.Compose:
    """One random SimCLR-like view of an image; call it twice for the two views of contrastive learning.

    Pipeline: RandomResizedCrop -> horizontal flip -> (3 channels only) colour jitter with p=0.8 and grayscale
    with p=0.2 -> Gaussian blur with p=``blur_p`` -> float32 in [-1, 1]. The input may be larger than ``size``
    (ImageNet crops from the full-resolution image).

    Args:
        size: Output side (or (height, width)).
        channels: Image channels; colour jitter and grayscale apply only to 3-channel images.
        scale: RandomResizedCrop area range, as a fraction of the input image.
        flip: Random horizontal flip (turn off where mirroring changes the class, e.g. digits).
        jitter_strength: SimCLR's colour-jitter strength s: brightness/contrast/saturation 0.8s, hue 0.2s.
        blur: Random Gaussian blur with kernel size :func:`blur_kernel_size`.
        blur_p: Probability of the blur: 0.5 is SimCLR's, 1.0 the LZN paper's ImageNet pipeline.

    Returns:
        A transform mapping a PIL image, uint8 tensor or [-1, 1] float tensor to a float32 tensor in [-1, 1].
    """
    side = min(size) if isinstance(size, tuple) else size
    ops: list[Any] = [v2.RandomResizedCrop(size, scale=scale, antialias=True)]
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    ops.append(ToUnit())
    if channels == 3:
        s = jitter_strength
        ops.append(v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8))
        ops.append(v2.RandomGrayscale(p=0.2))
    if blur:
        # Why sigma (0.1, 2.0): SimCLR's and the LZN paper's ImageNet setting.
        blur_op = v2.GaussianBlur(blur_kernel_size(side), sigma=(0.1, 2.0))
        ops.append(blur_op if blur_p >= 1.0 else v2.RandomApply([blur_op], p=blur_p))
    ops.append(UnitToSigned())
    return v2.Compose(ops)
