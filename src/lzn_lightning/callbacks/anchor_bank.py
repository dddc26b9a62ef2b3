"""Register a fixed bank of training images for batch-independent classification (LZNInferenceMixin)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from lzn_lightning.callbacks.base import split_data


class AnchorBank(pl.Callback):
    """At the start of fit, store ``num`` random training images in the model as its anchor bank.

    The bank is saved in every checkpoint, so ``model.classify(images)`` and ``lzn classify`` compute each
    image's latent through the same fixed field (the bank's anchors plus the image itself) whatever the
    other images are (see :mod:`lzn_lightning.inference`). Images are stored, not anchors, so the bank follows
    the weights as they train. Every rank draws the same images (same seed).

    Args:
        num: Bank size; None uses the datamodule's global ``batch_size`` (the field size the zones were trained
            with), else 256.
        split: Data split to draw from.
        seed: Seed of the random draw.
        replace: Replace a bank the model already has (e.g. when resuming or fine-tuning).
    """

    def __init__(
        self, num: int | None = None, split: str = "train", seed: int = 0, replace: bool = False
    ) -> None:
        if num is not None and num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        self.num = num
        self.split = split
        self.seed = seed
        self.replace = replace

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not hasattr(pl_module, "set_anchor_bank"):
            raise TypeError("AnchorBank needs an LZN model with the inference API (LZNInferenceMixin)")
        if pl_module.anchor_bank is not None and not self.replace:
            return
        num = self.num or int(getattr(trainer.datamodule, "batch_size", 0) or 256)
        images, _ = split_data(trainer, pl_module, self.split, num, self.seed)
        pl_module.set_anchor_bank(images)
        size = len(getattr(trainer.datamodule, f"{self.split}_dataset", None) or images)
        which = f"all {size}" if len(images) >= size else f"{len(images)} random (seed {self.seed})"
        rank_zero_info(f"[AnchorBank] {which} {self.split} images form the bank")
