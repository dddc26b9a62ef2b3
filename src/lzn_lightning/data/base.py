"""The common base of every LZN datamodule: batch-size bookkeeping, views, loaders, a summary line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, Subset

from lzn_lightning.data.errors import DatasetNotFoundError
from lzn_lightning.data.photometric import PhotometricAugment, finish_device_views
from lzn_lightning.data.resumable import ResumableDataLoader, ResumableSampler
from lzn_lightning.data.transforms import two_view_transform
from lzn_lightning.seeding import trainer_seed


class LZNDataModule(pl.LightningDataModule):
    """Base class of the LZN datamodules (the ``data:`` section of a recipe).

    Batches are dicts, e.g. ``image`` float32 [B, C, H, W] in [-1, 1], ``label`` int64 [B] when the data has
    labels, ``text`` int64 token ids [B, L] for text, and ``image_view2`` (a second, independent augmentation
    of the same images) with two views.
    ``batch_size`` is the GLOBAL batch: each of the trainer's ``world_size`` devices loads
    ``batch_size // world_size`` samples, so a recipe means the same thing on 1 or 64 GPUs.

    Training order and augmentations are functions of the trainer's seed, the epoch and the sample, and the
    training loader's checkpoint state records how far the current epoch got (see
    :mod:`lzn_lightning.data.resumable`), so ``lzn fit --ckpt_path last.ckpt`` continues with exactly the
    batches the uninterrupted run would have read, mid-epoch included.

    Subclasses implement :attr:`num_classes`, :attr:`image_shape` for data with images (both usable before
    :meth:`setup`, as the CLI and the model check them) and :meth:`build_datasets`. The loaders set the data
    up on first use, so they also work without a trainer.

    Args:
        batch_size: Global training batch size, summed over all devices; must be divisible by the number of
            devices.
        eval_batch_size: Global batch size of the val/test/predict loaders; ``None`` means ``batch_size``.
        num_workers: Data-loading worker processes per device (0 loads in the main process).
        seed: Seed of the data itself: splits and synthetic data (not of shuffling, which follows the
            trainer's seed).
        two_views: Training batches carry ``image`` and ``image_view2``, two independent random
            augmentations (SimCLR-like) of each image, for representation learning.
        eval_two_views: Whether val/test/predict batches carry two augmented views too (e.g. for a
            validation loss that needs ``image_view2``); ``None`` follows ``two_views``, ``False`` gives the
            clean image.
        eval_drop_last: Drop the last incomplete val/test/predict batch.
        eval_shuffle: Serve a val or test split that spans several eval batches in a fixed random order
            (seeded by ``seed``), so that each batch is a random sample of the split whatever order it is
            stored in. A batch is the field of the module's ``val/zone_acc`` and of the batch context; a
            split stored class by class (class folders, MNIST-5k's stratified split) would otherwise give
            fields of one or a few classes. ``False`` keeps the stored order. Predict keeps it always.
    """

    #: Short dataset name used by :meth:`describe`.
    name: ClassVar[str] = "data"
    # True while clean_datasets() builds: every split gets the evaluation transform and one view.
    _clean_views: bool = False

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        two_views: bool = False,
        eval_two_views: bool | None = None,
        eval_drop_last: bool = False,
        eval_shuffle: bool = True,
    ) -> None:
        super().__init__()
        # Records every subclass's init args in checkpoints (datamodule_hyper_parameters). Not sent to the
        # logger: Lightning refuses to log two hparams of one name with different values, and our ``seed``
        # (splits) and the module's ``seed`` (prior noise) differ by design. The run's config.yaml keeps both.
        self.save_hyperparameters(logger=False)
        for arg, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and value < 1:
                raise ValueError(f"{arg} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.two_views = two_views
        self.eval_two_views = two_views if eval_two_views is None else eval_two_views
        self.eval_drop_last = eval_drop_last
        self.eval_shuffle = eval_shuffle
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    # ------------------------------------------------------------------------------- what subclasses give
    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) of the images in a batch, known before :meth:`setup`; ``None``: data without images."""
        return None

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or ``None`` for unlabelled data; known before :meth:`setup`."""
        raise NotImplementedError

    def build_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        """Load or index the data and return the ``(train, val, test)`` datasets.

        Use :meth:`view_settings` for each split's transform. Raise
        :class:`~lzn_lightning.data.DatasetNotFoundError` if the files are missing.
        """
        raise NotImplementedError

    def view_transform(self) -> Callable[[Any], Any]:
        """The random augmentation drawn for each of the two views (override to tune it per dataset)."""
        if self.image_shape is None:
            raise ValueError(f"{self.name}: two_views draws image augmentations, but this data has no images")
        c, h, w = self.image_shape
        return two_view_transform((h, w), channels=c)

    def train_transform(self) -> Callable[[Any], Any] | None:
        """Augmentation of single-view training images (``None``: the clean image)."""
        return None

    def eval_transform(self) -> Callable[[Any], Any] | None:
        """Deterministic transform of single-view evaluation images (``None``: the stored image)."""
        return None

    def device_augment(self) -> PhotometricAugment | None:
        """The photometric half of views whose worker half ran in the loader (a transform returning
        :class:`~lzn_lightning.data.photometric.DeviceView`); ``None``: views are finished in the workers."""
        return None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Finish device-augmented views on the device (Lightning calls this after moving a batch there).

        Code that iterates a loader without a trainer calls it on each batch itself.
        """
        return finish_device_views(batch, self.device_augment())

    def view_settings(self, train: bool) -> tuple[Callable[[Any], Any] | None, bool]:
        """``(transform, two_views)`` for the training split (``train``) or the evaluation splits."""
        if self._clean_views:
            return self.eval_transform(), False
        if self.two_views if train else self.eval_two_views:
            return self.view_transform(), True
        return (self.train_transform() if train else self.eval_transform()), False

    def clean_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        """``(train, val, test)`` built anew with the evaluation transform on every split and one view (no
        augmentation, ImageNet's centre crop): what a probe on fixed features reads. The module's own
        datasets are not touched."""
        self._clean_views = True
        try:
            return self.build_datasets()
        finally:
            self._clean_views = False

    # ----------------------------------------------------------------------------------------- batch sizes
    @property
    def world_size(self) -> int:
        """Number of devices sharing a global batch (1 without a trainer)."""
        return int(getattr(self.trainer, "world_size", 1) or 1) if self.trainer is not None else 1

    def _per_device(self, arg: str, global_size: int) -> int:
        world = self.world_size
        if global_size % world:
            raise ValueError(
                f"{arg}={global_size} is the global batch size (summed over devices), so it must be "
                f"divisible by the number of devices, but it is not divisible by {world} devices; "
                f"use a multiple of {world}"
            )
        return global_size // world

    @property
    def per_device_batch_size(self) -> int:
        """Training samples per device per step: ``batch_size // world_size``."""
        return self._per_device("batch_size", self.batch_size)

    @property
    def per_device_eval_batch_size(self) -> int:
        """Evaluation samples per device per step: ``ceil(eval_batch_size / world_size)``.

        Unlike training, evaluation needs no equal split: each device takes the rounded-up share (Lightning's
        distributed sampler pads the last batch), so a recipe's eval batch (e.g. a 359-image test split in one
        batch) runs unchanged on any device count.
        """
        return -(-self.eval_batch_size // self.world_size)

    # --------------------------------------------------------------------------------------------- set-up
    def setup(self, stage: str | None = None) -> None:
        """Check the batch sizes against the trainer's world size and build the datasets (once).

        Args:
            stage: Lightning stage (``fit``, ``validate``, ``test``, ``predict``) or ``None`` for all.
        """
        if stage in (None, "fit"):
            _ = self.per_device_batch_size
        _ = self.per_device_eval_batch_size
        if self.train_dataset is None:
            self.train_dataset, self.val_dataset, self.test_dataset = self.build_datasets()

    def _ready(self, stage: str) -> None:
        if self.train_dataset is None:
            self.setup(stage)

    @property
    def global_rank(self) -> int:
        """This process's rank among the ``world_size`` devices (0 without a trainer)."""
        return int(getattr(self.trainer, "global_rank", 0) or 0) if self.trainer is not None else 0

    def _training_progress(self) -> tuple[int, bool]:
        """(batches of the current epoch the trainer has trained, whether the last of them ended the epoch);
        (0, False) without a fitting trainer."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return 0, False
        progress = trainer.fit_loop.epoch_loop.batch_progress
        return int(progress.current.processed), bool(progress.is_last_batch)

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        workers = self.num_workers
        common: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": workers > 0,
        }
        if train:
            sampler = ResumableSampler(dataset, self.world_size, self.global_rank, trainer_seed())
            return ResumableDataLoader(dataset, batch_size, sampler, self._training_progress, **common)
        return DataLoader(dataset, batch_size=batch_size, drop_last=self.eval_drop_last, **common)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches of ``per_device_batch_size``; the last incomplete batch is dropped."""
        self._ready("fit")
        assert self.train_dataset is not None
        n = len(self.train_dataset)  # type: ignore[arg-type]
        if n < self.batch_size:
            raise ValueError(
                f"{self.name}: the training split has {n} samples, fewer than one global batch "
                f"(batch_size={self.batch_size}); lower batch_size or use more data"
            )
        return self._loader(self.train_dataset, self.per_device_batch_size, train=True)

    def _eval_order(self, dataset: Dataset) -> Dataset:
        """The split itself when it fits one global eval batch (or with ``eval_shuffle=False``), else a view
        of it in a fixed order seeded by ``seed`` (the same batches every validation and every run)."""
        n = len(dataset)  # type: ignore[arg-type]
        if not self.eval_shuffle or n <= self.eval_batch_size:
            return dataset
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        return Subset(dataset, order.tolist())

    def val_dataloader(self) -> DataLoader:
        """Validation batches of ``per_device_eval_batch_size``, each a random sample of the split (see
        ``eval_shuffle``), the same every validation."""
        self._ready("validate")
        assert self.val_dataset is not None
        return self._loader(self._eval_order(self.val_dataset), self.per_device_eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches of ``per_device_eval_batch_size``, each a random sample of the split (see
        ``eval_shuffle``)."""
        self._ready("test")
        assert self.test_dataset is not None
        return self._loader(self._eval_order(self.test_dataset), self.per_device_eval_batch_size, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split in order, for ``Trainer.predict`` from Python (``lzn`` has no ``predict``)."""
        self._ready("predict")
        assert self.test_dataset is not None
        return self._loader(self.test_dataset, self.per_device_eval_batch_size, train=False)

    # -------------------------------------------------------------------------------------------- summary
    def describe(self) -> str:
        """One line for logs, e.g. ``digits: train=1258 val=180 test=359, batch 8/device x 2 devices ...``."""
        try:
            classes = "unlabelled" if self.num_classes is None else f"{self.num_classes} classes"
        except DatasetNotFoundError:
            classes = "classes unknown (data not found)"
        views = f"two views train={self.two_views} eval={self.eval_two_views}"
        images = "no images" if self.image_shape is None else "images {}x{}x{}".format(*self.image_shape)
        shape = f"{images}, {classes}, {views}"
        if self.train_dataset is None:
            return f"{self.name}: not set up yet (call setup()), {shape}"
        sizes = " ".join(
            f"{split}={len(ds)}"  # type: ignore[arg-type]
            for split, ds in (
                ("train", self.train_dataset),
                ("val", self.val_dataset),
                ("test", self.test_dataset),
            )
        )
        world = self.world_size
        try:
            batch = (
                f"batch {self.per_device_batch_size}/device x {world} device{'s' if world > 1 else ''} "
                f"= {self.batch_size}, "
                f"eval {self.per_device_eval_batch_size}/device"
            )
        except ValueError:
            batch = f"batch {self.batch_size} (not divisible by {world} devices)"
        return f"{self.name}: {sizes}, {batch}, {shape}, workers {self.num_workers}/device"
