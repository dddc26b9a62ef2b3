"""Linear probe and k-nearest-neighbour accuracy callbacks on frozen embeddings (``model.embed``); the
scikit-learn fitting is in :mod:`lzn_lightning.metrics.probes`."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np

from lzn_lightning.callbacks.base import EvalCallback, split_data
from lzn_lightning.metrics import knn_accuracy, linear_probe_accuracy


class _EmbeddingProbe(EvalCallback):
    def __init__(
        self,
        train_split: str,
        eval_split: str,
        num_train: int | None,
        seed: int,
        every_n_validations: int,
        on_test: bool,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        self.train_split = train_split
        self.eval_split = eval_split
        self.num_train = num_train
        self.seed = seed

    def embeddings(self, trainer: pl.Trainer, pl_module: Any) -> tuple[np.ndarray, ...]:
        """(train features, train labels, eval features, eval labels) as numpy."""
        xs, ys = split_data(trainer, pl_module, self.train_split, self.num_train, self.seed)
        xt, yt = split_data(trainer, pl_module, self.eval_split)
        if ys is None or yt is None:
            raise ValueError(
                f"{type(self).__name__} needs labels in the {self.train_split!r} and "
                f"{self.eval_split!r} splits"
            )
        return (
            pl_module.embed(xs, progress=False).numpy(), ys.numpy(),
            pl_module.embed(xt, progress=False).numpy(), yt.numpy(),
        )  # fmt: skip


class LinearProbe(_EmbeddingProbe):
    """Logistic regression on frozen ``embed`` features (standardised), trained on one split, scored on
    another.

    A quick scikit-learn (L-BFGS) probe on clean, un-augmented features; the reference's ImageNet protocol
    (AdamW, 300 epochs, re-augmented features) is far heavier and is not what this reports.

    Args:
        train_split: Split the probe is fitted on.
        eval_split: Split it is scored on.
        num_train: Training images (None: all; else a seeded random subset).
        c: Inverse L2 regularisation strength.
        max_iter: L-BFGS iterations.
        seed: Seed of the subset.
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Also run at the end of ``trainer.test``.
    """

    def __init__(
        self,
        train_split: str = "train",
        eval_split: str = "test",
        num_train: int | None = None,
        c: float = 1.0,
        max_iter: int = 1000,
        seed: int = 0,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(train_split, eval_split, num_train, seed, every_n_validations, on_test)
        self.c = c
        self.max_iter = max_iter

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Embed both splits and fit the probe."""
        xs, ys, xt, yt = self.embeddings(trainer, pl_module)
        acc = linear_probe_accuracy(xs, ys, xt, yt, self.c, self.max_iter)
        what = (
            f"scikit-learn LogisticRegression(C={self.c}) on standardised {xs.shape[1]}-d embed() features, "
            f"fit on {len(xs)} {self.train_split} / scored on {len(xt)} {self.eval_split} images, EMA weights"
        )
        return {"linear_probe_acc": acc}, what


class KNN(_EmbeddingProbe):
    """k-nearest-neighbour classification (cosine, distance-weighted vote) on frozen ``embed`` features.

    Args:
        k: Neighbours.
        metric: scikit-learn distance metric.
        train_split: Split the neighbours come from.
        eval_split: Split that is classified.
        num_train: Training images (None: all; else a seeded random subset).
        seed: Seed of the subset.
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Also run at the end of ``trainer.test``.
    """

    def __init__(
        self,
        k: int = 20,
        metric: str = "cosine",
        train_split: str = "train",
        eval_split: str = "test",
        num_train: int | None = None,
        seed: int = 0,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(train_split, eval_split, num_train, seed, every_n_validations, on_test)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.metric = metric

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Embed both splits and vote."""
        xs, ys, xt, yt = self.embeddings(trainer, pl_module)
        acc = knn_accuracy(xs, ys, xt, yt, self.k, self.metric)
        what = (
            f"scikit-learn KNeighborsClassifier(k={min(self.k, len(xs))}, {self.metric}, distance-weighted) "
            f"on {xs.shape[1]}-d embed() features of {len(xs)} {self.train_split} images, scored on "
            f"{len(xt)} {self.eval_split} images, EMA weights"
        )
        return {"knn_acc": acc}, what
