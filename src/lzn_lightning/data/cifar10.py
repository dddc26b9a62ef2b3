"""CIFAR-10 from torchvision's ``cifar-10-batches-py`` folder (never downloads)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

from lzn_lightning.data.base import LZNDataModule
from lzn_lightning.data.errors import DatasetNotFoundError
from lzn_lightning.data.split import stratified_split
from lzn_lightning.data.tensor import TensorImageDataset

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


class CIFAR10DataModule(LZNDataModule):
    """CIFAR-10: 50000 training and 10000 test images, 3x32x32, 10 classes.

    Reads ``<root>/cifar-10-batches-py`` (the layout torchvision's ``CIFAR10`` downloads). If only
    ``<root>/cifar-10-python.tar.gz`` is there it is extracted on first use. Images stay uint8 in memory and
    become [-1, 1] floats per item. Single-view training images are randomly flipped.

    Args:
        root: Folder that holds ``cifar-10-batches-py`` (or ``cifar-10-python.tar.gz``).
        val_fraction: Fraction of the training set held out for validation (stratified); 0 validates on
            the test set, the usual choice for generative models.
        batch_size: Global training batch size, summed over all devices.
        **kwargs: The other common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    name = "cifar10"

    def __init__(
        self, root: str = "data/cifar10", val_fraction: float = 0.0, batch_size: int = 128, **kwargs: Any
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    @property
    def num_classes(self) -> int:
        return 10

    def prepare_data(self) -> None:
        """Extract ``cifar-10-python.tar.gz`` if that is all there is (once per node, before setup)."""
        folder, archive = self.root / FOLDER, self.root / ARCHIVE
        if not folder.is_dir() and archive.is_file():
            from torchvision.datasets.utils import extract_archive

            extract_archive(str(archive), str(self.root))

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        """uint8 images [N, 3, 32, 32] and int64 labels [N] of the training (or test) set."""
        from torchvision.datasets import CIFAR10

        self.prepare_data()
        missing = [name for name in FILES if not (self.root / FOLDER / name).is_file()]
        if missing:
            raise DatasetNotFoundError(self._not_found(f"missing {', '.join(missing)}"))
        try:
            ds = CIFAR10(str(self.root), train=train, download=False)
        except RuntimeError as e:  # torchvision's md5 check failed
            raise DatasetNotFoundError(self._not_found(f"corrupted ({e})")) from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        return images, torch.as_tensor(ds.targets, dtype=torch.long)

    def _not_found(self, problem: str) -> str:
        return (
            f"CIFAR-10 not found: {self.root / FOLDER} is {problem}. Put {ARCHIVE} (from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html) in {self.root}, or on a machine with network run "
            f"torchvision.datasets.CIFAR10({str(self.root)!r}, download=True) and copy {self.root} here."
        )

    def build_datasets(self) -> tuple[TensorImageDataset, TensorImageDataset, TensorImageDataset]:
        train_x, train_y = self.load_split(train=True)
        test_x, test_y = self.load_split(train=False)
        train_views, eval_views = self.view_settings(train=True), self.view_settings(train=False)
        test = TensorImageDataset(test_x, test_y, *eval_views)
        if self.val_fraction == 0:
            return TensorImageDataset(train_x, train_y, *train_views), test, test
        train_idx, val_idx, _ = (
            torch.from_numpy(i) for i in stratified_split(train_y.numpy(), self.val_fraction, 0.0, self.seed)
        )
        return (
            TensorImageDataset(train_x[train_idx], train_y[train_idx], *train_views),
            TensorImageDataset(train_x[val_idx], train_y[val_idx], *eval_views),
            test,
        )

    def train_transform(self) -> Callable[[Any], Any]:
        return v2.RandomHorizontalFlip()
