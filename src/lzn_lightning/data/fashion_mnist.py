"""Fashion-MNIST from its four IDX files: Debian's ``dataset-fashion-mnist``, a folder, or a download."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lzn_lightning.data.base import LZNDataModule
from lzn_lightning.data.errors import DatasetNotFoundError
from lzn_lightning.data.split import stratified_split
from lzn_lightning.data.tensor import TensorImageDataset
from lzn_lightning.data.transforms import two_view_transform

#: The four files of the original release (the names torchvision downloads, without ``.gz``).
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Where Debian's ``dataset-fashion-mnist`` package installs the gzipped files.
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Class names in label order (from the dataset's README).
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class FashionMNISTDataModule(LZNDataModule):
    """Fashion-MNIST: 60,000 training and 10,000 test photos of clothing, 1x28x28 grey, 10 classes.

    The data is read with torchvision's ``FashionMNIST`` from ``<root>/FashionMNIST/raw`` (its layout).
    When those files are missing, the first of these that has all four files (plain or ``.gz``) fills it:
    ``<root>`` itself, ``$LZN_FASHION_MNIST_DIR``, Debian's package (``apt install dataset-fashion-mnist``
    puts them in ``/usr/share/datasets/fashion-mnist``); failing those, torchvision downloads them when
    ``download`` is true and the machine is online. Pixels 0..255 become [-1, 1] per item (uint8 in memory).

    Args:
        root: Folder of the data (torchvision's ``FashionMNIST/raw`` layout is created in it).
        val_fraction: Fraction of the 60,000 training images held out for validation (stratified by class);
            0 validates on the test set (the recipes: no setting of theirs was chosen on it).
        pad_to_32: Pad the images with background (-1) to 1x32x32, for U-Nets with three 2x downsamplings.
        download: Let torchvision download the files when no local copy is found.
        batch_size: Global training batch size, summed over all devices.
        **kwargs: The other common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    name = "fashion-mnist"

    def __init__(
        self,
        root: str = "data/fashion-mnist",
        val_fraction: float = 0.0,
        pad_to_32: bool = False,
        download: bool = True,
        batch_size: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction
        self.pad_to_32 = pad_to_32
        self.download = download

    @property
    def image_shape(self) -> tuple[int, int, int]:
        side = 32 if self.pad_to_32 else 28
        return (1, side, side)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def raw_folder(self) -> Path:
        """``<root>/FashionMNIST/raw``, where torchvision's reader looks."""
        return self.root / "FashionMNIST" / "raw"

    def _sources(self) -> list[Path]:
        env = os.environ.get("LZN_FASHION_MNIST_DIR")
        return [self.root, *([Path(env)] if env else []), SYSTEM_DIR]

    def prepare_data(self) -> None:
        """Fill ``raw_folder`` from a local copy or a download (once per node, before setup)."""
        if all((self.raw_folder / name).is_file() for name in FILES):
            return
        for source in self._sources():
            found = {name: _find(source, name) for name in FILES}
            if all(found.values()):
                self.raw_folder.mkdir(parents=True, exist_ok=True)
                for name, path in found.items():
                    _copy_uncompressed(path, self.raw_folder / name)
                return
        if self.download:
            from torchvision.datasets import FashionMNIST

            try:
                FashionMNIST(str(self.root), download=True)
                return
            except Exception as err:  # torchvision raises URLError, RuntimeError, OSError...
                raise DatasetNotFoundError(
                    self._not_found(f"the download failed ({type(err).__name__})")
                ) from None
        raise DatasetNotFoundError(self._not_found("download is off"))

    def _not_found(self, why: str) -> str:
        looked = ", ".join(str(p) for p in self._sources())
        return (
            f"Fashion-MNIST not found in {looked} and {why}: `apt install dataset-fashion-mnist` "
            "(Debian/Ubuntu), or put the four *-ubyte.gz files of "
            f"https://github.com/zalandoresearch/fashion-mnist in {self.root}."
        )

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        """uint8 images [N, 1, S, S] (S = 32 when padded, else 28) and int64 labels [N] of one split."""
        from torchvision.datasets import FashionMNIST

        self.prepare_data()
        try:
            ds = FashionMNIST(str(self.root), train=train, download=False)
        except (RuntimeError, AssertionError, ValueError) as err:  # a truncated or foreign file
            raise DatasetNotFoundError(
                f"Fashion-MNIST files in {self.raw_folder} are unreadable ({type(err).__name__}: {err}); "
                "delete that folder to read them again from their source"
            ) from None
        images = ds.data.unsqueeze(1)  # [N, 28, 28] -> [N, 1, 28, 28], uint8
        if self.pad_to_32:
            images = F.pad(images, (2, 2, 2, 2), value=0)  # 0 = background (-1 after scaling)
        return images.contiguous(), ds.targets.to(torch.long)

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

    def view_transform(self) -> Callable[[Any], Any]:
        # Why flips (unlike the digits): a mirrored shirt or shoe is still one. Why crops of >= 30% area: as
        # MNIST, the object is centred on a blank background.
        return two_view_transform(self.image_shape[1], channels=1, scale=(0.3, 1.0), flip=True)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _copy_uncompressed(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``, gunzipping a ``.gz``.

    Written to a temporary file of this process's own, then renamed over ``target`` (atomic): several
    processes filling one root at once (two benchmarks, two nodes on a shared disk) each install a whole file,
    and none renames away another's half-written one.
    """
    import gzip
    import tempfile

    opener = gzip.open if source.suffix == ".gz" else open
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    try:
        with opener(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
