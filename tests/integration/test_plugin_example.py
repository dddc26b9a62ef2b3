"""The README's "add a data type in one file" example (tests/plugins/vector_modality.py) trains, classifies
and generates through the generic layer with no edit anywhere else, from Python and from the ``lzn``
commands (its modality reads and writes the files): a fourth data type after image, label and text."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from cli_run import run_lzn
from torch.utils.data import DataLoader

from lzn_lightning import LZNLightningModule
from lzn_lightning.crossmodal import retrieve, translate
from lzn_lightning.module import load_for_inference

K, FEATURES = 3, 16


def _clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(K, FEATURES, generator=g)  # [K, F] fixed class means
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    return means[labels] + 0.5 * torch.randn(n, FEATURES, generator=g), labels, means


def test_vector_modality_from_its_own_file_trains_classifies_and_generates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pl.seed_everything(0)
    model = LZNLightningModule(
        modalities={
            "vector": {"class_path": "vector_modality.VectorModality",
                       "init_args": {"features": FEATURES, "decoder": True}},
            "label": {"class_path": "LabelModality", "init_args": {"num_classes": K, "lr": 1e-2}},
        },
        latent_dim=8, latent_from="vector", flow={"steps": 4},
        align=[{"source": "vector", "target": "label", "steps": 10, "form": "log"}],
        warmup_steps=5, ema_decay=None,
    )  # fmt: skip
    x, y, means = _clusters(96, seed=1)
    loader = DataLoader([{"vector": x[i], "label": y[i]} for i in range(len(y))], batch_size=24, shuffle=True)
    trainer = pl.Trainer(
        max_steps=150, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, loader)

    test_x, test_y, _ = _clusters(30, seed=2)
    assert (retrieve(model, test_x, "vector", "label") == test_y).float().mean() >= 0.9
    written = translate(model, torch.arange(K), "label", "vector")  # [K, F] decoded from the class zones
    nearest_mean = torch.cdist(written, means).argmin(1)
    assert torch.equal(nearest_mean, torch.arange(K))

    ckpt, vectors = tmp_path / "vector.ckpt", tmp_path / "x.npy"
    trainer.save_checkpoint(ckpt)
    np.save(vectors, test_x.numpy())
    args = ["--ckpt_path", str(ckpt), "--context", "batch", "--batch_size", "30"]
    classify = ["classify", "--input", str(vectors), "--out", str(tmp_path / "p.csv"), *args]
    code, out, err = run_lzn(classify, capsys)
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    expected = load_for_inference(ckpt).classify(test_x, context="batch", batch_size=30)
    assert rows[0] == ["index", "label"] and [int(r[1]) for r in rows[1:]] == expected.tolist()
    assert (expected == test_y).float().mean() >= 0.9
    sample = ["sample", "--ckpt_path", str(ckpt), "--num", "3", "--labels", "0,1,2", "--noise_scale", "0"]
    code, out, err = run_lzn([*sample, "--out", str(tmp_path / "v.npy")], capsys)
    assert code == 0 and out.strip() == f"wrote 3 vectors to {tmp_path / 'v.npy'}", err
    sampled = torch.from_numpy(np.load(tmp_path / "v.npy"))  # [3, F], one vector per class zone's centre
    assert sampled.shape == (3, FEATURES)
    assert torch.equal(torch.cdist(sampled, means).argmin(1), torch.arange(K))
