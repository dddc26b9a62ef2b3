"""What every evaluation callback shares: when it runs, where its data comes from, how it reports."""

from __future__ import annotations

import inspect
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

SPLITS = ("train", "val", "test")


class EvalCallback(pl.Callback):
    """Base of the LZN evaluation callbacks.

    A callback computes its metrics on global rank 0 only (inference uses no collective ops, so the other
    ranks simply wait at the next barrier), unless it sets ``runs_on_all_ranks`` (it shares its work out over
    the ranks and gathers the results itself; only rank 0 logs), with the EMA weights, after every
    ``every_n_validations``-th validation loop (not the sanity check) and after ``lzn test``. Each metric is
    logged through ``pl_module.log`` (so CSV/TensorBoard/W&B loggers record it) and printed with a line saying
    what was computed. Subclasses implement :meth:`compute`; :meth:`run` calls it directly, e.g. from a
    script.

    Args:
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Also run at the end of ``trainer.test``.
    """

    #: Whether :meth:`compute` runs on every rank (it shards its work and gathers the results itself).
    runs_on_all_ranks = False

    def __init__(self, every_n_validations: int = 1, on_test: bool = True) -> None:
        if every_n_validations < 0:
            raise ValueError(f"every_n_validations must be >= 0, got {every_n_validations}")
        self.every_n_validations = every_n_validations
        self.on_test = on_test
        self._validations = 0
        self.last: dict[str, float] = {}
        self.last_what = ""  # the line saying what the last run computed

    @property
    def state_key(self) -> str:
        """Unique per class and settings: two callbacks of one class keep their own count in a checkpoint."""
        names = inspect.signature(type(self).__init__).parameters  # the constructor's arguments, not state
        settings = {
            k: getattr(self, k) for k in names
            if isinstance(getattr(self, k, None), (bool, int, float, str))
        }  # fmt: skip
        return self._generate_state_key(**settings)

    def state_dict(self) -> dict[str, int]:
        """The number of validations seen, so a resumed run evaluates at the same steps as the uninterrupted
        one (e.g. the 4th validation of a 1,000-step recipe resumed from step 500)."""
        return {"validations": self._validations}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._validations = int(state_dict.get("validations", 0))

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Return ``({metric name: value}, one line saying what was computed)``."""
        raise NotImplementedError

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Compute, print and return the metrics (without logging them)."""
        _require_api(pl_module, type(self).__name__)
        metrics, what = self.compute(trainer, pl_module)
        self.last, self.last_what = metrics, what
        values = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        rank_zero_info(f"[{type(self).__name__}] {values} | {what}")
        return metrics

    def _run_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0 and not self.runs_on_all_ranks:
            return
        metrics = self.run(trainer, pl_module)
        if trainer.global_rank != 0:
            return
        for name, value in metrics.items():
            pl_module.log(name, float(value), rank_zero_only=True)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.every_n_validations == 0:
            return
        self._validations += 1
        if self._validations % self.every_n_validations == 0:
            self._run_and_log(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on_test:
            self._run_and_log(trainer, pl_module)


def _require_api(pl_module: Any, who: str) -> None:
    if not hasattr(pl_module, "classify"):
        raise TypeError(f"{who} needs an LZN model (LZNLightningModule) with its inference API")


def split_data(
    trainer: pl.Trainer,
    pl_module: Any,
    split: str,
    num: int | None = None,
    seed: int = 0,
    field: str | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Items of a field (images [N, C, H, W] by default) and labels [N] (or None) of a data split, on the CPU.

    Reads the datamodule's ``{split}_dataset`` when it has one (a seeded random subset of ``num`` items, or
    all), otherwise the first ``num`` items of the trainer's loader for that split.

    Args:
        trainer: The trainer (its ``datamodule`` or loaders provide the data).
        pl_module: The LZN module (names the image and label fields).
        split: ``"train"``, ``"val"`` or ``"test"``.
        num: Number of items (None: all).
        seed: Seed of the random subset (the same seed and ``num`` give the same items for every field).
        field: The instance field to read (None: the encoded field, ``latent_from``).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    routing = pl_module.routing
    image_key = routing.source_field(field)
    label_key = routing.label_field(image_key, required=False) or "label"
    dm = getattr(trainer, "datamodule", None)
    dataset = getattr(dm, f"{split}_dataset", None) if dm is not None else None
    if dataset is None and dm is not None and hasattr(dm, "setup") and hasattr(dm, f"{split}_dataset"):
        dm.setup(None)
        dataset = getattr(dm, f"{split}_dataset", None)
    if dataset is not None:
        n = len(dataset)
        if num is None or num >= n:
            indices = list(range(n))
        else:
            indices = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:num].tolist()
        return dataset_tensors(dataset, image_key, label_key, indices)
    return _from_loader(trainer, split, num, image_key, label_key)


def dataset_tensors(
    dataset: Any, image_key: str = "image", label_key: str = "label", indices: list[int] | None = None
) -> tuple[Tensor, Tensor | None]:
    """Items [N, ...] (float32 when floating, e.g. images; token ids stay int64) and labels [N] (long, or None
    when items have none) of a dataset of dicts.

    Args:
        dataset: Indexable dataset whose items are dicts holding ``image_key`` (and maybe ``label_key``).
        image_key: Key of the image in each item.
        label_key: Key of the label in each item.
        indices: Items to take, in order (None: all).
    """
    items = [dataset[i] for i in (range(len(dataset)) if indices is None else indices)]
    if image_key not in items[0]:
        raise ValueError(
            f"the dataset's items have no {image_key!r} field (their fields: {sorted(items[0])})"
        )
    images = torch.stack([torch.as_tensor(it[image_key]) for it in items])
    images = images.float() if images.is_floating_point() else images
    labels = (
        torch.stack([torch.as_tensor(it[label_key]) for it in items]).long()
        if label_key in items[0]
        else None
    )
    return images, labels


def _from_loader(
    trainer: pl.Trainer, split: str, num: int | None, image_key: str, label_key: str
) -> tuple[Tensor, Tensor | None]:
    attr = {"train": "train_dataloader", "val": "val_dataloaders", "test": "test_dataloaders"}[split]
    loader = getattr(trainer, attr, None)
    if isinstance(loader, (list, tuple)):
        loader = loader[0] if loader else None
    if loader is None:
        raise ValueError(f"no {split!r} data: give the trainer a datamodule or a {split} dataloader")
    images: list[Tensor] = []
    labels: list[Tensor] = []
    count = 0
    for batch in loader:
        x = batch[image_key].cpu()
        images.append(x.float() if x.is_floating_point() else x)
        if label_key in batch:
            labels.append(batch[label_key].long().cpu())
        count += len(batch[image_key])
        if num is not None and count >= num:
            break
    if not images:
        raise ValueError(f"the {split!r} loader is empty")
    x = torch.cat(images)[:num]
    y = torch.cat(labels)[:num] if labels else None
    return x, y


def num_classes_of(pl_module: Any) -> int:
    """K of the model's label modality (its anchor table)."""
    field = pl_module.routing.label_field()
    return int(pl_module.modality(field).anchor_table().shape[0])
