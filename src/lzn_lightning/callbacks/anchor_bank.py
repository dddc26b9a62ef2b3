"""Register a fixed bank of training items for batch-independent latents (see lzn_lightning.inference)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from lzn_lightning.callbacks.base import split_data


class AnchorBank(pl.Callback):
    """At the start of fit, store ``num`` random training items in the model as its anchor banks.

    One bank per instance modality with an encoder that the data holds (images; texts of a captioned dataset;
    the same items for each). The banks are saved in every checkpoint, so ``model.classify(images)``,
    ``model.classify(texts, field="text")`` and ``lzn classify`` compute each item's latent through the same
    fixed field (the bank's anchors plus the item itself) whatever the other items are (see
    :mod:`lzn_lightning.inference`). Items are stored, not anchors, so a bank follows the weights as they
    train. Every rank draws the same items (same seed).

    Args:
        num: Bank size; None uses the datamodule's global ``batch_size`` (the field size the zones were
            trained with), else 256.
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
            raise TypeError("AnchorBank needs an LZN model (LZNLightningModule) with its inference API")
        num = self.num or int(getattr(trainer.datamodule, "batch_size", 0) or 256)
        for field in bank_fields(pl_module):
            if pl_module.anchor_bank_of(field) is not None and not self.replace:
                continue
            try:
                items, _ = split_data(trainer, pl_module, self.split, num, self.seed, field=field)
            except (KeyError, ValueError):
                if field == pl_module.routing.source_field():
                    raise
                continue  # the data does not hold this field (e.g. a model that can also read text)
            pl_module.set_anchor_bank(items, field=field)
            size = len(getattr(trainer.datamodule, f"{self.split}_dataset", None) or items)
            which = f"all {size}" if len(items) >= size else f"{len(items)} random (seed {self.seed})"
            rank_zero_info(f"[AnchorBank] {which} {self.split} items of {field!r} form its bank")


def bank_fields(model: Any) -> list[str]:
    """The fields a bank is drawn for: the encoded field, then the own field of every other instance modality
    with an encoder (e.g. ``text`` beside ``image``; not extra views such as ``image_view2``)."""
    try:
        first = [model.routing.source_field()]
    except ValueError:  # nothing to encode (plain RF)
        return []
    others = [
        f
        for f, name in model.field_map.items()
        if f == name and f not in first
        and model.modality(f).kind == "instance" and model.modality(f).has_encoder
    ]  # fmt: skip
    return first + others
