"""LossGradientMix: each loss term's gradient per parameter group, on the step's own batch and noise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from tiny_lzn import logged_rows, tiny_data, tiny_model, tiny_trainer

from lzn_lightning.callbacks import LossGradientMix

ENC, DEC, ALIGN = "image.encoder", "image/decoder", "align/image->label"


def _fit(root: Path, callbacks: list, **model_kw) -> tuple[torch.nn.Module, list[dict[str, str]]]:
    torch.manual_seed(0)
    model = tiny_model(seed=3, **model_kw)
    trainer = tiny_trainer(
        root, steps=3, callbacks=callbacks, logger=CSVLogger(root, name="r"), log_every_n_steps=1
    )
    trainer.fit(model, tiny_data())
    return model, logged_rows(root / "r" / "version_0")


def test_terms_add_up_to_the_logged_step_gradient_and_training_is_unchanged(tmp_path: Path) -> None:
    plain, _ = _fit(tmp_path / "plain", [])
    measured, rows = _fit(tmp_path / "mix", [LossGradientMix(every_n_steps=1)])
    for p, q in zip(plain.parameters(), measured.parameters(), strict=True):
        assert torch.equal(p, q)  # the extra forward/backward changed nothing in the run
    mixed = [r for r in rows if r.get(f"train/grad_mix/{ENC}/total_norm")]
    assert len(mixed) == 3  # before each of the 3 steps
    for r in mixed:  # the step logs its own summed gradient norm on the same row
        assert float(r[f"train/grad_mix/{ENC}/total_norm"]) == pytest.approx(
            float(r[f"train/health/grad_norm/{ENC}"]), rel=1e-4
        )
        shares = float(r[f"train/grad_mix/{ENC}/{DEC}/share"]) + float(
            r[f"train/grad_mix/{ENC}/{ALIGN}/share"]
        )
        assert shares == pytest.approx(1.0)
        assert -1.0 <= float(r[f"train/grad_mix/{ENC}/cos/{DEC}|{ALIGN}"]) <= 1.0
        assert float(r[f"train/grad_mix/image.decoder/{ALIGN}/norm"]) == 0.0  # alignment never reaches it
    # The default: the decoder trains the encoder too, once its zero-initialised layers have moved (the
    # latent reaches the loss through two of them, so from the third step on).
    assert float(mixed[0][f"train/grad_mix/{ENC}/{DEC}/norm"]) == 0.0
    assert float(mixed[-1][f"train/grad_mix/{ENC}/{DEC}/norm"]) > 0


def test_decoder_cut_off_leaves_the_encoder_to_the_alignment(tmp_path: Path) -> None:
    _, rows = _fit(tmp_path, [LossGradientMix(every_n_steps=2)], decoder_trains_encoder=False)
    mixed = [r for r in rows if r.get(f"train/grad_mix/{ENC}/total_norm")]
    assert len(mixed) == 2  # before steps 1 and 3
    for r in mixed:
        assert float(r[f"train/grad_mix/{ENC}/{DEC}/norm"]) == 0.0
        assert float(r[f"train/grad_mix/{ENC}/{ALIGN}/share"]) == 1.0
        assert float(r[f"train/grad_mix/{ENC}/{ALIGN}/norm"]) > 0


def test_bad_interval() -> None:
    with pytest.raises(ValueError, match="every_n_steps must be >= 1"):
        LossGradientMix(every_n_steps=0)
