"""Base of small labelled datasets that fit in memory and are split train/val/test by the datamodule."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lzn_lightning.data.base import LZNDataModule
from lzn_lightning.data.split import stratified_split
from lzn_lightning.data.tensor import TensorImageDataset


class InMemorySplitDataModule(LZNDataModule):
    """A labelled dataset loaded whole by :meth:`load_tensors`, then split by :func:`stratified_split`.

    Args:
        val_fraction: Fraction of the samples held out for validation (stratified by class).
        test_fraction: Fraction of the samples held out for testing (stratified by class).
        **kwargs: The common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    def __init__(self, val_fraction: float = 0.1, test_fraction: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ok = 0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0
        if not ok:
            raise ValueError(
                f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1), sum < 1"
            )
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        #: ``(train, val, test)`` index arrays into :meth:`load_tensors`, after :meth:`setup`.
        self.split_indices: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def load_tensors(self) -> tuple[Tensor, Tensor]:
        """The whole dataset: images [N, C, H, W] (uint8, or float in [-1, 1]) and int64 labels [N]."""
        raise NotImplementedError

    def build_datasets(self) -> tuple[TensorImageDataset, TensorImageDataset, TensorImageDataset]:
        return self.datasets_from(*self.load_tensors())

    def datasets_from(
        self, images: Tensor, labels: Tensor
    ) -> tuple[TensorImageDataset, TensorImageDataset, TensorImageDataset]:
        """The ``(train, val, test)`` datasets of the whole loaded data, split by :func:`stratified_split`."""
        self.split_indices = stratified_split(
            labels.numpy(), self.val_fraction, self.test_fraction, self.seed
        )
        train_idx, val_idx, test_idx = (torch.from_numpy(i) for i in self.split_indices)
        train_views, eval_views = self.view_settings(train=True), self.view_settings(train=False)
        return (
            TensorImageDataset(images[train_idx], labels[train_idx], *train_views),
            TensorImageDataset(images[val_idx], labels[val_idx], *eval_views),
            TensorImageDataset(images[test_idx], labels[test_idx], *eval_views),
        )
