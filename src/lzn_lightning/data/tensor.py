"""In-memory image tensors as a dataset."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lzn_lightning.data.views import ViewDataset, as_labels


class TensorImageDataset(ViewDataset):
    """Images held in one tensor, e.g. digits, MNIST or CIFAR-10.

    Args:
        images: [N, C, H, W], either uint8 in [0, 255] (kept as uint8 to save memory: CIFAR-10 is 150 MB as
            uint8, 600 MB as float32; converted per item) or floating point already in [-1, 1].
        labels: [N] integer class labels, or ``None`` for unlabelled data.
        transform: Random augmentation (see :class:`ViewDataset`); ``None`` returns the stored image.
        two_views: Return two independent augmentations as ``image`` and ``image_view2``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        transform: Callable[[Any], Any] | None = None,
        two_views: bool = False,
    ) -> None:
        super().__init__(transform, two_views, labelled=labels is not None)
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
        self.images = images
        self.labels = as_labels(labels, len(images))

    def __len__(self) -> int:
        return len(self.images)

    def raw_image(self, index: int) -> Tensor:
        return self.images[index]

    def label(self, index: int) -> Tensor:
        assert self.labels is not None
        return self.labels[index]
