"""FashionMNISTDataModule on IDX files written by the test (no Debian package, no download)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lzn_lightning.data import DatasetNotFoundError, FashionMNISTDataModule
from lzn_lightning.data import fashion_mnist as fm

SIZES = {"train": 60, "t10k": 20}  # 6 and 2 items per class


def _idx(array: np.ndarray) -> bytes:
    """IDX bytes of a uint8 array: magic 0x0000 08 <ndim>, big-endian int32 sizes, then the data."""
    return (
        struct.pack(">HBB", 0, 0x08, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


def _write_release(folder: Path, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """The four files of a tiny Fashion-MNIST; returns the arrays written, by file stem."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in SIZES.items():
        written[f"{split}-images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        written[f"{split}-labels"] = np.repeat(np.arange(10, dtype=np.uint8), n // 10)
    for stem, array in written.items():
        name = f"{stem}-idx{3 if 'images' in stem else 1}-ubyte"
        data = _idx(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return written


@pytest.fixture
def system_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """A gzipped release where Debian's package puts it (redirected into tmp_path)."""
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(fm, "SYSTEM_DIR", system)
    monkeypatch.delenv("LZN_FASHION_MNIST_DIR", raising=False)
    return _write_release(system)


def test_reads_the_system_copy_into_torchvisions_layout(tmp_path: Path, system_copy: dict) -> None:
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), batch_size=8, download=False)
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 10
    dm.setup("fit")
    assert sorted(p.name for p in dm.raw_folder.iterdir()) == sorted(fm.FILES)
    train, test = dm.train_dataset, dm.test_dataset
    assert len(train) == 60 and len(test) == 20 and dm.val_dataset is test  # val_fraction 0: test validates
    assert train.images.dtype == torch.uint8  # kept uint8, scaled per item
    item = train[5]
    expected = torch.from_numpy(system_copy["train-images"][5].astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(item["image"][0], expected)
    assert int(item["label"]) == int(system_copy["train-labels"][5])
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 1, 28, 28) and batch["label"].shape == (8,)


def test_plain_files_in_root_pad_and_two_views(tmp_path: Path, system_copy: dict) -> None:
    root = tmp_path / "mine"
    mine = _write_release(root, gz=False, seed=1)  # preferred over the system copy
    dm = FashionMNISTDataModule(root=str(root), batch_size=4, pad_to_32=True, two_views=True, download=False)
    assert dm.image_shape == (1, 32, 32)
    dm.setup("fit")
    images = dm.test_dataset.images
    assert images.shape == (20, 1, 32, 32)
    assert torch.equal(images[:, 0, 2:30, 2:30], torch.from_numpy(mine["t10k-images"]))
    assert torch.all(images[:, :, :2] == 0) and torch.all(images[:, :, :, -2:] == 0)  # background
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == batch["image_view2"].shape == (4, 1, 32, 32)
    assert not torch.equal(batch["image"], batch["image_view2"])  # two independent augmentations


def test_environment_folder_is_a_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nothing-here")
    _write_release(tmp_path / "elsewhere")
    monkeypatch.setenv("LZN_FASHION_MNIST_DIR", str(tmp_path / "elsewhere"))
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), download=False)
    dm.setup("fit")
    assert len(dm.train_dataset) == 60


def test_validation_split_is_stratified_and_disjoint(tmp_path: Path, system_copy: dict) -> None:
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), val_fraction=1 / 6, download=False)
    dm.setup("fit")
    train, val = dm.train_dataset, dm.val_dataset
    assert len(train) == 50 and len(val) == 10
    assert sorted(val.labels.tolist()) == list(range(10))  # one per class
    pairs = {tuple(x.flatten().tolist()) for x in train.images} & {
        tuple(x.flatten().tolist()) for x in val.images
    }
    assert not pairs


def test_a_resumed_loader_continues_with_the_next_batch(tmp_path: Path, system_copy: dict) -> None:
    def loader():
        dm = FashionMNISTDataModule(root=str(tmp_path / "data"), batch_size=8, two_views=True, download=False)
        dm.setup("fit")
        return dm.train_dataloader()

    uninterrupted = list(loader())
    resumed = loader()
    resumed.load_state_dict({"epoch": 0, "batches_done": 3, "epoch_done": 0})
    rest = list(resumed)
    assert len(rest) == len(uninterrupted) - 3
    for a, b in zip(rest, uninterrupted[3:], strict=True):  # same items, same augmentation draws
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["image_view2"], b["image_view2"])


def test_missing_files_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nothing-here")
    monkeypatch.delenv("LZN_FASHION_MNIST_DIR", raising=False)
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), download=False)
    with pytest.raises(DatasetNotFoundError, match="apt install dataset-fashion-mnist") as err:
        dm.setup("fit")
    assert "\n" not in str(err.value) and "download is off" in str(err.value)


def test_an_offline_download_says_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nothing-here")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), download=True)
    with pytest.raises(DatasetNotFoundError, match=r"download failed \(OSError\).*apt install"):
        dm.prepare_data()


def test_a_truncated_file_is_reported(tmp_path: Path, system_copy: dict) -> None:
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), download=False)
    dm.prepare_data()
    path = dm.raw_folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetNotFoundError, match=r"unreadable.*delete that folder"):
        dm.setup("fit")


def test_two_processes_filling_one_root_both_succeed(
    tmp_path: Path, system_copy: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two benchmarks started at once on one root: the second fills the folder while the first is mid-copy
    # (here: from inside the first's copy, deterministically). A shared temporary name made the first fail.
    root = str(tmp_path / "data")
    copy, nested = fm.shutil.copyfileobj, []

    def copy_with_a_second_process(src, dst, *args):
        if not nested:
            nested.append(True)
            FashionMNISTDataModule(root=root, download=False).prepare_data()
        return copy(src, dst, *args)

    monkeypatch.setattr(fm.shutil, "copyfileobj", copy_with_a_second_process)
    dm = FashionMNISTDataModule(root=root, batch_size=8, download=False)
    dm.setup("fit")
    assert sorted(p.name for p in dm.raw_folder.iterdir()) == sorted(fm.FILES)  # no temporary left behind
    expected = torch.from_numpy(system_copy["train-images"][0].astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(dm.train_dataset[0]["image"][0], expected)
