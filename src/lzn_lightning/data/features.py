"""Frozen-encoder features of an image data module, computed once and cached on disk: the fast linear probe.

:class:`CachedFeatures` wraps any image data module. The first time a probe
(:class:`~lzn_lightning.linear_probe.LinearProbeModule`) asks for data, every split is encoded once, from the
*clean* images (the evaluation transform on every split: ImageNet's Resize(256) + CenterCrop(224), no
augmentation), and written to ``cache_dir/<key>.pt``; later runs with the same key read the file. The key is a
SHA-256 of the encoder's weights, the data module's class, the split's contents (its files or image tensor,
and labels), its size and the evaluation transform, so another checkpoint, dataset or crop gets other files.
Under DDP each rank encodes every ``world_size``-th image, rank 0 joins the shards, and every rank memory-maps
the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from lzn_lightning.data.base import LZNDataModule

# Why a version in the key: a change in what the file holds must not read files written before it.
CACHE_VERSION = 1
# Arguments of the image data module that do not change its clean images (loading, batching, training views);
# the key reads them only for a dataset whose contents it cannot fingerprint (see dataset_fingerprint).
_NOT_IN_KEY = {
    "batch_size", "eval_batch_size", "num_workers", "two_views", "eval_two_views", "eval_drop_last",
    "eval_shuffle", "photometric_on_device", "skip_bad_files",
}  # fmt: skip


def dataset_fingerprint(dataset: Dataset) -> str | None:
    """SHA-256 of what a split holds: its files' absolute paths (image folders, ImageNet) or its image tensor
    (in-memory data), with its labels; None for a dataset of another kind."""
    files = getattr(dataset, "files", None)
    images = getattr(dataset, "images", None)
    if files is None and not isinstance(images, Tensor):
        return None
    digest = hashlib.sha256()
    if files is not None:
        digest.update("\n".join(os.path.abspath(f) for f in files).encode())
    if isinstance(images, Tensor):
        digest.update(f"{tuple(images.shape)}:{images.dtype};".encode())
        digest.update(images.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, Tensor):
        digest.update(labels.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureDataset(Dataset):
    """Precomputed features and labels: items ``{"features": [D], "label": []}``.

    Args:
        features: [N, D] float features.
        labels: [N] int64 labels.
    """

    def __init__(self, features: Tensor, labels: Tensor) -> None:
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} features but {len(labels)} labels")
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"features": self.features[index], "label": self.labels[index]}


class CachedFeatures(LZNDataModule):
    """The frozen encoder's features of ``images``' clean splits, cached on disk, as training data of a probe.

    The trainer's module must be a :class:`~lzn_lightning.linear_probe.LinearProbeModule` (it provides the
    encoder and its key). Features are computed when the loaders are first asked for, after the module is on
    its device.

    Args:
        images: The image data module (e.g. ``ImageNetDataModule``); its splits are read with its evaluation
            transform, one view, in stored order.
        cache_dir: Folder of the cached features (``<key>.pt``, one per split).
        batch_size: Global training batch of features, summed over all devices (the paper's 8,192).
        eval_batch_size: Global batch of the val/test loaders (None: ``batch_size``).
        encode_batch_size: Images per forward pass while encoding, per device.
        num_workers: Loader workers of the *image* loader while encoding (the feature loaders use none).
        seed: Seed of the evaluation order (see :class:`~lzn_lightning.data.LZNDataModule`).
    """

    name = "cached_features"

    def __init__(
        self,
        images: LZNDataModule,
        cache_dir: str = "runs/feature_cache",
        batch_size: int = 8192,
        eval_batch_size: int | None = None,
        encode_batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=0, seed=seed)
        if encode_batch_size < 1:
            raise ValueError(f"encode_batch_size must be >= 1, got {encode_batch_size}")
        self.images = images
        # Checkpoints hold plain data only (they load with weights_only=True): the image module by its class
        # (its arguments are in the run's config.yaml).
        self.hparams["images"] = _class_path(images)
        self.cache_dir = Path(cache_dir).expanduser()
        self.encode_batch_size = encode_batch_size
        self.encode_workers = num_workers
        #: The cache file of each split after the features are ready (train, val, test).
        self.cache_files: dict[str, Path] = {}
        #: Splits whose features were computed (not read from the cache) by this data module.
        self.computed: list[str] = []

    @property
    def num_classes(self) -> int | None:
        return self.images.num_classes

    def setup(self, stage: str | None = None) -> None:
        """Check the batch sizes only: the features need the module on its device, which Lightning moves
        there after this hook, so they are computed when a loader is first asked for."""
        if stage in (None, "fit"):
            _ = self.per_device_batch_size
        _ = self.per_device_eval_batch_size

    def _ready(self, stage: str) -> None:
        if self.train_dataset is None:
            self.train_dataset, self.val_dataset, self.test_dataset = self.build_datasets()

    def build_datasets(self) -> tuple[FeatureDataset, FeatureDataset, FeatureDataset]:
        """Encode (or read from the cache) the three clean splits of ``images``."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is None or not hasattr(module, "features") or not hasattr(module, "encoder_key"):
            raise ValueError(
                "CachedFeatures serves the features of a LinearProbeModule's encoder: use it as the data of "
                "a model with class_path LinearProbeModule (recipes/imagenet_linear_cached.yaml)"
            )
        if self.images.num_classes is None:
            raise ValueError(f"{self.images.name}: a linear probe needs labelled data, but it has no labels")
        splits = dict(zip(("train", "val", "test"), self.images.clean_datasets(), strict=True))
        done: dict[int, FeatureDataset] = {}  # ImageNet's val is also its test split: encode it once
        out = []
        for split, dataset in splits.items():
            if id(dataset) not in done:
                done[id(dataset)] = self._features(module, split, dataset)
            out.append(done[id(dataset)])
        return out[0], out[1], out[2]

    def cache_key(self, encoder_key: str, split: str, dataset: Dataset) -> str:
        """The file name stem of a split's features: SHA-256 of everything they depend on (the encoder's
        weights, the data module's class, the split's contents, size and evaluation transform)."""
        contents: Any = dataset_fingerprint(dataset)
        if contents is None:  # arguments as given (LightningCLI can add its own "_"-keys to hparams)
            hparams = dict(self.images.hparams)
            contents = {k: v for k, v in hparams.items() if k not in _NOT_IN_KEY and not k.startswith("_")}
        what = {
            "version": CACHE_VERSION,
            "encoder": encoder_key,
            "data": _class_path(self.images),
            "contents": contents,
            "split": split,
            "size": len(dataset),  # type: ignore[arg-type]
            "transform": repr(self.images.eval_transform()),
        }
        text = json.dumps(what, sort_keys=True, default=repr)
        return f"{split}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    def _features(self, module: Any, split: str, dataset: Dataset) -> FeatureDataset:
        strategy = self.trainer.strategy
        path = self.cache_dir / f"{self.cache_key(module.encoder_key, split, dataset)}.pt"
        self.cache_files[split] = path
        # Rank 0 decides, so every rank takes the same branch (and meets the same barriers).
        if not strategy.broadcast(path.is_file(), src=0):
            rank, world = self.global_rank, self.world_size
            shard = path.with_suffix(f".part{rank}of{world}")
            part = Subset(dataset, range(rank, len(dataset), world))  # type: ignore[arg-type]
            _save(self._encode(module, part, f"{split} features"), shard)
            strategy.barrier("cached_features_shards")
            if rank == 0:
                shards = [path.with_suffix(f".part{r}of{world}") for r in range(world)]
                _save(_interleave([torch.load(s, weights_only=True) for s in shards]), path)
                for s in shards:
                    s.unlink()
            strategy.barrier("cached_features_joined")
            self.computed.append(split)
        how = "computed and cached in" if self.computed[-1:] == [split] else "read from the cache"
        rank_zero_info(f"CachedFeatures: {split} features {how} {path}")
        saved = torch.load(path, weights_only=True, mmap=True)
        return FeatureDataset(saved["features"], saved["labels"])

    @torch.no_grad()
    def _encode(self, module: Any, dataset: Dataset, what: str) -> dict[str, Tensor]:
        loader = DataLoader(dataset, batch_size=self.encode_batch_size, num_workers=self.encode_workers)
        feats, labels = [], []
        show = self.global_rank == 0 and len(loader) > 1
        for batch in tqdm(loader, desc=what, disable=not show, leave=False):
            batch = self.images.on_after_batch_transfer(batch, 0)
            feats.append(module.features(batch["image"].to(module.device)).cpu())
            labels.append(batch["label"])
        return {"features": torch.cat(feats), "labels": torch.cat(labels)}


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _interleave(shards: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Undo the rank-strided split: shard r holds items r, r + W, r + 2W, ... of the dataset."""
    world = len(shards)
    total = sum(len(s["labels"]) for s in shards)
    out: dict[str, Tensor] = {}
    for key in ("features", "labels"):
        first = shards[0][key]
        joined = first.new_empty((total, *first.shape[1:]))
        for r, s in enumerate(shards):
            joined[r::world] = s[key]
        out[key] = joined
    return out


def _save(obj: dict[str, Tensor], path: Path) -> None:
    """Write atomically (a temporary file, then a rename): an interrupted run never leaves half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
