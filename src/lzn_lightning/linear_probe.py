"""Linear evaluation of a trained LZN image encoder: a linear layer on its frozen pre-head features.

The paper's case-study-2 protocol (the authors' ``lzn/metric/linear_probing.py``, configured in
``configs/lzn1/case_study_2.py``; docs/guide.md#linear-evaluation-the-papers-695-top-1 cites the lines): the
ResNet-50's 2048-d pre-head features of the EMA weights, frozen; one ``nn.Linear``; AdamW, lr 3e-4, weight
decay 0, a constant rate; 300 epochs of global batches of 8,192 *augmented* training images, the features
computed anew for every batch; top-1 and top-5 on the centre-cropped validation set.

:class:`LinearProbeModule` is that protocol as a LightningModule (``lzn fit --config
recipes/imagenet_linear.yaml --model.encoder_ckpt <lzn checkpoint>``): Lightning gives it DDP (the
global batch is divided over the devices like every recipe's), exact resume and the progress bar. With
:class:`~lzn_lightning.data.CachedFeatures` as its data it trains on features computed once from centre crops
and cached on disk (the fast variant, ``recipes/imagenet_linear_cached.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

# The batch key of precomputed features (CachedFeatures); without it the probe encodes ``image_key``.
FEATURES_KEY = "features"


class PreHeadFeatures(nn.Module):
    """The pre-head feature of an LZN image modality's encoder (``trunk_features``: the ResNet-50's pooled
    2048-d output for the paper's network, the pooled deepest map for the tower), for images in [-1, 1].

    Args:
        modality: A built image modality with an encoder (``ImageModality``).
    """

    def __init__(self, modality: nn.Module) -> None:
        super().__init__()
        self.modality = modality

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] images in [-1, 1] -> [B, D] features."""
        return self.modality.trunk_features(x)

    @property
    def feature_dim(self) -> int:
        """D: the encoder's ``feature_dim`` (2048 for the ResNet-50), else measured on two noise images."""
        dim = getattr(self.modality.encoder, "feature_dim", None)
        if isinstance(dim, int):
            return dim
        with torch.no_grad():
            return int(self(self.modality.example_batch(2)).shape[1])


def load_frozen_encoder(path: str | Path, field: str | None = None) -> PreHeadFeatures:
    """The pre-head feature extractor of an LZN checkpoint's image encoder, with its EMA weights.

    Args:
        path: A checkpoint written by ``lzn fit`` or ``lzn import-reference``.
        field: The image field whose encoder is read (None: the encoded field, ``latent_from``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not an LZN checkpoint, or one without an image encoder.
    """
    from lzn_lightning.module import load_for_inference

    model = load_for_inference(path)
    try:
        name = model.routing.source_field(field)
    except ValueError as err:
        raise ValueError(f"{path}: {err}; the linear probe reads an image encoder's features") from None
    modality = model.modality(name)
    if not hasattr(modality, "trunk_features") or getattr(modality, "encoder", None) is None:
        kinds = ", ".join(f"{f}: {type(model.modality(f)).__name__}" for f in model.field_map)
        raise ValueError(
            f"{path} has no image encoder in field {name!r} ({kinds}); the linear probe reads the pre-head "
            "features of an ImageModality encoder (e.g. a checkpoint of recipes/imagenet_repr.yaml)"
        )
    if model.ema is not None and int(model.ema.num_updates) > 0:
        # The reference probes the EMA weights (case_study_2.py: apply_on_ema=True): copy them in for good.
        model.modalities.load_state_dict(model.ema.shadow.state_dict())
    return PreHeadFeatures(modality)


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes, dtypes, values): its features' key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 1-d: a 0-d tensor cannot be viewed as bytes
        digest.update(f"{name}:{tuple(tensor.shape)}:{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class LinearProbeModule(pl.LightningModule):
    """A linear classifier on the frozen pre-head features of a trained LZN image encoder.

    The encoder stays in eval mode and runs under ``no_grad``; only the linear layer trains. Training batches
    are images (``image_key``), encoded anew each step, so a data module with augmented views gives the
    paper's protocol; batches with a ``features`` entry (:class:`~lzn_lightning.data.CachedFeatures`) skip the
    encoder. Validation and test report top-1 and top-5 accuracy (torchmetrics, summed over devices);
    ``lzn test`` prints them with ``paper_top1`` beside top-1. Checkpoints hold the encoder and the head, so a
    test scores the head with the encoder it was trained on (a probe of another architecture is refused).

    Args:
        num_classes: Classes of the labels (1000 for ImageNet); checked against the data module.
        encoder_ckpt: The LZN checkpoint whose image encoder is probed (``lzn fit`` or ``lzn
            import-reference``).
        field: The image field of that checkpoint whose encoder is read (None: its encoded field).
        lr: AdamW learning rate (the paper's 3e-4), constant.
        weight_decay: AdamW weight decay (the paper's 0).
        top_k: The top-k accuracies reported (the paper's table: 1 and 5).
        image_key: Batch entry of the images (the data modules' ``image``; with two views, the first view).
        paper_top1: The paper's top-1 (%) printed beside the measured one by ``lzn test`` (None: not printed).
        encoder: An encoder module instead of ``encoder_ckpt`` (Python use; [B, C, H, W] -> [B, D]).
    """

    def __init__(
        self,
        num_classes: int,
        encoder_ckpt: str | None = None,
        field: str | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        top_k: Sequence[int] = (1, 5),
        image_key: str = "image",
        paper_top1: float | None = None,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if (encoder_ckpt is None) == (encoder is None):
            raise ValueError(
                "give the LZN checkpoint whose encoder is probed: --model.encoder_ckpt "
                "<path to last.ckpt or an imported paper checkpoint>"
                if encoder is None
                else "give encoder_ckpt or encoder, not both"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not top_k or min(top_k) < 1 or max(top_k) > num_classes:
            raise ValueError(f"top_k must be in 1..num_classes={num_classes}, got {list(top_k)}")
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = load_frozen_encoder(encoder_ckpt, field) if encoder is None else encoder
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.feature_dim = _feature_dim(self.encoder)
        self.head = nn.Linear(self.feature_dim, num_classes)
        self.num_classes = num_classes
        self.top_k = tuple(int(k) for k in top_k)
        self.image_key = image_key
        self.paper_top1 = paper_top1
        self.val_acc = nn.ModuleDict({f"top{k}": self._accuracy(k) for k in self.top_k})
        self.test_acc = nn.ModuleDict({f"top{k}": self._accuracy(k) for k in self.top_k})
        self._encoder_key: str | None = None

    def _accuracy(self, k: int) -> MulticlassAccuracy:
        return MulticlassAccuracy(num_classes=self.hparams["num_classes"], top_k=k, average="micro")

    # ------------------------------------------------------------------------------------------- encoder
    def train(self, mode: bool = True) -> LinearProbeModule:
        """Set the head's mode; the encoder stays in eval mode (it is frozen: no dropout, fixed norms)."""
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """The frozen encoder's features [B, D] (float32) of images [B, C, H, W] in [-1, 1]."""
        return self.encoder(images).float()

    @property
    def encoder_key(self) -> str:
        """SHA-256 of the frozen encoder's weights (the cache key of its features), computed once."""
        if self._encoder_key is None:
            self._encoder_key = weights_digest(self.encoder)
        return self._encoder_key

    def _inputs(self, batch: dict[str, Tensor]) -> Tensor:
        if FEATURES_KEY in batch:
            return batch[FEATURES_KEY]
        if self.image_key not in batch:
            raise ValueError(f"the batch has no {self.image_key!r} images (its keys: {sorted(batch)})")
        return self.features(batch[self.image_key])

    # -------------------------------------------------------------------------------------------- steps
    def setup(self, stage: str) -> None:
        """Check the data's classes against ``num_classes``."""
        # Why: Lightning warns about modules left in eval mode at the start of fit; the frozen encoder is
        # meant to be (its mode is kept by ``train``), so the warning would only alarm.
        warnings.filterwarnings(
            "ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training"
        )
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        classes = getattr(data, "num_classes", None)
        if classes is not None and classes != self.num_classes:
            raise ValueError(
                f"the data has {classes} classes but the probe has num_classes={self.num_classes}; set "
                f"--model.init_args.num_classes={classes}"
            )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits [B, num_classes] of a batch of images or features."""
        return self.head(self._inputs(batch))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy of the linear layer on frozen features."""
        logits = self(batch)
        loss = nn.functional.cross_entropy(logits, batch["label"])
        top1 = (logits.argmax(dim=1) == batch["label"]).float().mean()
        b = len(logits)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log("train/top1", top1, prog_bar=True, batch_size=b)
        return loss

    def _eval_step(self, batch: dict[str, Tensor], metrics: nn.ModuleDict, stage: str) -> None:
        logits = self(batch)
        loss = nn.functional.cross_entropy(logits, batch["label"])
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(logits))
        for name, metric in metrics.items():
            metric.update(logits, batch["label"])
            self.log(f"{stage}/{name}", metric, prog_bar=name == "top1", batch_size=len(logits))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Loss and top-k accuracy on the validation split (torchmetrics sums the counts over devices)."""
        self._eval_step(batch, self.val_acc, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Loss and top-k accuracy on the test split (ImageNet: the validation set)."""
        self._eval_step(batch, self.test_acc, "test")

    def on_test_epoch_end(self) -> None:
        """Print the accuracies, top-1 beside the paper's, and write them to ``probe_test.json`` in the log
        folder (rank 0)."""
        results = {name: float(metric.compute()) * 100 for name, metric in self.test_acc.items()}
        if self.trainer.is_global_zero:
            print(probe_report(results, self.paper_top1), file=sys.stderr)
            folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)
            folder.mkdir(parents=True, exist_ok=True)
            record = {"accuracy_percent": results, "paper_top1_percent": self.paper_top1}
            record["encoder_ckpt"] = self.hparams.get("encoder_ckpt")
            (folder / "probe_test.json").write_text(json.dumps(record, indent=1) + "\n")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW on the linear layer only, at a constant rate (the reference has no schedule)."""
        return torch.optim.AdamW(
            self.head.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )


def _feature_dim(encoder: nn.Module) -> int:
    dim = getattr(encoder, "feature_dim", None)
    if not isinstance(dim, int):
        raise ValueError("the encoder must give its feature size D (a `feature_dim` attribute) for the head")
    return dim


def probe_report(accuracy_percent: dict[str, float], paper_top1: float | None) -> str:
    """The lines ``lzn test`` prints: each top-k accuracy, the paper's top-1 beside the measured one."""
    lines = []
    for name, value in accuracy_percent.items():
        beside = f"   (paper: {paper_top1:.1f}%)" if name == "top1" and paper_top1 is not None else ""
        lines.append(f"linear probe {name.replace('top', 'top-')}: {value:.2f}%{beside}")
    return "\n".join(lines)


def is_probe_checkpoint(ckpt: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint dict is one of a :class:`LinearProbeModule`."""
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    return isinstance(hparams, dict) and "num_classes" in hparams and "image_key" in hparams


__all__ = [
    "FEATURES_KEY",
    "LinearProbeModule",
    "PreHeadFeatures",
    "is_probe_checkpoint",
    "load_frozen_encoder",
    "probe_report",
    "weights_digest",
]
