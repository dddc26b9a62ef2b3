"""SimCLR-style views split in two halves: geometry in the loader workers, colour and blur on the device.

The photometric ops of a SimCLR view (colour jitter, grayscale, a 23-px Gaussian blur) cost ~5x more CPU than
decoding and cropping the image (``benchmarks/input_pipeline.py``); on a GPU they are a few elementwise passes
and one separable convolution over the whole batch. So a worker decodes, crops and flips (ops that change the
image's size, which a batch cannot hold before they ran) and only *draws* the photometric parameters; the
device applies them to the batch with kornia's batched functional ops, each sample with its own parameters.

Drawing in the worker keeps exact resume exact: the worker's draws come from torch's generator seeded by
``(seed, epoch, index)`` (:class:`~lzn_lightning.data.resumable.SeededDataset`), so the parameters a sample
gets do not depend on the device, the batch it lands in, or what ran before.

The distributions are torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)``, ``RandomGrayscale(p)`` and
``GaussianBlur(k, sigma)`` (with ``RandomApply(p)``): each jitter factor uniform on
``[max(0, 1 - x), 1 + x]``, hue uniform on ``[-h, h]`` (a fraction of the colour circle), the four jitter
ops in a random order per sample, sigma uniform on its range, the same for both image axes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from lzn_lightning.data.transforms import two_view_transform

#: Batch key suffix of a view's photometric parameters: ``image`` [B, 3, H, W] uint8 comes with
#: ``image.photometric`` [B, NUM_PARAMS] until the device applies them (the key then goes).
PARAMS_SUFFIX = ".photometric"

# Columns of a parameter row.
JITTER = 0  # 1.0: the colour jitter applies to this view
FACTORS = slice(1, 5)  # brightness, contrast, saturation multipliers; hue shift as a fraction of the circle
ORDER = slice(5, 9)  # the order of the four jitter ops (a permutation of 0..3, as floats)
GRAY = 9  # 1.0: the view becomes grayscale
SIGMA = 10  # blur sigma; 0.0: no blur
NUM_PARAMS = 11


class DeviceView(NamedTuple):
    """A view whose worker half ran: the cropped image as uint8 [C, H, W] and its photometric parameters."""

    image: Tensor
    params: Tensor


@functools.cache
def jitter_ops() -> tuple[Callable[[Tensor, Tensor], Tensor], ...]:
    """The jitter ops, by the index the order column uses: torchvision's formulas, batched with per-sample
    factors (kornia's; imported on first use, as importing kornia adds ~0.4 s to every ``lzn`` call)."""
    from kornia import enhance

    def hue(x: Tensor, turns: Tensor) -> Tensor:
        return enhance.adjust_hue(x, turns * (2 * math.pi))  # kornia takes radians, torchvision turns

    return (
        enhance.adjust_brightness_accumulative,  # x * f
        enhance.adjust_contrast_with_mean_subtraction,  # blend with the grayscale mean
        enhance.adjust_saturation_with_gray_subtraction,  # blend with the grayscale image
        hue,
    )


class PhotometricAugment:
    """The photometric half of a SimCLR view: draws parameters per sample, applies them to a batch.

    Args:
        jitter_strength: SimCLR's colour-jitter strength s: brightness/contrast/saturation 0.8s, hue 0.2s.
        jitter_p: Probability that a view is colour-jittered.
        grayscale_p: Probability that a view becomes grayscale.
        blur_kernel: Side of the Gaussian blur kernel (odd).
        blur_sigma: Range of the blur's sigma, drawn uniformly.
        blur_p: Probability that a view is blurred (1.0: the LZN paper's ImageNet views; 0.5: SimCLR's).
    """

    def __init__(
        self,
        jitter_strength: float = 1.0,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_kernel: int = 23,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_p: float = 1.0,
    ) -> None:
        if blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd and positive, got {blur_kernel}")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"blur_sigma must be (low, high) with 0 < low <= high, got {blur_sigma}")
        s = jitter_strength
        # Why these: SimCLR's ColorJitter(0.8s, 0.8s, 0.8s, 0.2s), as the paper's ImageNet views use.
        self.brightness = self.contrast = self.saturation = 0.8 * s
        self.hue = 0.2 * s
        self.jitter_p, self.grayscale_p, self.blur_p = jitter_p, grayscale_p, blur_p
        self.blur_kernel, self.blur_sigma = blur_kernel, blur_sigma

    def __repr__(self) -> str:
        return (
            f"PhotometricAugment(jitter {self.brightness:g}/{self.contrast:g}/{self.saturation:g}/"
            f"{self.hue:g} p={self.jitter_p:g}, grayscale p={self.grayscale_p:g}, blur {self.blur_kernel} px "
            f"sigma {self.blur_sigma} p={self.blur_p:g})"
        )

    def draw(self) -> Tensor:
        """One view's parameters, float32 [NUM_PARAMS], from torch's default generator (seeded per sample)."""
        u = torch.rand(8).tolist()  # Python floats: ~10x cheaper than writing tensor elements one by one
        factors = []
        for k, x in enumerate((self.brightness, self.contrast, self.saturation)):
            low, high = max(0.0, 1.0 - x), 1.0 + x
            factors.append(low + (high - low) * u[1 + k])
        factors.append(self.hue * (2 * u[4] - 1))
        low, high = self.blur_sigma
        sigma = low + (high - low) * u[7] if u[6] < self.blur_p else 0.0
        row = [
            float(u[0] < self.jitter_p),
            *factors,
            *torch.randperm(4).tolist(),
            float(u[5] < self.grayscale_p),
            sigma,
        ]
        return torch.tensor(row, dtype=torch.float32)  # columns: JITTER, FACTORS, ORDER, GRAY, SIGMA

    @torch.no_grad()
    def __call__(self, images: Tensor, params: Tensor) -> Tensor:
        """Apply each sample's parameters.

        Args:
            images: uint8 [B, C, H, W] (C = 3 gets jitter and grayscale; any C gets the blur).
            params: float [B, NUM_PARAMS], rows of :meth:`draw`.

        Returns:
            float32 [B, C, H, W] in [-1, 1], the model's input range.
        """
        if images.dtype != torch.uint8 or images.dim() != 4 or params.shape != (len(images), NUM_PARAMS):
            raise ValueError(
                f"expected uint8 images [B, C, H, W] and params [B, {NUM_PARAMS}], got {images.dtype} "
                f"{tuple(images.shape)} and {tuple(params.shape)}"
            )
        from kornia.color import rgb_to_grayscale
        from kornia.filters import gaussian_blur2d

        x = images.float().div_(255.0)
        params = params.to(x.device, torch.float32)
        if x.shape[1] == 3:
            jitter, order, factors = params[:, JITTER] > 0.5, params[:, ORDER].long(), params[:, FACTORS]
            for position in range(4):  # every sample's position-th jitter op, grouped by which op that is
                for op, adjust in enumerate(jitter_ops()):
                    rows = _rows(jitter & (order[:, position] == op))
                    if len(rows):
                        x[rows] = adjust(x[rows], factors[rows, op])
            rows = _rows(params[:, GRAY] > 0.5)
            if len(rows):
                x[rows] = rgb_to_grayscale(x[rows]).expand(-1, 3, -1, -1)
        rows = _rows(params[:, SIGMA] > 0)
        if len(rows):
            sigma = params[rows, SIGMA, None].expand(-1, 2)  # [n, 2]: the same sigma along y and x
            x[rows] = gaussian_blur2d(x[rows], (self.blur_kernel, self.blur_kernel), sigma)
        return x.mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0)


def _rows(mask: Tensor) -> Tensor:
    """Indices [n] of the true entries of a bool mask [B]."""
    return mask.nonzero().squeeze(1)


class CropFlipView:
    """The worker half of a view: RandomResizedCrop and flip, as uint8, with the photometric parameters drawn.

    Args:
        size: Output side (or (height, width)).
        photometric: Draws the parameters the device applies later.
        scale: RandomResizedCrop area range, as a fraction of the input image.
        flip: Random horizontal flip.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        photometric: PhotometricAugment,
        scale: tuple[float, float] = (0.08, 1.0),
        flip: bool = True,
    ) -> None:
        ops: list[Any] = [v2.RandomResizedCrop(size, scale=scale, antialias=True)]
        if flip:
            ops.append(v2.RandomHorizontalFlip())
        self.geometric = v2.Compose(ops)
        self.photometric = photometric

    def __call__(self, image: Image.Image | Tensor) -> DeviceView:
        x = self.geometric(image)  # [C, H, W]
        if isinstance(x, Image.Image):
            x = F.pil_to_tensor(x)
        if x.dtype != torch.uint8:
            raise TypeError(f"CropFlipView serves uint8 images (PIL or uint8 tensors), got {x.dtype}")
        return DeviceView(x, self.photometric.draw())


class PhotometricViews:
    """Mixin of the image-file datamodules: two SimCLR views of ``size`` px, the photometric half on the
    device (``photometric_on_device``) or everything in the workers (torchvision); the same distribution."""

    size: int
    photometric: PhotometricAugment
    photometric_on_device: bool

    def view_transform(self) -> Callable[[Any], Any]:
        if self.photometric_on_device:
            return CropFlipView(self.size, self.photometric)
        return two_view_transform(self.size, channels=3, blur_p=self.photometric.blur_p)

    def device_augment(self) -> PhotometricAugment | None:
        return self.photometric if self.photometric_on_device else None


def finish_device_views(batch: Any, augment: PhotometricAugment | None) -> Any:
    """Apply the photometric half to every view of ``batch`` that carries parameters (``<key>.photometric``).

    Args:
        batch: A batch dict as the loader collated it (others pass through).
        augment: The photometric half that drew the parameters.

    Returns:
        The batch with those views float32 in [-1, 1] and the parameter keys removed.
    """
    if not isinstance(batch, dict):
        return batch
    keys = [k[: -len(PARAMS_SUFFIX)] for k in batch if k.endswith(PARAMS_SUFFIX)]
    if keys and augment is None:
        raise ValueError(f"batch views {keys} carry photometric parameters, but the datamodule applies none")
    for key in keys:
        batch[key] = augment(batch[key], batch.pop(key + PARAMS_SUFFIX))  # type: ignore[misc]
    return batch
