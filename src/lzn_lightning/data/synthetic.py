"""Deterministic class-structured random images: fast, offline data for tests and smoke runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from lzn_lightning.data.base import LZNDataModule
from lzn_lightning.data.captions import CaptionedDataset
from lzn_lightning.data.tensor import TensorImageDataset
from lzn_lightning.data.transforms import two_view_transform
from lzn_lightning.text_tokens import DEFAULT_ALPHABET, CharTokenizer

# Why 10: unlabelled synthetic data still needs structure worth learning, so it keeps hidden clusters.
HIDDEN_CLUSTERS = 10


class SyntheticDataModule(LZNDataModule):
    """Random images around one smooth prototype per class, fixed by ``seed``.

    Each class has a smooth random prototype in [-1, 1] (a low-resolution pattern upsampled); a sample is its
    class prototype plus Gaussian pixel noise, clipped to [-1, 1]. Classes are balanced and clearly
    separated (nearest class mean classifies > 95%), so a model that learns anything shows it quickly.

    Args:
        num_samples: Training images.
        num_test_samples: Test images.
        num_val_samples: Validation images; ``None`` means ``num_test_samples``.
        image_shape: (C, H, W) of the images.
        num_classes: Number of classes; ``None`` makes the data unlabelled (batches have no ``label``, the
            images still form 10 hidden clusters).
        noise_std: Standard deviation of the per-pixel noise around the prototypes.
        text_max_len: If set, batches also carry ``text``: the caption ``"pattern <k>"`` of each image's class
            (or hidden cluster), tokenised to this length with ``text_alphabet`` (smoke runs of text recipes).
        text_alphabet: Alphabet of the captions' tokenizer (must equal the text modality's).
        batch_size: Global training batch size, summed over all devices.
        **kwargs: The other common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    name = "synthetic"

    def __init__(
        self,
        num_samples: int = 256,
        num_test_samples: int = 64,
        num_val_samples: int | None = None,
        image_shape: tuple[int, int, int] = (1, 8, 8),
        num_classes: int | None = 10,
        noise_std: float = 0.3,
        batch_size: int = 16,
        text_max_len: int | None = None,
        text_alphabet: str = DEFAULT_ALPHABET,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        self.num_samples = num_samples
        self.num_test_samples = num_test_samples
        self.num_val_samples = num_test_samples if num_val_samples is None else num_val_samples
        self._image_shape = (int(image_shape[0]), int(image_shape[1]), int(image_shape[2]))
        self._num_classes = num_classes
        self.noise_std = noise_std
        self.text_max_len = text_max_len
        self.text_alphabet = text_alphabet if text_max_len is not None else None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    def prototypes(self, generator: torch.Generator) -> Tensor:
        """[K, C, H, W] smooth class prototypes in [-1, 1]."""
        c, h, w = self._image_shape
        k = self._num_classes or HIDDEN_CLUSTERS
        # Why half resolution: 2x2-pixel structure is smooth enough to survive crops and blur, yet gives
        # enough free values (16 per channel at 8x8) that the classes are far apart.
        low = torch.randn(k, c, max(h // 2, 1), max(w // 2, 1), generator=generator)
        smooth = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        return torch.tanh(1.5 * smooth)

    def sample(self, n: int, prototypes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` images [n, C, H, W] and their class indices [n] (balanced, shuffled)."""
        k = len(prototypes)
        labels = (torch.arange(n) % k)[torch.randperm(n, generator=generator)]
        noise = self.noise_std * torch.randn(n, *self._image_shape, generator=generator)
        return (prototypes[labels] + noise).clamp_(-1.0, 1.0), labels

    def build_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        generator = torch.Generator().manual_seed(self.seed)
        prototypes = self.prototypes(generator)
        splits: list[Dataset] = []
        for n, train in (
            (self.num_samples, True),
            (self.num_val_samples, False),
            (self.num_test_samples, False),
        ):
            images, labels = self.sample(n, prototypes, generator)
            transform, two_views = self.view_settings(train)
            kept = labels if self._num_classes else None
            split: Dataset = TensorImageDataset(images, kept, transform, two_views)
            if self.text_max_len is not None:
                captions = [f"pattern {k}" for k in labels.tolist()]
                tokenizer = CharTokenizer(self.text_alphabet or DEFAULT_ALPHABET, self.text_max_len)
                tokens = tokenizer.encode(captions)
                split = CaptionedDataset(split, tokens, captions)
            splits.append(split)
        return splits[0], splits[1], splits[2]

    def view_transform(self) -> Callable[[Any], Any]:
        c, h, w = self._image_shape
        # Why crops of >= 30% area: the default 8% of an 8x8 image is a 2x2 patch with no class structure.
        return two_view_transform((h, w), channels=c, scale=(0.3, 1.0))
