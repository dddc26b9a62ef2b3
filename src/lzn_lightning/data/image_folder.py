"""A folder of images (AFHQ-Cat, CelebA-HQ, LSUN bedroom, ...), with class sub-folders as labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchvision.transforms import v2

from lzn_lightning.data.base import LZNDataModule
from lzn_lightning.data.errors import DatasetNotFoundError
from lzn_lightning.data.files import (
    IMAGE_EXTENSIONS,
    ImageFileDataset,
    LoadRGB,
    list_class_images,
    list_images,
    scan_top_level,
)
from lzn_lightning.data.photometric import PhotometricAugment, PhotometricViews
from lzn_lightning.data.split import stratified_split
from lzn_lightning.data.transforms import blur_kernel_size

HOW_TO_GET = (
    "Put the images there (any of {exts}), in sub-folders or not; e.g. AFHQ: "
    "https://github.com/clovaai/stargan-v2 (bash download.sh afhq-dataset, then root=afhq/train/cat), "
    "CelebA-HQ: https://github.com/tkarras/progressive_growing_of_gans, LSUN bedroom: "
    "https://github.com/fyu/lsun (export the LMDB to image files)."
)


class ImageFolderDataModule(PhotometricViews, LZNDataModule):
    """Every image under ``root`` (recursively), resized and centre-cropped to ``size`` x ``size`` RGB.

    Layout: if ``root`` holds no image files itself but two or more sub-folders, each sub-folder is a class
    (labels 0..K-1 in sorted name order, as torchvision's ``ImageFolder``); otherwise the data is unlabelled.
    ``use_labels`` forces either reading. Single-view training images are randomly flipped.

    Args:
        root: Folder of training images.
        size: Output side: images are resized (shorter side) and centre-cropped to ``size`` x ``size``.
        val_root: Optional folder of validation images, with the same layout (class folders by name).
        val_fraction: Without ``val_root``: fraction of ``root`` held out for validation (stratified when
            labelled); 0 gives an empty validation set.
        use_labels: ``None`` detects class sub-folders; ``True`` requires them; ``False`` ignores them (all
            images, unlabelled).
        batch_size: Global training batch size, summed over all devices.
        skip_bad_files: Serve the next readable image in place of a file that does not decode (a warning
            names it) instead of ending the run with one error line naming it. ``lzn check-data`` lists them
            all.
        photometric_on_device: With ``two_views``: loader workers crop and flip, and the colour jitter,
            grayscale and blur (SimCLR's, blur with p=0.5) run on the device over the whole batch, each view
            with its own parameters drawn in the worker. ``False``: the whole view in the workers.
        **kwargs: The other common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    name = "image_folder"

    def __init__(
        self,
        root: str = "data/images",
        size: int = 256,
        val_root: str | None = None,
        val_fraction: float = 0.0,
        use_labels: bool | None = None,
        batch_size: int = 64,
        skip_bad_files: bool = False,
        photometric_on_device: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.skip_bad_files = skip_bad_files
        # Why blur_p=0.5: SimCLR's views, which this datamodule's two views have always followed.
        self.photometric = PhotometricAugment(blur_kernel=blur_kernel_size(size), blur_p=0.5)
        self.photometric_on_device = photometric_on_device
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if val_root is not None and val_fraction > 0:
            raise ValueError("give val_root or val_fraction, not both")
        self.root = Path(root).expanduser()
        self.size = size
        self.val_root = None if val_root is None else Path(val_root).expanduser()
        self.val_fraction = val_fraction
        self.use_labels = use_labels
        self._classes: list[str] | bool | None = False  # False: not scanned yet

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    @property
    def classes(self) -> list[str] | None:
        """Class names (sub-folders of ``root``), or ``None`` when unlabelled. Scans ``root`` once."""
        if self._classes is False:
            self._classes = self._find_classes()
        return self._classes  # type: ignore[return-value]

    @property
    def num_classes(self) -> int | None:
        classes = self.classes
        return None if classes is None else len(classes)

    def _find_classes(self) -> list[str] | None:
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"image folder {self.root} does not exist. {self._how_to_get()}")
        if self.use_labels is False:
            return None
        subfolders, has_images = scan_top_level(self.root)
        if not has_images and len(subfolders) >= 2:
            return subfolders
        if self.use_labels:
            raise ValueError(
                f"use_labels=True, but {self.root} does not have the class layout root/<class>/<images> "
                f"(found {len(subfolders)} sub-folders, {'some' if has_images else 'no'} top-level images)"
            )
        return None

    def _how_to_get(self) -> str:
        return HOW_TO_GET.format(exts="/".join(IMAGE_EXTENSIONS))

    def _list(self, folder: Path) -> tuple[list[Path], list[int] | None]:
        if not folder.is_dir():
            raise DatasetNotFoundError(f"image folder {folder} does not exist. {self._how_to_get()}")
        classes = self.classes
        if classes is None:
            files, labels = list_images(folder), None
        else:
            unknown = sorted(set(scan_top_level(folder)[0]) - set(classes))
            if unknown:
                raise ValueError(f"{folder} has class folders {unknown} that {self.root} does not have")
            files, labels = list_class_images(folder, classes)
        if not files:
            raise DatasetNotFoundError(f"image folder {folder} contains no image files. {self._how_to_get()}")
        return files, labels

    def build_datasets(self) -> tuple[ImageFileDataset, ImageFileDataset, ImageFileDataset]:
        load = LoadRGB(self.size)
        train_views, eval_views = self.view_settings(train=True), self.view_settings(train=False)
        files, labels = self._list(self.root)
        everything = ImageFileDataset(files, labels, load, skip_bad_files=self.skip_bad_files)
        if self.val_root is not None:
            train = everything.subset(range(len(files)), *train_views)
            val = ImageFileDataset(*self._list(self.val_root), load, *eval_views, self.skip_bad_files)
        else:
            train_idx, val_idx, _ = stratified_split(labels, self.val_fraction, 0.0, self.seed, len(files))
            train = everything.subset(train_idx.tolist(), *train_views)
            val = everything.subset(val_idx.tolist(), *eval_views)
        # Why test = val: these datasets have no separate test split (FID uses the training images).
        return train, val, val

    def train_transform(self) -> Callable[[Any], Any]:
        return v2.RandomHorizontalFlip()
