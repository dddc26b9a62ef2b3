"""Callbacks that tests add to real ``lzn fit`` runs by import path (``--trainer.callbacks+=...``)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch


class BatchLog(pl.Callback):
    """Records a fingerprint of every training batch (all fields) and of the step's random draws, by step."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, ...]] = {}

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: Any, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        # The generator's state after the step fingerprints the draws the step made.
        noise = torch.randn(3, generator=module.generator().clone_state())
        fields = tuple(float(batch[k].double().sum()) for k in sorted(batch))
        self.seen[trainer.global_step] = (*fields, *noise.tolist())


class Crash(pl.Callback):
    """Raises at the start of a given step, after earlier steps trained but before anything more is saved.

    Args:
        step: The global step at whose start the run dies.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")
