"""scikit-learn's 8x8 handwritten digits: 1797 images, bundled with scikit-learn (no download)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lzn_lightning.data.in_memory import InMemorySplitDataModule
from lzn_lightning.data.transforms import two_view_transform


class DigitsDataModule(InMemorySplitDataModule):
    """The UCI/scikit-learn digits (``sklearn.datasets.load_digits``): 1x8x8 images, 10 classes.

    Pixel values 0..16 are mapped to [-1, 1]. The default split is train/val/test = 1258/180/359 (10% val,
    20% test, stratified), fixed by ``seed``. Small enough to train LZN end to end on a laptop CPU.

    Args:
        val_fraction: Fraction of the 1797 images held out for validation (stratified by class).
        test_fraction: Fraction of the 1797 images held out for testing (stratified by class).
        batch_size: Global training batch size, summed over all devices.
        **kwargs: The other common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    name = "digits"

    def __init__(
        self, val_fraction: float = 0.1, test_fraction: float = 0.2, batch_size: int = 128, **kwargs: Any
    ) -> None:
        super().__init__(
            val_fraction=val_fraction, test_fraction=test_fraction, batch_size=batch_size, **kwargs
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, 8, 8)

    @property
    def num_classes(self) -> int:
        return 10

    def load_tensors(self) -> tuple[Tensor, Tensor]:
        """All 1797 digits: float32 images [1797, 1, 8, 8] in [-1, 1] and int64 labels [1797]."""
        from sklearn.datasets import load_digits

        raw = load_digits()
        images = torch.as_tensor(raw.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16 * 2 - 1
        return images, torch.as_tensor(raw.target, dtype=torch.long)

    def view_transform(self) -> Callable[[Any], Any]:
        # Why no flip: a mirrored 2 or 5 is another glyph. Why crops of >= 30% area: an 8% crop of an 8x8
        # image is a 2x2 patch, which no longer shows a digit.
        return two_view_transform(8, channels=1, scale=(0.3, 1.0), flip=False)
