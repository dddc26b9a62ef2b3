"""Users' files of the inference commands, read and written for the built-in modalities.

Images: a ``.npy`` of floats [N, C, H, W] in [-1, 1] (the datamodule's layout; [N, H, W] for one channel) or
a folder of image files; PNG/JPG grids, ``.npz`` and ``.npy`` out. Text: one text per line of a UTF-8 file;
``.txt`` or CSV out. :class:`~lzn_lightning.Modality` subclasses call these from their ``read_inputs`` and
``write_outputs``; every mistake is an :class:`InputError` with a one-line message.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Why: pixel values written by float32 code can overshoot [-1, 1] by rounding; anything beyond is a scaling
# bug.
_RANGE_TOLERANCE = 1e-3


class InputError(ValueError):
    """A user mistake that the CLI reports in one line."""


def load_images(path: str | Path, channels: int, size: int) -> tuple[Tensor, list[str] | None]:
    """Images [N, C, H, W] in [-1, 1] from a .npy or a folder, plus the file names for a folder.

    Raises:
        InputError: Missing input, wrong shape or range, no image files.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        return _load_folder(path, channels, size)
    if path.suffix.lower() != ".npy":
        raise InputError(f"input {path} must be a .npy file or a folder of images")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise InputError(f"cannot read {path} as .npy ({err})") from None
    if array.ndim == 3 and channels == 1:
        array = array[:, None]  # [N, H, W] -> [N, 1, H, W]
    expected = f"[N, {channels}, {size}, {size}]"
    if array.ndim != 4 or array.shape[1:] != (channels, size, size):
        hint = (
            " (channels last? use array.transpose(0, 3, 1, 2))"
            if array.ndim == 4 and array.shape[-1] == channels
            else ""
        )
        raise InputError(
            f"{path} holds an array of shape {list(array.shape)}; this model takes images {expected}{hint}"
        )
    if not np.issubdtype(array.dtype, np.number) or array.size == 0:
        raise InputError(
            f"{path} must hold a non-empty numeric array, got dtype {array.dtype}, size {array.size}"
        )
    lo, hi = float(array.min()), float(array.max())
    if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE or not math.isfinite(lo + hi):
        raise InputError(
            f"{path} has values in [{lo:.3g}, {hi:.3g}]; images must be in [-1, 1] (uint8: x / 127.5 - 1)"
        )
    return torch.from_numpy(array.astype(np.float32)).clamp(-1, 1), None


def _load_folder(folder: Path, channels: int, size: int) -> tuple[Tensor, list[str]]:
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from lzn_lightning.data.files import list_images

    files = list_images(folder)
    if not files:
        raise InputError(f"no image files under {folder}")
    if channels not in (1, 3):
        raise InputError(f"folder input needs a 1- or 3-channel model, this one has {channels} channels")
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                x = F.pil_to_tensor(im)  # [C, h, w] uint8
        except Exception as err:
            raise InputError(f"cannot read image {f} ({err})") from None
        if tuple(x.shape[1:]) != (size, size):
            x = F.center_crop(F.resize(x, size, antialias=True), [size, size])  # shorter side, then centre
        images.append(x.float() / 127.5 - 1.0)
    return torch.stack(images), [str(f.relative_to(folder)) for f in files]


def write_images(
    images: Tensor, path: str | Path, columns: Mapping[str, Any] | None = None, nrow: int | None = None
) -> None:
    """Images [N, C, H, W] in [-1, 1] as a PNG/JPG grid (``nrow`` per row, default sqrt(N)), a ``.npz``
    (``images`` plus one array per column, named in the plural: ``labels``) or a ``.npy``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg"):
        from torchvision.utils import save_image

        save_image(
            (images + 1) / 2, path, nrow=nrow or math.ceil(math.sqrt(len(images))), padding=1, pad_value=1.0
        )
    elif suffix == ".npz":
        np.savez(path, images=images.numpy(), **npz_columns(columns or {}))
    else:
        np.save(path, images.numpy())


def npz_columns(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per-item columns as ``.npz`` arrays, named in the plural (``file`` -> ``files``), as arrays of items
    usually are."""
    return {f"{name}s": np.asarray(values) for name, values in columns.items()}


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, without the trailing empty ones.

    Raises:
        InputError: Missing file, not UTF-8, no text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason})") from None
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline is not a text
    if not lines:
        raise InputError(f"{path} holds no text")
    return lines


def write_texts(
    texts: Sequence[str], path: str | Path, name: str, columns: Mapping[str, Sequence[Any]]
) -> None:
    """One text per line (.txt), or a CSV: index, the other ``columns``, then the texts under ``name``."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    else:
        write_csv(path, name, texts, columns)


def write_csv(
    path: str | Path, name: str, values: Sequence[Any], columns: Mapping[str, Sequence[Any]]
) -> None:
    """A CSV of one row per item: its index, the other per-item ``columns``, then ``values`` under
    ``name``."""
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *columns, name])
        w.writerows([i, *(col[i] for col in columns.values()), v] for i, v in enumerate(values))
