"""The module's ``seed`` (prior noise, RF times) and the datamodule's ``seed`` (splits) may differ in a logged
run: Lightning refuses to log two hparams of one name with different values, so the datamodule's stay out of
the logger but in the checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from tiny_lzn import tiny_data, tiny_model, tiny_trainer


def test_logged_fit_with_different_model_and_data_seeds(tmp_path: Path) -> None:
    model, data = tiny_model(seed=1), tiny_data(seed=0)
    trainer = tiny_trainer(
        tmp_path, steps=2, logger=CSVLogger(tmp_path, name="run"), enable_checkpointing=True
    )
    trainer.fit(model, data)  # raised "Error while merging hparams: the keys ['seed'] ..." before
    hparams = (tmp_path / "run" / "version_0" / "hparams.yaml").read_text()
    assert "seed: 1" in hparams and "seed: 0" not in hparams
    ckpt = torch.load(next((tmp_path / "run").rglob("*.ckpt")), weights_only=False)
    assert ckpt["datamodule_hyper_parameters"]["seed"] == 0
    assert ckpt["hyper_parameters"]["seed"] == 1


def _first_step_noise(model, trainer_seed: int) -> torch.Tensor:
    """The prior noise a fit's first step draws after ``seed_everything(trainer_seed)``."""
    pl.seed_everything(trainer_seed)
    model.on_train_batch_start(None, 0)
    return model.prior_noise(4, 1.0)


def test_noise_seed_follows_seed_everything_unless_set() -> None:
    model = tiny_model()  # seed None: the trainer's
    a, a_again, b = (_first_step_noise(model, s) for s in (1, 1, 2))
    assert torch.equal(a, a_again) and not torch.equal(a, b)
    fixed = tiny_model(seed=7)
    assert torch.equal(_first_step_noise(fixed, 1), _first_step_noise(fixed, 2))
    assert torch.equal(_first_step_noise(fixed, 7), _first_step_noise(model, 7))  # None == the trainer's seed
