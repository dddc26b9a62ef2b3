"""A tiny joint LZN model (8x8 grey images, 3 classes) trained for a few CPU steps, shared by the inference
and callback tests."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lzn_lightning import LZNLightningModule
from lzn_lightning.callbacks import AnchorBank
from lzn_lightning.data import SyntheticDataModule

NUM_CLASSES = 3
LATENT_DIM = 8
BANK = 16
IMAGE: dict[str, Any] = {
    "class_path": "ImageModality",
    "init_args": {
        "channels": 1, "size": 8,
        "encoder": {"name": "tower", "width": 8, "head_channels": 4, "head_hidden": 16},
        "decoder": {"name": "unet", "width": 8}, "num_classes": NUM_CLASSES, "sample_steps": 3,
    },
}  # fmt: skip
LABEL: dict[str, Any] = {
    "class_path": "LabelModality",
    "init_args": {"num_classes": NUM_CLASSES, "flow_steps": 8},
}


def tiny_model(**kw: Any) -> Any:
    """An untrained tiny joint model with the inference API."""
    args: dict[str, Any] = {
        "modalities": {"image": IMAGE, "label": LABEL},
        "latent_dim": LATENT_DIM,
        "flow": {"steps": 3},
        "align": [{"source": "image", "target": "label", "steps": 6}],
        "warmup_steps": 2,
        "ema_decay": 0.9,
    }
    return LZNLightningModule(**(args | kw))


def tiny_data(**kw: Any) -> SyntheticDataModule:
    """48 training / 24 validation / 24 test images of 3 well-separated classes."""
    args: dict[str, Any] = {
        "num_samples": 48, "num_test_samples": 24, "num_classes": NUM_CLASSES, "image_shape": (1, 8, 8),
        "batch_size": 16, "eval_batch_size": 24,
    }  # fmt: skip
    return SyntheticDataModule(**(args | kw))


def tiny_trainer(root: Path, steps: int, callbacks: list[pl.Callback] | None = None, **kw: Any) -> pl.Trainer:
    """A quiet CPU trainer."""
    args: dict[str, Any] = {
        "max_steps": steps, "accelerator": "cpu", "logger": False, "enable_progress_bar": False,
        "enable_model_summary": False, "enable_checkpointing": False, "default_root_dir": root,
        "limit_val_batches": 0, "num_sanity_val_steps": 0,
    }  # fmt: skip
    return pl.Trainer(callbacks=callbacks or [], **(args | kw))


def logged_rows(log_dir: Path) -> list[dict[str, str]]:
    """A CSVLogger's metrics.csv under ``log_dir``, one dict per step with every value logged at it (callbacks
    that write straight to the logger, e.g. LossGradientMix, get rows of their own at the same step)."""
    merged: dict[str, dict[str, str]] = {}
    with (log_dir / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            merged.setdefault(row["step"], {}).update({k: v for k, v in row.items() if v})
    return [merged[s] for s in sorted(merged, key=int)]


def train_tiny(root: Path, steps: int = 4) -> tuple[Any, Path]:
    """Train a tiny model with an anchor bank; returns (model, checkpoint path)."""
    pl.seed_everything(0)
    model = tiny_model()
    trainer = tiny_trainer(root, steps, [AnchorBank(num=BANK)])
    trainer.fit(model, tiny_data())
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return model, path


# ------------------------------------------------------------------------- images + captions + labels
TEXT = {"class_path": "TextModality", "init_args": {
    "max_len": 12, "width": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 1}}  # fmt: skip
CAPTIONED_IMAGE = {"class_path": "ImageModality", "init_args": {
    "encoder": {"name": "tower", "width": 8, "ch_mult": [1, 2], "head_hidden": 16},
    "decoder": {"name": "unet", "width": 8, "ch_mult": [1, 2]}, "sample_steps": 2}}  # fmt: skip
CAPTION_LABEL = {"class_path": "LabelModality", "init_args": {"num_classes": 3}}


def train_image_text_label(root: Path, callbacks: list[pl.Callback] | None = None) -> Path:
    """Two steps of a tiny image + text + label model that decodes both images and text, every field aligned
    with another (wiring tests; tests/integration/test_text_end_to_end.py shows such models learn). Returns
    the checkpoint path."""
    pl.seed_everything(0)
    model = LZNLightningModule(
        modalities={"image": CAPTIONED_IMAGE, "text": TEXT, "label": CAPTION_LABEL},
        latent_dim=8, latent_from="image", decode=["image", "text"], flow={"steps": 2},
        align=[{"source": "image", "target": "text", "steps": 3},
               {"source": "text", "target": "image", "steps": 3},
               {"source": "text", "target": "label", "steps": 3}],
        warmup_steps=1, ema_decay=None,
    )  # fmt: skip
    trainer = tiny_trainer(root, 2, callbacks)
    trainer.fit(model, SyntheticDataModule(num_samples=16, num_classes=3, batch_size=8, text_max_len=12))
    trainer.save_checkpoint(root / "m.ckpt")
    return root / "m.ckpt"
