"""The real images of a generation metric, read without augmentation, and their features cached on disk.

The paper's metrics compare generated images with the **training** images as the evaluation transform gives
them (no random flip: the reference's real statistics use the eval transform). Their features cost as much as
the generated images' features (50,000 Inception passes for CIFAR-10), and they are the same for every
checkpoint of a recipe, so :class:`RealFeatureCache` keeps them in one ``.npz`` file per key:

* the data set (data module class, root, image shape, split size, and a fingerprint of the first images
  read, so that other files under the same root are not taken for the cached ones),
* the split, the number of images and the seed of the subset,
* the feature network (its ``cache_id`` attribute when it has one, else its class and a hash of its weights).

A changed key is another file; a file whose stored key differs from the one asked for is ignored.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from lzn_lightning.callbacks.base import SPLITS


def default_cache_dir() -> Path:
    """``$LZN_CACHE_DIR/real_features``, else ``$XDG_CACHE_HOME/lzn_lightning/real_features`` (default
    ``~/.cache``)."""
    if os.environ.get("LZN_CACHE_DIR"):
        return Path(os.environ["LZN_CACHE_DIR"]).expanduser() / "real_features"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "lzn_lightning" / "real_features"


def network_id(net: nn.Module) -> str:
    """What identifies a feature network's outputs: its ``cache_id`` when it has one, else its class and a
    hash of its weights (two stand-ins of one class with other weights are different networks)."""
    given = getattr(net, "cache_id", None)
    if given:
        return str(given)
    h = hashlib.sha1()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return f"{type(net).__module__}.{type(net).__qualname__}:{h.hexdigest()[:16]}"


def clean_split(datamodule: Any, split: str) -> Dataset:
    """The data module's ``split`` dataset as its evaluation transform gives it (no augmentation, one
    view)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dataset = getattr(datamodule, f"{split}_dataset", None)
    if dataset is None and hasattr(datamodule, "setup"):
        datamodule.setup(None)
        dataset = getattr(datamodule, f"{split}_dataset", None)
    if dataset is None:
        raise ValueError(f"the data module has no {split!r} dataset to compare generated images with")
    if hasattr(dataset, "transform") and hasattr(
        dataset, "two_views"
    ):  # a ViewDataset: drop its augmentation
        dataset = copy.copy(dataset)
        dataset.transform = datamodule.eval_transform() if hasattr(datamodule, "eval_transform") else None
        dataset.two_views = False
    return dataset


def subset_indices(n: int, num: int, seed: int) -> list[int]:
    """All ``n`` items in order when ``num >= n``, else a ``seed``-ed random subset of ``num``."""
    if num >= n:
        return list(range(n))
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:num].tolist()


def dataset_key(
    datamodule: Any, dataset: Dataset, indices: list[int], split: str, seed: int, image_key: str
) -> dict:
    """The data part of a cache key (see the module docstring)."""
    first = [dataset[i][image_key] for i in indices[:4]]
    fingerprint = hashlib.sha1(b"".join(torch.as_tensor(x).float().numpy().tobytes() for x in first))
    return {
        "datamodule": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        "root": str(getattr(datamodule, "root", "")),
        "image_shape": list(getattr(datamodule, "image_shape", None) or ()),
        "split": split,
        "split_size": len(dataset),  # type: ignore[arg-type]
        "count": len(indices),
        "subset_seed": seed if len(indices) < len(dataset) else None,  # type: ignore[arg-type]
        "fingerprint": fingerprint.hexdigest()[:16],
    }


def chunk_loader(dataset: Dataset, indices: list[int], batch_size: int, num_workers: int) -> DataLoader:
    """Batches of ``batch_size`` of ``dataset[indices]``, in order (``num_workers`` decode in parallel)."""
    return DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers)


class RealFeatureCache:
    """Real-image features on disk, one ``.npz`` per key (see the module docstring).

    Args:
        folder: Where the files go (None: :func:`default_cache_dir`).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()

    def path(self, key: dict) -> Path:
        """The file of ``key``: a readable prefix (data module, split, count) and a hash of the whole key."""
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        name = key["datamodule"].rsplit(".", 1)[-1]
        return self.folder / f"{name}-{key['split']}-{key['count']}-{digest}.npz"

    def load(self, key: dict) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key`` (None when there is no file, or its stored key differs)."""
        path = self.path(key)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["__key__"])) != json.loads(json.dumps(key)):
                return None
            return {k: f[k] for k in f.files if k != "__key__"}

    def save(self, key: dict, arrays: dict[str, np.ndarray | Tensor]) -> Path:
        """Write ``arrays`` under ``key`` (atomically: a half-written file is never read)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        data = {k: np.asarray(v.cpu() if isinstance(v, Tensor) else v) for k, v in arrays.items()}
        np.savez(tmp, __key__=np.asarray(json.dumps(key, sort_keys=True)), **data)
        tmp.replace(path)
        return path


def dataset_tensors_of(dataset: Dataset, model: Any, indices: list[int]) -> tuple[Tensor, Tensor | None]:
    """Images [N, C, H, W] and labels [N] (or None) of ``dataset[indices]``, in the model's field names."""
    from lzn_lightning.callbacks.base import dataset_tensors

    routing = model.routing
    image_key = routing.source_field() if model.latent_from else routing.decoder_field()
    label_key = routing.label_field(image_key, required=False) or "label"
    return dataset_tensors(dataset, image_key, label_key, indices)
