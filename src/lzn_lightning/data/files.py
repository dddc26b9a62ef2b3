"""Images stored as files: listing, class folders, decoding."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from lzn_lightning.data.views import ViewDataset, as_labels

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def is_image(name: str) -> bool:
    """Whether a file name has an image extension (case-insensitive) and is not hidden."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: Path) -> list[Path]:
    """All image files under ``folder``, recursively, sorted (hidden files and folders skipped)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if is_image(f))
    return sorted(found)


def scan_top_level(folder: Path) -> tuple[list[str], bool]:
    """``(sorted sub-folder names, whether folder directly holds image files)``, hidden entries skipped."""
    subfolders, has_images = [], False
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                subfolders.append(entry.name)
            elif is_image(entry.name):
                has_images = True
    return sorted(subfolders), has_images


def list_class_images(folder: Path, classes: Sequence[str]) -> tuple[list[Path], list[int]]:
    """Image files of ``folder/<class>/...`` (recursive) and their class indices in ``classes``."""
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        found = list_images(folder / name) if (folder / name).is_dir() else []
        files.extend(found)
        labels.extend([k] * len(found))
    return files, labels


class LoadRGB:
    """Decode an image file to an RGB PIL image, optionally resized (shorter side) and centre-cropped.

    Args:
        size: Output side for resize + centre crop; ``None`` keeps the full resolution.
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = size

    def __call__(self, path: Path) -> Image.Image:
        with Image.open(path) as f:
            image = f.convert("RGB")  # also handles grayscale, palette and CMYK files
        if self.size is not None:
            image = F.center_crop(F.resize(image, self.size, antialias=True), [self.size, self.size])
        return image


class ImageFileDataset(ViewDataset):
    """A list of image files (with optional labels) as a dataset of batch dicts.

    Args:
        files: Image paths.
        labels: Class index of each file, or ``None`` for unlabelled data.
        load: Decodes a path to a PIL image or uint8 tensor (e.g. :class:`LoadRGB`).
        transform: Random augmentation, or deterministic evaluation transform (see :class:`ViewDataset`).
        two_views: Return two independent augmentations as ``image`` and ``image_view2``.
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int] | None,
        load: Callable[[Path], Any],
        transform: Callable[[Any], Any] | None = None,
        two_views: bool = False,
    ) -> None:
        super().__init__(transform, two_views, labelled=labels is not None)
        # Why strings: a Path is several Python objects, which adds up at 1.28M ImageNet files per worker.
        self.files = [str(f) for f in files]
        self.labels = as_labels(labels, len(self.files))
        self.load = load

    def __len__(self) -> int:
        return len(self.files)

    def raw_image(self, index: int) -> Any:
        return self.load(Path(self.files[index]))

    def label(self, index: int) -> Tensor:
        assert self.labels is not None
        return self.labels[index]

    def subset(
        self, indices: Sequence[int], transform: Callable[[Any], Any] | None, two_views: bool
    ) -> ImageFileDataset:
        """The files at ``indices``, with another transform (e.g. a held-out validation part)."""
        labels = (
            None if self.labels is None else self.labels[torch.as_tensor(indices, dtype=torch.long)].tolist()
        )
        return ImageFileDataset([self.files[i] for i in indices], labels, self.load, transform, two_views)
