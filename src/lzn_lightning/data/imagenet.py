"""ImageNet-1k (ILSVRC 2012) in the usual root/{train,val}/<wnid>/*.JPEG layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchvision.transforms import v2

from lzn_lightning.data.base import LZNDataModule
from lzn_lightning.data.errors import DatasetNotFoundError
from lzn_lightning.data.files import ImageFileDataset, LoadRGB, list_class_images, scan_top_level
from lzn_lightning.data.photometric import PhotometricAugment, PhotometricViews
from lzn_lightning.data.transforms import blur_kernel_size

VALPREP_URL = "https://raw.githubusercontent.com/soumith/imagenetloader.torch/master/valprep.sh"


class ImageNetDataModule(PhotometricViews, LZNDataModule):
    """ImageNet-1k: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``, labels = sorted wnids.

    Defaults are set for representation learning: two SimCLR views of ``size`` x ``size`` cropped from the
    full-resolution image (RandomResizedCrop, flip, colour jitter, grayscale, blur). Single-view training
    uses RandomResizedCrop + flip; clean evaluation uses the standard Resize(size * 256/224) + CenterCrop.
    The validation set doubles as the test set (the official test labels are not public).

    Args:
        root: Folder with ``train/`` and ``val/``, each holding one sub-folder per class (wnid).
        size: Side of the square crops fed to the model.
        two_views: Training batches carry two augmented views (``image``, ``image_view2``).
        batch_size: Global training batch size, summed over all devices.
        skip_bad_files: Serve the next readable image in place of a file that does not decode (a warning
            names it) instead of ending the run with one error line naming it. ``lzn check-data`` lists them
            all.
        photometric_on_device: Two-view training: loader workers decode, crop and flip, and the colour
            jitter, grayscale and blur run on the device over the whole batch, each view with its own
            parameters (drawn in the worker, so resume stays exact); about 5x the images/s per worker core
            (benchmarks/input_pipeline.py). ``False``: the whole view in the workers (torchvision).
        **kwargs: The other common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    name = "imagenet"

    def __init__(
        self,
        root: str = "data/imagenet",
        size: int = 224,
        two_views: bool = True,
        batch_size: int = 256,
        skip_bad_files: bool = False,
        photometric_on_device: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, two_views=two_views, **kwargs)
        self.skip_bad_files = skip_bad_files
        # Why blur_p=1: the paper's ImageNet views are always blurred (kernel 23, sigma in [0.1, 2]), unlike
        # SimCLR's p=0.5.
        self.photometric = PhotometricAugment(blur_kernel=blur_kernel_size(size), blur_p=1.0)
        self.photometric_on_device = photometric_on_device
        self.root = Path(root).expanduser()
        self.size = size
        self._classes: list[str] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    @property
    def classes(self) -> list[str]:
        """The wnids (sub-folders of ``root/train``), sorted. Scans ``root/train`` once."""
        if self._classes is None:
            self._classes = self._class_folders("train")
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _not_found(self, problem: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"ImageNet not found: {problem}. Expected {self.root}/train/<wnid>/*.JPEG and "
            f"{self.root}/val/<wnid>/*.JPEG. Get ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar "
            "from https://image-net.org, untar train/ (then each per-class tar into its wnid folder) and "
            "val/, and sort the flat val/ into class folders with the valprep script (run valprep.sh "
            f"inside val/; from {VALPREP_URL})."
        )

    def _class_folders(self, split: str) -> list[str]:
        folder = self.root / split
        if not folder.is_dir():
            raise self._not_found(f"{folder} does not exist")
        subfolders, has_images = scan_top_level(folder)
        if has_images or not subfolders:
            raise self._not_found(f"{folder} has no class sub-folders (flat images: run valprep)")
        return subfolders

    def _split(self, split: str, transform: Callable[[Any], Any] | None, two_views: bool) -> ImageFileDataset:
        files, labels = list_class_images(self.root / split, self.classes)
        if not files:
            raise self._not_found(f"{self.root / split} contains no image files")
        return ImageFileDataset(files, labels, LoadRGB(None), transform, two_views, self.skip_bad_files)

    def build_datasets(self) -> tuple[ImageFileDataset, ImageFileDataset, ImageFileDataset]:
        unknown = sorted(set(self._class_folders("val")) - set(self.classes))
        if unknown:
            raise self._not_found(f"{self.root / 'val'} has class folders not in train/: {unknown[:5]}")
        train = self._split("train", *self.view_settings(train=True))
        val = self._split("val", *self.view_settings(train=False))
        return train, val, val

    def train_transform(self) -> Callable[[Any], Any]:
        return v2.Compose([v2.RandomResizedCrop(self.size, antialias=True), v2.RandomHorizontalFlip()])

    def eval_transform(self) -> Callable[[Any], Any]:
        # Why 256/224: the standard ImageNet evaluation crop keeps the central 87.5% of the resized image.
        return v2.Compose([v2.Resize(round(self.size * 256 / 224), antialias=True), v2.CenterCrop(self.size)])
