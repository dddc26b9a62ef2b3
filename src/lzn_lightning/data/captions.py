"""Templated captions for digit images: the class plus attributes measured from each image itself.

The captions are generated, not written by people: ``"a bold narrow seven, slanted right"`` or
``"digit 7: bold, narrow, slanted right"``. Each attribute is measured on the image, so a caption says more
than its class and an image <-> text model has to look at the image:

* stroke: mean ink, compared with the other images of the same class (``thin`` / no word / ``bold``);
* width: columns with ink, compared within the class (``narrow`` / no word / ``wide``);
* slant: the ink's shear, x against y (``slanted left`` / ``upright`` / ``slanted right``), compared over
  all images.

"Compared" means the lower and upper thirds of the distribution, so each word covers about a third of the
images it applies to.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lzn_lightning.data.digits import DigitsDataModule
from lzn_lightning.data.mnist5k import MNIST5kDataModule
from lzn_lightning.text_tokens import DEFAULT_ALPHABET, CharTokenizer

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Why 0.25 on the [0, 1] ink scale: sklearn digits (0..16) and MNIST (0..255) both have faint anti-aliased
# pixels below it that do not belong to the stroke.
INK_THRESHOLD = 0.25


def measure_attributes(images: Tensor) -> dict[str, Tensor]:
    """Per-image ``ink`` (mean intensity), ``width`` (inked columns), ``slant`` of [N, 1, H, W] in [-1, 1].

    ``slant`` is the least-squares shear of the ink, cov(x, y) / var(y) with y growing upwards, so positive
    means the top leans right.
    """
    ink = (images[:, 0].float() + 1) / 2  # [N, H, W] in [0, 1]
    n, h, w = ink.shape
    ys = torch.arange(h, dtype=torch.float32).flip(0).view(1, h, 1)  # row index, up = larger
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    mass = ink.sum((1, 2)).clamp_min(1e-6)  # [N]
    mx = (ink * xs).sum((1, 2)) / mass
    my = (ink * ys).sum((1, 2)) / mass
    cov = (ink * (xs - mx.view(n, 1, 1)) * (ys - my.view(n, 1, 1))).sum((1, 2)) / mass
    var_y = (ink * (ys - my.view(n, 1, 1)).square()).sum((1, 2)) / mass
    columns = (ink > INK_THRESHOLD).any(dim=1).sum(1).float()  # [N]
    return {"ink": ink.mean((1, 2)), "width": columns, "slant": cov / var_y.clamp_min(1e-6)}


def _thirds(values: Tensor, groups: Tensor | None = None) -> Tensor:
    """-1 / 0 / +1 for the lower third, middle, upper third of ``values`` (within each group if given)."""
    out = torch.zeros(len(values), dtype=torch.long)
    for g in groups.unique().tolist() if groups is not None else [None]:
        idx = torch.arange(len(values)) if g is None else (groups == g).nonzero().squeeze(1)
        lo, hi = torch.quantile(values[idx], torch.tensor([1 / 3, 2 / 3]))
        out[idx] = (values[idx] > hi).long() - (values[idx] < lo).long()
    return out


def caption_digits(images: Tensor, labels: Tensor) -> list[str]:
    """One templated caption per image (the template alternates with the index)."""
    attrs = measure_attributes(images)
    stroke = _thirds(attrs["ink"], labels)
    width = _thirds(attrs["width"] + 1e-3 * attrs["ink"], labels)  # why the tiny ink term: breaks width ties
    slant = _thirds(attrs["slant"])
    captions = []
    for i, k in enumerate(labels.tolist()):
        words = [w for w in (("thin", "", "bold")[stroke[i] + 1], ("narrow", "", "wide")[width[i] + 1]) if w]
        lean = ("slanted left", "upright", "slanted right")[slant[i] + 1]
        if i % 2 == 0:
            captions.append(" ".join(["a", *words, DIGIT_WORDS[k]]) + f", {lean}")
        else:
            captions.append(f"digit {k}: " + ", ".join([*words, lean]))
    return captions


class CaptionedDataset(Dataset):
    """Adds a ``text`` field (token ids [max_len]) to each item of an image dataset."""

    def __init__(self, images: Dataset, tokens: Tensor, captions: list[str]) -> None:
        if len(images) != len(tokens):  # type: ignore[arg-type]
            raise ValueError(f"{len(tokens)} captions for {len(images)} images")  # type: ignore[arg-type]
        self.images, self.tokens, self.captions = images, tokens, captions

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {**self.images[index], "text": self.tokens[index]}


class _Captioned:
    """Mixin for in-memory digit datamodules: every split also carries templated captions as ``text``.

    Args:
        text_alphabet: Characters of the text modality (must equal its ``alphabet``).
        text_max_len: Tokens per caption (must equal the text modality's ``max_len``).
        **kwargs: The arguments of the image datamodule it is mixed into.
    """

    def __init__(self, text_alphabet: str = DEFAULT_ALPHABET, text_max_len: int = 48, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_alphabet, self.text_max_len = text_alphabet, text_max_len

    def datasets_from(self, images: Tensor, labels: Tensor) -> tuple[Dataset, Dataset, Dataset]:
        captions = caption_digits(images, labels)  # over the whole data: the thirds are dataset-wide
        tokens = CharTokenizer(self.text_alphabet, self.text_max_len).encode(captions)  # [N, max_len]
        splits = super().datasets_from(images, labels)  # type: ignore[misc]
        assert self.split_indices is not None  # type: ignore[attr-defined]
        return tuple(  # type: ignore[return-value]
            CaptionedDataset(ds, tokens[torch.from_numpy(idx)], [captions[i] for i in idx])
            for ds, idx in zip(splits, self.split_indices, strict=True)  # type: ignore[attr-defined]
        )


class CaptionedDigitsDataModule(_Captioned, DigitsDataModule):
    """scikit-learn digits with templated captions: batches ``{image, label, text}``.

    Args:
        text_alphabet: Characters of the text modality (must equal its ``alphabet``).
        text_max_len: Tokens per caption (must equal the text modality's ``max_len``).
        **kwargs: The arguments of :class:`~lzn_lightning.data.DigitsDataModule`.
    """

    name = "digits+captions"


class CaptionedMNIST5kDataModule(_Captioned, MNIST5kDataModule):
    """MNIST-5k with templated captions: batches ``{image, label, text}``.

    Args:
        text_alphabet: Characters of the text modality (must equal its ``alphabet``).
        text_max_len: Tokens per caption (must equal the text modality's ``max_len``).
        **kwargs: The arguments of :class:`~lzn_lightning.data.MNIST5kDataModule`.
    """

    name = "mnist5k+captions"
