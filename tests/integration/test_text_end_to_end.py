"""A model without images, end to end: text <-> label trained through Lightning, then text generated from the
label zones and texts classified through them, by the functional layer (crossmodal.translate / retrieve) and
by the model's API (``model.classify`` / ``model.generate`` on strings, with a bank of training texts)."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lzn_lightning import LZNLightningModule
from lzn_lightning.callbacks import AnchorBank
from lzn_lightning.cli import main
from lzn_lightning.crossmodal import retrieve, translate
from lzn_lightning.data import SyntheticDataModule

K = 3


@pytest.mark.slow  # ~15 s of training; the text CLI and modality tests stay in the fast suite
def test_text_label_model_trains_generates_and_classifies(tmp_path: Path) -> None:
    pl.seed_everything(0)
    text = {"class_path": "TextModality", "init_args": {
        "max_len": 12, "width": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1,
        "encoder_lr": 3e-3, "decoder_lr": 3e-3}}  # fmt: skip
    model = LZNLightningModule(
        modalities={
            "text": text,
            "label": {"class_path": "LabelModality", "init_args": {"num_classes": K, "lr": 1e-2}},
        },
        latent_dim=8,
        latent_from="text",
        flow={"steps": 4},
        align=[{"source": "text", "target": "label", "steps": 10, "form": "log"}],
        warmup_steps=5,
        ema_decay=None,
    )
    assert model.decode_fields == ["text"]  # the default: latent_from's decoder
    data = SyntheticDataModule(
        num_samples=48, num_test_samples=12, num_classes=K, batch_size=12, text_max_len=12
    )
    trainer = pl.Trainer(
        max_steps=300, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path,
        callbacks=[AnchorBank(num=12)],
    )  # fmt: skip
    trainer.fit(model, data)

    data.setup("test")
    items = [data.test_dataset[i] for i in range(len(data.test_dataset))]
    tokens = torch.stack([it["text"] for it in items])  # captions "pattern <k>"
    labels = torch.stack([it["label"] for it in items])
    assert (retrieve(model, tokens, "text", "label") == labels).float().mean() >= 0.9
    written = model.modalities["text"].detokenize(translate(model, torch.arange(K), "label", "text"))
    assert written == [f"pattern {k}" for k in range(K)]

    texts = model.modalities["text"].detokenize(tokens)
    assert (model.classify(texts) == labels).float().mean() >= 0.9  # strings, through the bank of texts
    asked = torch.arange(K)
    assert model.generate(condition={"label": asked}, target="text", noise_scale=0.0) == written

    # the CLI writes texts by label from the checkpoint (zone centres, greedy), as generate did above
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    out = tmp_path / "texts.csv"
    ckpt = str(tmp_path / "m.ckpt")
    main(["sample", "--ckpt_path", ckpt, "--num", "3", "--labels", "0,1,2", "--noise_scale", "0",
          "--out", str(out)])  # fmt: skip
    rows = list(csv.reader(out.open()))
    assert rows == [["index", "label", "text"]] + [[str(k), str(k), f"pattern {k}"] for k in range(K)]
