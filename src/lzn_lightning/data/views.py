"""The dataset base class that turns stored images into batch dicts, with one or two augmented views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lzn_lightning.data.photometric import PARAMS_SUFFIX, DeviceView
from lzn_lightning.data.transforms import to_signed


class ViewDataset(Dataset):
    """Base dataset: sample ``i`` -> ``{"image", ["image_view2"], ["label"]}``, images float32 in [-1, 1].

    Subclasses implement ``__len__``, :meth:`raw_image` and (if labelled) :meth:`label`.

    Args:
        transform: Applied to the raw image. With ``two_views`` it is the random augmentation drawn twice;
            otherwise ``None`` means the raw image as it is. A transform that returns a
            :class:`~lzn_lightning.data.photometric.DeviceView` (the worker half of a view) gives the view as
            uint8 plus its photometric parameters under ``<key>.photometric``, for the datamodule to finish on
            the device.
        two_views: Return two independent draws of ``transform`` as ``image`` and ``image_view2``.
        labelled: Whether items carry a ``label``.
    """

    def __init__(self, transform: Callable[[Any], Any] | None, two_views: bool, labelled: bool) -> None:
        if two_views and transform is None:
            raise ValueError("two_views=True needs a transform (the random augmentation drawn for each view)")
        self.transform = transform
        self.two_views = two_views
        self.labelled = labelled

    def raw_image(self, index: int) -> Any:
        """The stored image: a PIL image, a uint8 tensor, or a float tensor in [-1, 1]."""
        raise NotImplementedError

    def label(self, index: int) -> Tensor:
        """The int64 label of sample ``index`` (only called when ``labelled``)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        x = self.raw_image(index)
        if self.two_views:
            item = self._view("image", x) | self._view("image_view2", x)
        else:
            item = self._view("image", x) if self.transform is not None else {"image": to_signed(x)}
        if self.labelled:
            item["label"] = self.label(index)
        return item

    def _view(self, key: str, x: Any) -> dict[str, Tensor]:
        assert self.transform is not None
        view = self.transform(x)
        if isinstance(view, DeviceView):  # finished on the device (LZNDataModule.on_after_batch_transfer)
            return {key: view.image, key + PARAMS_SUFFIX: view.params}
        return {key: to_signed(view)}

    def __repr__(self) -> str:
        views = "two views" if self.two_views else ("augmented" if self.transform is not None else "clean")
        labels = "labelled" if self.labelled else "unlabelled"
        return f"{type(self).__name__}({len(self)} images, {labels}, {views})"  # type: ignore[arg-type]


def as_labels(labels: Any, n: int) -> Tensor | None:
    """Labels as an int64 tensor [n] (or ``None``), checking the length."""
    if labels is None:
        return None
    out = torch.as_tensor(labels, dtype=torch.long)
    if out.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the images, got {tuple(out.shape)}")
    return out
