"""Images stored as files: listing, class folders, decoding."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from lzn_lightning.checkpoints import first_line
from lzn_lightning.data.views import ViewDataset, as_labels

log = logging.getLogger(__name__)

# What decoding a broken file raises: truncated or corrupt data (OSError), not an image at all
# (PIL's UnidentifiedImageError, an OSError), bad headers (ValueError, SyntaxError), absurd sizes
# (DecompressionBombError).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and what to do.

    ``path`` and ``reason`` default to None: a DataLoader worker re-raises it from its message alone.
    """

    def __init__(self, message: str, path: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.path, self.reason = path, reason


def unreadable(path: Path | str, err: BaseException) -> UnreadableImageError:
    """The one-line error for a file that does not decode."""
    reason = first_line(err)
    return UnreadableImageError(
        f"cannot read image {path} ({reason}); replace or delete it, list every such file with "
        "`lzn check-data --config <recipe>`, or set data.init_args.skip_bad_files=true",
        str(path),
        reason,
    )


def check_image_file(path: str) -> str | None:
    """Decode ``path`` fully; None if it reads, else the reason (for ``lzn check-data``)."""
    try:
        with Image.open(path) as f:
            f.load()  # decodes every byte: a truncated JPEG opens fine and fails only here
    except DECODE_ERRORS as err:
        return first_line(err)
    return None


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
        try:
            with Image.open(path) as f:
                image = f.convert("RGB")  # also handles grayscale, palette and CMYK files
        except DECODE_ERRORS as err:
            raise unreadable(path, err) from None
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
        skip_bad_files: Serve the next readable file in place of one that does not decode (a warning names it,
            once per loader process) instead of ending the run with an error naming it. The replacement
            depends on the index alone, so an interrupted run resumes exactly.
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int] | None,
        load: Callable[[Path], Any],
        transform: Callable[[Any], Any] | None = None,
        two_views: bool = False,
        skip_bad_files: bool = False,
    ) -> None:
        super().__init__(transform, two_views, labelled=labels is not None)
        self.skip_bad_files = skip_bad_files
        self._replaced: dict[int, int] = {}  # index of an unreadable file -> index served in its place
        # Why strings: a Path is several Python objects, which adds up at 1.28M ImageNet files per worker.
        self.files = [str(f) for f in files]
        self.labels = as_labels(labels, len(self.files))
        self.load = load

    def __len__(self) -> int:
        return len(self.files)

    def raw_image(self, index: int) -> Any:
        try:
            return self.load(Path(self.files[index]))
        except UnreadableImageError as err:
            if not self.skip_bad_files:
                raise
            first = err
        for step in range(1, len(self.files)):  # the next readable file, wrapping around
            other = (index + step) % len(self.files)
            try:
                image = self.load(Path(self.files[other]))
            except UnreadableImageError:
                continue
            if index not in self._replaced:
                log.warning("skip_bad_files: cannot read image %s (%s); serving %s in its place", first.path,
                            first.reason, self.files[other])  # fmt: skip
            self._replaced[index] = other
            return image
        raise UnreadableImageError(f"no file of this dataset decodes (the first: {first})")

    def label(self, index: int) -> Tensor:
        assert self.labels is not None
        return self.labels[self._replaced.get(index, index)]  # the label of the image actually served

    def subset(
        self, indices: Sequence[int], transform: Callable[[Any], Any] | None, two_views: bool
    ) -> ImageFileDataset:
        """The files at ``indices``, with another transform (e.g. a held-out validation part)."""
        labels = (
            None if self.labels is None else self.labels[torch.as_tensor(indices, dtype=torch.long)].tolist()
        )
        files = [self.files[i] for i in indices]
        return ImageFileDataset(files, labels, self.load, transform, two_views, self.skip_bad_files)
