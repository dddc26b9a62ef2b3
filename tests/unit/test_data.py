"""Datamodules: batch format, splits, per-device batch sizes, missing-data errors (CPU, no network)."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import SequentialSampler

from lzn_lightning.data import (
    CIFAR10DataModule,
    DatasetNotFoundError,
    DigitsDataModule,
    ImageFolderDataModule,
    ImageNetDataModule,
    LZNDataModule,
    MNIST5kDataModule,
    SyntheticDataModule,
    TensorImageDataset,
    stratified_split,
)
from lzn_lightning.data.resumable import ResumableDataLoader, ResumableSampler
from lzn_lightning.data.transforms import blur_kernel_size, two_view_transform


def _delivered(dm: Any, loader: Any) -> dict[str, torch.Tensor]:
    """The first batch of ``loader`` as the model receives it (views finished on the device)."""
    return dm.on_after_batch_transfer(next(iter(loader)), 0)


def _check_batch(
    batch: dict[str, torch.Tensor],
    shape: tuple[int, int, int],
    batch_size: int,
    two_views: bool = False,
    labelled: bool = True,
    num_classes: int = 10,
) -> None:
    keys = {"image"} | ({"image_view2"} if two_views else set()) | ({"label"} if labelled else set())
    assert set(batch) == keys
    for key in ("image", "image_view2") if two_views else ("image",):
        x = batch[key]
        assert x.dtype == torch.float32
        assert tuple(x.shape) == (batch_size, *shape)
        assert x.min() >= -1.0 and x.max() <= 1.0
        # Really [-1, 1], not [0, 1]; not stronger than that: a random crop of a dark region may stay below 0.
        assert x.min() < 0.0 and x.std() > 0
    if labelled:
        y = batch["label"]
        assert y.dtype == torch.int64 and tuple(y.shape) == (batch_size,)
        assert 0 <= int(y.min()) and int(y.max()) < num_classes
    if two_views:
        assert not torch.equal(batch["image"], batch["image_view2"])


# ---------------------------------------------------------------- small tensor datasets


@pytest.mark.parametrize("two_views", [False, True])
def test_digits_batches(two_views: bool) -> None:
    dm = DigitsDataModule(batch_size=32, eval_batch_size=50, two_views=two_views)
    assert dm.image_shape == (1, 8, 8) and dm.num_classes == 10
    dm.setup("fit")
    _check_batch(next(iter(dm.train_dataloader())), (1, 8, 8), 32, two_views)
    # Eval views follow two_views by default (the val loss needs image_view2) ...
    _check_batch(next(iter(dm.val_dataloader())), (1, 8, 8), 50, two_views)
    _check_batch(next(iter(dm.predict_dataloader())), (1, 8, 8), 50, two_views)
    # ... or are the single clean image on request.
    clean = DigitsDataModule(batch_size=32, two_views=two_views, eval_two_views=False)
    clean.setup("validate")
    val = next(iter(clean.val_dataloader()))
    _check_batch(val, (1, 8, 8), 32)
    # The 180 val images span several eval batches: served in the order seeded by the data seed.
    order = torch.randperm(180, generator=torch.Generator().manual_seed(0))[:32]
    assert torch.equal(val["image"], clean.val_dataset.images[order])  # type: ignore[union-attr]


def test_digits_values_match_sklearn() -> None:
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(two_views=False)
    dm.setup("test")
    assert dm.split_indices is not None
    test_idx = dm.split_indices[2]
    ds = dm.test_dataset
    assert isinstance(ds, TensorImageDataset)
    raw = load_digits()
    expected = torch.as_tensor(raw.data[test_idx[:5]], dtype=torch.float32).reshape(5, 1, 8, 8) / 16 * 2 - 1
    assert torch.allclose(torch.stack([ds[i]["image"] for i in range(5)]), expected)
    assert [int(ds[i]["label"]) for i in range(5)] == raw.target[test_idx[:5]].tolist()


@pytest.mark.parametrize(
    ("pad_to_32", "two_views"),
    [
        pytest.param(*c, marks=pytest.mark.slow) for c in [(False, False), (False, True), (True, True)]
    ],  # ~5 s each
)
def test_mnist5k_batches(pad_to_32: bool, two_views: bool) -> None:
    dm = MNIST5kDataModule(batch_size=16, pad_to_32=pad_to_32, two_views=two_views)
    side = 32 if pad_to_32 else 28
    assert dm.image_shape == (1, side, side)
    dm.setup("fit")
    _check_batch(next(iter(dm.train_dataloader())), (1, side, side), 16, two_views)
    _check_batch(next(iter(dm.test_dataloader())), (1, side, side), 16, two_views)
    if pad_to_32:
        images = dm.test_dataset.images  # type: ignore[union-attr]
        assert torch.all(images[:, :, :2] == -1.0) and torch.all(images[:, :, :, -2:] == -1.0)


@pytest.mark.parametrize(
    ("dm_cls", "n", "sizes"),
    [
        (DigitsDataModule, 1797, (1258, 180, 359)),
        pytest.param(MNIST5kDataModule, 5000, (3500, 500, 1000), marks=pytest.mark.slow),  # ~7 s
    ],
)
def test_splits_add_up_disjoint_stratified(dm_cls: type[LZNDataModule], n: int, sizes: tuple) -> None:
    dm = dm_cls()
    dm.setup("fit")
    train, val, test = dm.split_indices  # type: ignore[attr-defined]
    assert (len(train), len(val), len(test)) == sizes
    assert len(dm.train_dataset) == sizes[0]  # type: ignore[arg-type]
    assert len(dm.val_dataset) == sizes[1] and len(dm.test_dataset) == sizes[2]  # type: ignore[arg-type]
    everything = np.concatenate([train, val, test])
    assert len(np.unique(everything)) == n == len(everything)
    # Stratified: every split's class histogram is the overall one, scaled (up to rounding).
    labels = dm.load_tensors()[1].numpy()  # type: ignore[attr-defined]
    overall = np.bincount(labels, minlength=10) / n
    for idx in (train, val, test):
        counts = np.bincount(labels[idx], minlength=10)
        assert np.all(np.abs(counts - overall * len(idx)) <= 1.0 + 1e-9)
    # Deterministic in the seed, different for another seed.
    again = dm_cls()
    again.setup("fit")
    assert all(np.array_equal(a, b) for a, b in zip(dm.split_indices, again.split_indices, strict=True))  # type: ignore[attr-defined]
    other = dm_cls(seed=1)
    other.setup("fit")
    assert not np.array_equal(test, other.split_indices[2])  # type: ignore[attr-defined]


def test_stratified_split_unlabelled_and_bad_fractions() -> None:
    tr, va, te = stratified_split(None, 0.25, 0.25, seed=0, num_samples=20)
    assert (len(tr), len(va), len(te)) == (10, 5, 5)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(20))
    tr, va, te = stratified_split(np.arange(10) % 2, 0.0, 0.0)
    assert len(tr) == 10 and len(va) == len(te) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(None, 0.6, 0.5, num_samples=10)


# ---------------------------------------------------------------- synthetic


@pytest.mark.parametrize(
    ("shape", "two_views"), [((1, 8, 8), False), ((1, 8, 8), True), ((3, 32, 32), True), ((3, 16, 16), False)]
)
def test_synthetic_batches(shape: tuple[int, int, int], two_views: bool) -> None:
    dm = SyntheticDataModule(
        num_samples=40, image_shape=shape, num_classes=4, batch_size=8, two_views=two_views
    )
    dm.setup("fit")
    _check_batch(next(iter(dm.train_dataloader())), shape, 8, two_views, num_classes=4)
    _check_batch(next(iter(dm.val_dataloader())), shape, 8, two_views, num_classes=4)


def test_synthetic_unlabelled_deterministic_and_learnable() -> None:
    dm = SyntheticDataModule(num_classes=None)
    dm.setup()
    _check_batch(next(iter(dm.train_dataloader())), (1, 8, 8), 16, labelled=False)

    def images(seed: int) -> torch.Tensor:
        d = SyntheticDataModule(seed=seed, num_samples=200)
        d.setup()
        return d.train_dataset.images  # type: ignore[union-attr]

    assert torch.equal(images(0), images(0)) and not torch.equal(images(0), images(1))
    # Learnable: nearest class mean (from train) classifies the test split.
    dm = SyntheticDataModule(num_samples=200, num_test_samples=100)
    dm.setup()
    tr, te = dm.train_dataset, dm.test_dataset
    means = torch.stack([tr.images[tr.labels == k].mean(0) for k in range(10)])  # type: ignore[union-attr]
    dist = torch.cdist(te.images.flatten(1), means.flatten(1))  # type: ignore[union-attr]
    assert (dist.argmin(1) == te.labels).float().mean() > 0.95  # type: ignore[union-attr]


def test_eval_two_views_and_lightning_fit() -> None:
    import lightning.pytorch as pl

    dm = SyntheticDataModule(two_views=True, eval_two_views=True, batch_size=8)
    dm.setup()
    _check_batch(next(iter(dm.val_dataloader())), (1, 8, 8), 8, two_views=True)

    seen: list[set[str]] = []

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(64, 10)

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            seen.append(set(batch))
            return torch.nn.functional.cross_entropy(self.lin(batch["image"].flatten(1)), batch["label"])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(
        fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(Probe(), SyntheticDataModule(two_views=True, batch_size=8))
    assert seen == [{"image", "image_view2", "label"}] * 2


# ---------------------------------------------------------------- loaders and world size


def test_per_device_batch_and_loader_flags() -> None:
    dm = SyntheticDataModule(num_samples=64, batch_size=16, eval_batch_size=10)
    dm.trainer = SimpleNamespace(world_size=2)  # type: ignore[assignment]
    dm.setup("fit")
    assert dm.per_device_batch_size == 8 and dm.per_device_eval_batch_size == 5
    train = dm.train_dataloader()
    assert train.batch_size == 8 and train.drop_last is True
    assert (
        isinstance(train.sampler, ResumableSampler)
        and train.sampler.shuffle
        and train.sampler.num_replicas == 2
    )
    val = dm.val_dataloader()
    assert val.batch_size == 5 and val.drop_last is False and isinstance(val.sampler, SequentialSampler)
    assert "8/device x 2" in dm.describe()

    dm.trainer = None
    assert dm.per_device_batch_size == 16  # standalone: world size 1
    # drop_last on train: 70 samples, batch 16 -> 4 full batches.
    dm = SyntheticDataModule(num_samples=70, batch_size=16, num_test_samples=30, eval_drop_last=True)
    dm.setup()
    assert [len(b["image"]) for b in dm.train_dataloader()] == [16] * 4
    assert [len(b["image"]) for b in dm.test_dataloader()] == [16]
    assert [len(b["image"]) for b in SyntheticDataModule(num_test_samples=30).test_dataloader()] == [16, 14]


@pytest.mark.slow  # ~5 s: reads all of MNIST-5k
def test_eval_batches_are_random_samples_of_a_class_ordered_split() -> None:
    """MNIST-5k's splits are stored class by class: in stored order, every eval batch would hold 1-2 classes
    (the field of val/zone_acc). Served shuffled, each of the 1,000 test images once, the same every time;
    a split that fits one batch, ``eval_shuffle=False`` and predict keep the stored order."""
    dm = MNIST5kDataModule(batch_size=128, eval_batch_size=100)
    dm.setup("fit")
    stored = dm.test_dataset.labels  # type: ignore[union-attr]
    assert (stored[:-1] <= stored[1:]).all()  # the premise: stored by class (if not, this test is moot)
    batches = [b["label"] for b in dm.test_dataloader()]
    assert len(batches) == 10 and all(len(torch.unique(b)) >= 8 for b in batches)
    served = torch.cat(batches)
    assert torch.equal(served.sort().values, stored) and not torch.equal(served, stored)
    assert torch.equal(torch.cat([b["label"] for b in dm.test_dataloader()]), served)  # same every epoch
    val = torch.cat([b["label"] for b in dm.val_dataloader()])
    assert torch.equal(val.sort().values, dm.val_dataset.labels) and len(val) == 500  # type: ignore[union-attr]
    assert torch.equal(torch.cat([b["label"] for b in dm.predict_dataloader()]), stored)

    kept = MNIST5kDataModule(batch_size=128, eval_batch_size=100, eval_shuffle=False)
    assert torch.equal(torch.cat([b["label"] for b in kept.test_dataloader()]), stored)
    one_batch = MNIST5kDataModule(batch_size=128, eval_batch_size=1000)
    assert torch.equal(next(iter(one_batch.test_dataloader()))["label"], stored)


def test_non_divisible_batch_and_too_small_train_split() -> None:
    dm = SyntheticDataModule(batch_size=15)
    dm.trainer = SimpleNamespace(world_size=2)  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"batch_size=15.*divisible.*2 devices"):
        dm.setup("fit")
    dm = SyntheticDataModule(batch_size=16, eval_batch_size=9)  # evaluation does not need an equal split
    dm.trainer = SimpleNamespace(world_size=2)  # type: ignore[assignment]
    dm.setup("validate")
    assert dm.per_device_eval_batch_size == 5
    with pytest.raises(ValueError, match="fewer than one global batch"):
        SyntheticDataModule(num_samples=10, batch_size=16).train_dataloader()


def test_tensor_dataset_uint8_and_describe() -> None:
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2).contiguous()
    ds = TensorImageDataset(images, torch.tensor([3, 4]))
    assert ds[0]["image"].dtype == torch.float32
    assert torch.all(ds[0]["image"] == -1.0) and torch.all(ds[1]["image"] == 1.0)
    assert int(ds[1]["label"]) == 4
    with pytest.raises(ValueError, match="two_views"):
        TensorImageDataset(images, None, None, two_views=True)
    dm = DigitsDataModule()
    assert "not set up" in dm.describe()
    dm.setup()
    assert "digits: train=1258 val=180 test=359" in dm.describe()


def test_transforms() -> None:
    assert blur_kernel_size(224) == 23 and blur_kernel_size(32) == 3 and blur_kernel_size(8) == 3
    t = two_view_transform(32, channels=3)
    x = torch.rand(3, 32, 32) * 2 - 1
    a, b = t(x), t(x)
    assert type(a) is torch.Tensor and a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1 and not torch.equal(a, b)


# ---------------------------------------------------------------- datasets on disk


def _write_pngs(folder: Path, n: int, size: tuple[int, int] = (20, 14), start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(n):  # black/white 5x5 blocks: high contrast survives resizing and blur
        blocks = rng.integers(0, 2, size=(size[1] // 5 + 1, size[0] // 5 + 1, 3), dtype=np.uint8) * 255
        arr = np.ascontiguousarray(blocks.repeat(5, 0).repeat(5, 1)[: size[1], : size[0]])
        Image.fromarray(arr).save(folder / f"img_{start + i}.png")


def test_missing_datasets_raise_one_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "nope"
    cases = [
        (CIFAR10DataModule(root=str(empty)), "cifar-10-python.tar.gz"),
        (CIFAR10DataModule(root=str(missing)), "download=True"),
        (ImageFolderDataModule(root=str(empty)), "contains no image files"),
        (ImageFolderDataModule(root=str(missing)), "does not exist"),
        (ImageNetDataModule(root=str(empty)), "valprep"),
    ]
    for dm, hint in cases:
        with pytest.raises(DatasetNotFoundError) as info:
            dm.setup("fit")
        msg = str(info.value)
        assert str(dm.root) in msg and hint in msg  # type: ignore[attr-defined]
        assert isinstance(info.value, FileNotFoundError)
    # ImageNet with train/ but a flat val/ still fails clearly.
    _write_pngs(tmp_path / "inet" / "train" / "n01", 2)
    _write_pngs(tmp_path / "inet" / "val", 2)
    with pytest.raises(DatasetNotFoundError, match="no class sub-folders"):
        ImageNetDataModule(root=str(tmp_path / "inet")).setup("fit")


def test_cifar10_from_python_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    # Fake files: skip torchvision's md5 checks.
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)

    dm = CIFAR10DataModule(root=str(tmp_path), batch_size=4, two_views=True)
    dm.setup("fit")
    train = dm.train_dataset
    assert isinstance(train, TensorImageDataset) and train.images.dtype == torch.uint8
    assert train.images.shape == (20, 3, 32, 32) and len(dm.val_dataset) == 4  # type: ignore[arg-type]
    _check_batch(next(iter(dm.train_dataloader())), (3, 32, 32), 4, two_views=True)
    _check_batch(next(iter(dm.val_dataloader())), (3, 32, 32), 4, two_views=True)
    dm = CIFAR10DataModule(root=str(tmp_path), batch_size=4, two_views=True, eval_two_views=False)
    val = next(iter(dm.val_dataloader()))
    _check_batch(val, (3, 32, 32), 4)
    # Same pixels as torchvision's PIL view of the test set.
    pil = CIFAR10(str(tmp_path), train=False)[0][0]
    expected = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(val["image"][0], expected)

    held_out = CIFAR10DataModule(root=str(tmp_path), val_fraction=0.2, batch_size=4)
    held_out.setup()
    assert len(held_out.train_dataset) == 16 and len(held_out.val_dataset) == 4  # type: ignore[arg-type]


def test_image_folder_flat(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "flat", 5)
    _write_pngs(tmp_path / "flat" / "nested", 3, start=5)  # recursive
    dm = ImageFolderDataModule(root=str(tmp_path / "flat"), size=8, batch_size=4, val_fraction=0.25)
    assert dm.num_classes is None and dm.image_shape == (3, 8, 8)
    dm.setup("fit")
    assert len(dm.train_dataset) == 6 and len(dm.val_dataset) == 2  # type: ignore[arg-type]
    _check_batch(next(iter(dm.train_dataloader())), (3, 8, 8), 4, labelled=False)
    _check_batch(next(iter(dm.val_dataloader())), (3, 8, 8), 2, labelled=False)

    two = ImageFolderDataModule(root=str(tmp_path / "flat"), size=8, batch_size=4, two_views=True)
    two.setup("fit")
    assert len(two.val_dataset) == 0  # type: ignore[arg-type]
    _check_batch(_delivered(two, two.train_dataloader()), (3, 8, 8), 4, two_views=True, labelled=False)


def test_image_folder_class_subfolders(tmp_path: Path) -> None:
    for k, name in enumerate(["cat", "dog", "wild"]):
        _write_pngs(tmp_path / "train" / name, 3, start=10 * k)
        _write_pngs(tmp_path / "val" / name, 1, start=100 + k)
    dm = ImageFolderDataModule(
        root=str(tmp_path / "train"), val_root=str(tmp_path / "val"), size=12, batch_size=3, eval_batch_size=3
    )
    assert dm.num_classes == 3
    dm.setup("fit")
    assert dm.classes == ["cat", "dog", "wild"]
    batch = next(iter(dm.train_dataloader()))
    _check_batch(batch, (3, 12, 12), 3, num_classes=3)
    val = next(iter(dm.val_dataloader()))
    _check_batch(val, (3, 12, 12), 3, num_classes=3)
    assert val["label"].tolist() == [0, 1, 2]
    # Forcing the flat reading ignores the class folders.
    flat = ImageFolderDataModule(root=str(tmp_path / "train"), size=12, use_labels=False, batch_size=3)
    flat.setup()
    assert flat.num_classes is None and "label" not in next(iter(flat.train_dataloader()))


def test_imagenet_layout(tmp_path: Path) -> None:
    for k, wnid in enumerate(["n01", "n02"]):
        _write_pngs(tmp_path / "train" / wnid, 2, size=(40, 30), start=k)
        _write_pngs(tmp_path / "val" / wnid, 1, size=(40, 30), start=10 + k)
    dm = ImageNetDataModule(root=str(tmp_path), size=16, batch_size=4, num_workers=0)
    assert dm.num_classes == 2 and dm.two_views
    dm.setup("fit")
    _check_batch(_delivered(dm, dm.train_dataloader()), (3, 16, 16), 4, two_views=True, num_classes=2)
    _check_batch(_delivered(dm, dm.val_dataloader()), (3, 16, 16), 2, two_views=True, num_classes=2)
    single = ImageNetDataModule(root=str(tmp_path), size=16, batch_size=4, two_views=False, num_workers=0)
    _check_batch(next(iter(single.train_dataloader())), (3, 16, 16), 4, num_classes=2)
    _check_batch(next(iter(single.val_dataloader())), (3, 16, 16), 2, num_classes=2)


def test_imagenet_views_are_always_blurred_as_in_the_paper() -> None:
    from torchvision.transforms import v2

    def blur_ops(t: v2.Compose) -> tuple[list, list]:
        direct = [op for op in t.transforms if isinstance(op, v2.GaussianBlur)]
        wrapped = [op for op in t.transforms if isinstance(op, v2.RandomApply)
                   and any(isinstance(o, v2.GaussianBlur) for o in op.transforms)]  # fmt: skip
        return direct, wrapped

    in_workers = ImageNetDataModule(root="unused", size=224, photometric_on_device=False)
    direct, wrapped = blur_ops(in_workers.view_transform())  # on the device: tests/unit/test_photometric.py
    assert len(direct) == 1 and not wrapped and tuple(direct[0].kernel_size) == (23, 23)
    direct, wrapped = blur_ops(two_view_transform(224))  # SimCLR's p=0.5 stays the default elsewhere
    assert not direct and len(wrapped) == 1 and wrapped[0].p == 0.5


# ---------------------------------------------------------------------------------- resumable training order
def test_augmentations_depend_on_seed_epoch_and_sample_only() -> None:
    dm = SyntheticDataModule(num_samples=32, batch_size=8, two_views=True)
    first = next(iter(dm.train_dataloader()))
    torch.manual_seed(123)  # whatever the global RNG holds, the same batch comes out
    torch.rand(1000)
    again = next(iter(dm.train_dataloader()))
    assert torch.equal(first["image"], again["image"]) and torch.equal(
        first["image_view2"], again["image_view2"]
    )
    assert not torch.equal(first["image"], first["image_view2"])  # the two views are still two draws
    dm.trainer = None
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))["image"], first["image"])  # a new epoch, a new order


def test_ranks_split_each_epoch_and_a_resume_skips_trained_batches() -> None:
    dataset = list(range(40))
    keys = [list(ResumableSampler(dataset, 2, r, seed=0)) for r in (0, 1)]
    assert sorted(i for part in keys for i, _ in part) == dataset  # disjoint shares covering the epoch
    sampler = ResumableSampler(dataset, 1, 0, seed=0)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.resume(3, 8)
    assert list(sampler) == full[8:]  # the rest of epoch 3, with the same augmentation seeds
    assert list(sampler) == full  # only the first iteration after a resume is partial


# ------------------------------------------------------------------------------------- text corpora
def test_vader_lexicon_ships_in_its_wheel_and_splits_by_class() -> None:
    from lzn_lightning.data import VaderSentimentDataModule

    dm = VaderSentimentDataModule(batch_size=32)
    dm.setup("fit")
    sizes = [len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)]
    assert sum(sizes) == 7370 and sizes[2] == 1474  # entries within the default alphabet, 20% test
    batch = next(iter(dm.train_dataloader()))
    assert (
        batch["text"].shape == (32, 24)
        and batch["text"].dtype == torch.long
        and set(batch) == {"text", "label"}
    )
    train = dm.train_dataset
    assert {0, 1} == set(train.labels.tolist()) and abs(
        train.labels.float().mean().item() - 3280 / 7370
    ) < 0.01
    positive = dict(zip(train.texts, train.labels.tolist(), strict=True))
    assert positive.get("good", positive.get("love")) == 1  # a common positive word in the training split
    assert "vader" in dm.describe() and "train=" in dm.describe() and "no images" in dm.describe()


def test_vader_without_its_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from lzn_lightning.data import vader

    def missing(name: str) -> None:
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(vader.resources, "files", missing)
    with pytest.raises(DatasetNotFoundError, match="make install"):
        vader.load_vader_lexicon()


def _loader(n: int, batch_size: int, progress: tuple[int, bool] = (0, False)) -> ResumableDataLoader:
    dataset = list(range(n))
    return ResumableDataLoader(dataset, batch_size, ResumableSampler(dataset, 1, 0, seed=0), lambda: progress)


def _epoch(sampler: ResumableSampler, epoch: int) -> list[tuple[int, int]]:
    fresh = ResumableSampler(list(range(len(sampler))), 1, 0, seed=0)
    fresh.set_epoch(epoch)
    return list(fresh)


@pytest.mark.parametrize("saved", [{"epoch_done": 1}, {}])  # {}: a checkpoint written before epoch_done
def test_a_checkpoint_after_an_epochs_last_full_batch_resumes_with_the_next_epoch(saved: dict) -> None:
    # 44 items in batches of 8: 5 batches an epoch, 4 items left over (drop_last), as every real split has
    loader = _loader(44, 8)
    loader.load_state_dict({"epoch": 0, "batches_done": 5, **saved})
    batches = list(loader)
    assert len(batches) == 5  # a whole epoch, not the 4 left-over items (no batch at all)
    assert loader.sampler.epoch == 1
    assert [int(i) for b in batches for i in b] == [i for i, _ in _epoch(loader.sampler, 1)[:40]]


def test_a_mid_epoch_checkpoint_resumes_after_its_trained_batches() -> None:
    loader = _loader(44, 8)
    loader.load_state_dict({"epoch": 2, "batches_done": 3, "epoch_done": 0})
    rest = [int(i) for b in loader for i in b]
    assert rest == [i for i, _ in _epoch(loader.sampler, 2)[24:40]]  # batches 4 and 5 of epoch 2


def test_the_loader_saves_whether_its_last_trained_batch_ended_the_epoch() -> None:
    assert _loader(44, 8, (5, True)).state_dict() == {"epoch": 0, "batches_done": 5, "epoch_done": 1}
    assert _loader(44, 8, (2, False)).state_dict() == {"epoch": 0, "batches_done": 2, "epoch_done": 0}


def test_after_a_resume_the_data_epochs_follow_on_whatever_the_trainers_epoch_count() -> None:
    """A run stopped by max_steps mid-epoch ends the trainer's epoch there; extended, the trainer counts a new
    epoch while the data must finish the interrupted one, then go on with the next."""
    sampler = ResumableSampler(list(range(40)), 1, 0, seed=0)
    sampler.resume(1, 16)
    sampler.set_epoch(2)  # the trainer's count after its (cut-short) epoch 1
    assert list(sampler) == _epoch(sampler, 1)[16:]
    sampler.set_epoch(3)
    assert list(sampler) == _epoch(sampler, 2)
    plain = ResumableSampler(list(range(40)), 1, 0, seed=0)
    plain.set_epoch(3)  # without a resume the trainer's epoch is the data's
    assert list(plain) == _epoch(plain, 3)
