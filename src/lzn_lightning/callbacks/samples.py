"""Sample grids: PNG files next to the logs, and images in loggers that take them (TensorBoard, W&B)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchvision.utils import make_grid, save_image

from lzn_lightning.callbacks.base import EvalCallback


def grid_labels(pl_module: Any, per_class: int) -> Tensor | None:
    """Labels for a grid with one row per class (``per_class`` columns), or None for unconditional models."""
    field = pl_module.routing.label_field(required=False)
    if field is None:
        return None
    k = int(pl_module.modality(field).anchor_table().shape[0])
    return torch.arange(k).repeat_interleave(per_class)  # [K*per_class]: row k holds class k


def output_dir(trainer: pl.Trainer) -> Path:
    """The run's log folder (the first logger's ``log_dir``), or ``default_root_dir`` without a logger.

    Not ``trainer.log_dir``: that broadcasts from rank 0, a collective the other DDP ranks never join when
    only rank 0 writes files (the run then dies with "connection closed by peer").
    """
    logger = trainer.loggers[0] if trainer.loggers else None
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
    return Path(folder or trainer.default_root_dir)


def log_image(trainer: pl.Trainer, tag: str, grid: Tensor, step: int) -> None:
    """Send a [3, H, W] image in [0, 1] to every logger that accepts images."""
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(logger, "log_image"):  # W&B, Neptune, Comet, MLflow
            try:
                logger.log_image(key=tag, images=[grid], step=step)
            except TypeError:
                pass
        elif hasattr(experiment, "add_image"):  # TensorBoard
            experiment.add_image(tag, grid, global_step=step)


class SampleGrid(EvalCallback):
    """Write a grid of generated images as PNG (and log it to image-capable loggers).

    Class-conditional models get one row per class (``per_class`` samples each); unconditional models a
    ``per_class`` x ``per_class`` grid. The same seed is used every time, so grids over training are
    comparable. Files: ``<log_dir>/samples/step<N>.png`` after validations and
    ``<log_dir>/samples_final.png`` at the end of fit.

    Args:
        per_class: Columns of the grid (samples per class, or side of the unconditional grid).
        steps: RF Euler steps (None: the image modality's ``sample_steps``).
        seed: Seed of the samples.
        every_n_validations: Write a grid after every n-th validation loop (0: only at the end of fit).
        on_test: Also write one at the end of ``trainer.test``.
    """

    def __init__(
        self,
        per_class: int = 10,
        steps: int | None = None,
        seed: int = 0,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.per_class = per_class
        self.steps = steps
        self.seed = seed

    def make_grid(self, pl_module: Any) -> Tensor:
        """The grid as a [3, H, W] image in [0, 1]."""
        labels = grid_labels(pl_module, self.per_class)
        num = self.per_class**2 if labels is None else len(labels)
        images = pl_module.generate(num, labels=labels, steps=self.steps, seed=self.seed, progress=False)
        return make_grid((images + 1) / 2, nrow=self.per_class, padding=1, pad_value=1.0).clamp(0, 1)

    def save(self, trainer: pl.Trainer, pl_module: Any, path: Path, tag: str) -> Path:
        """Generate, write ``path`` and log the grid under ``tag``."""
        grid = self.make_grid(pl_module)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        log_image(trainer, tag, grid, trainer.global_step)
        rank_zero_info(f"[SampleGrid] wrote {path} ({self.per_class} per row, EMA weights, seed {self.seed})")
        return path

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Write ``samples/step<N>.png``; no scalar metrics."""
        path = output_dir(trainer) / "samples" / f"step{trainer.global_step}.png"
        self.save(trainer, pl_module, path, "samples")
        return {}, f"grid written to {path}"

    def _run_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank == 0:
            self.compute(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank == 0:
            self.save(trainer, pl_module, output_dir(trainer) / "samples_final.png", "samples_final")
