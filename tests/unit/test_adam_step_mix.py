"""AdamStepMix: the optimiser's first moment split by loss term adds up to the optimiser's own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from tiny_lzn import logged_rows, tiny_data, tiny_model, tiny_trainer

from lzn_lightning.callbacks import AdamStepMix
from lzn_lightning.callbacks.adam_step_mix import BEFORE

ENC, DEC, ALIGN = "image.encoder", "image/decoder", "align/image->label"


def _rows(root: Path) -> list[dict[str, str]]:
    return logged_rows(root / "r" / "version_0")


def _fit(root: Path, callbacks: list, steps: int = 5, ckpt: Path | None = None, **model_kw):
    torch.manual_seed(0)
    model = tiny_model(seed=3, **model_kw)
    trainer = tiny_trainer(
        root, steps=steps, callbacks=callbacks, logger=CSVLogger(root, name="r"), log_every_n_steps=1
    )
    trainer.fit(model, tiny_data(), ckpt_path=ckpt)
    return model, trainer


def test_term_moments_add_up_to_adams_and_training_is_unchanged(tmp_path: Path) -> None:
    plain, _ = _fit(tmp_path / "plain", [])
    mix = AdamStepMix(log_every_n_steps=1)
    measured, _ = _fit(tmp_path / "mix", [mix])
    for p, q in zip(plain.parameters(), measured.parameters(), strict=True):
        assert torch.equal(p, q)  # measuring changed nothing in the run
    rows = [r for r in _rows(tmp_path / "mix") if r.get(f"train/adam_mix/{ENC}/moment_residual")]
    assert len(rows) == 5  # after each of the 5 steps
    assert not any(BEFORE in k for k in rows[0])  # a fresh optimiser: no earlier moment to account for
    for r in rows:
        assert "train/loss" in r  # on the row of the step it describes
        # The decomposition is exact up to float32 rounding; a missed clip factor or a skipped
        # bias correction would be off by far more than 1e-4.
        assert float(r[f"train/adam_mix/{ENC}/moment_residual"]) < 1e-4
        for kind in ("step_share", "grad_share"):
            shares = [float(r[f"train/adam_mix/{ENC}/{t}/{kind}"]) for t in (DEC, ALIGN)]
            assert sum(shares) == pytest.approx(1.0, abs=1e-4)
        assert float(r[f"train/adam_mix/image.decoder/{DEC}/grad_share"]) == pytest.approx(1.0, abs=1e-5)
        assert float(r[f"train/adam_mix/image.decoder/{ALIGN}/step_share"]) == 0.0  # never reaches it
        assert float(r[f"train/adam_mix/image.decoder/{DEC}/step_share"]) == pytest.approx(1.0, abs=1e-4)
        # The decoder group learns from its own loss alone: that term's gradient is the step's, as the module
        # logs it for the same step.
        assert float(r[f"train/adam_mix/image.decoder/{DEC}/grad_norm"]) == pytest.approx(
            float(r["train/health/grad_norm/image.decoder"]), rel=1e-4
        )
    # The decoder reaches the encoder only once its zero-initialised layers moved (from the third step on).
    assert float(rows[0][f"train/adam_mix/{ENC}/{DEC}/step_norm"]) == 0.0
    assert float(rows[-1][f"train/adam_mix/{ENC}/{DEC}/step_norm"]) > 0
    assert mix.last == pytest.approx({k: float(v) for k, v in rows[-1].items() if k in mix.last}, rel=1e-5)


def test_decoder_cut_off_makes_no_part_of_the_encoder_step(tmp_path: Path) -> None:
    _fit(tmp_path, [AdamStepMix(log_every_n_steps=2)], steps=4, decoder_trains_encoder=False)
    rows = [r for r in _rows(tmp_path) if r.get(f"train/adam_mix/{ENC}/moment_residual")]
    assert len(rows) == 2  # after steps 2 and 4
    for r in rows:
        assert float(r[f"train/adam_mix/{ENC}/{DEC}/step_share"]) == 0.0
        assert float(r[f"train/adam_mix/{ENC}/{ALIGN}/step_share"]) == pytest.approx(1.0, abs=1e-4)


def test_a_resumed_run_keeps_the_earlier_moment_as_its_own_term(tmp_path: Path) -> None:
    _, trainer = _fit(tmp_path / "first", [], steps=3)
    ckpt = tmp_path / "first.ckpt"
    trainer.save_checkpoint(ckpt)
    mix = AdamStepMix(log_every_n_steps=1)
    _fit(tmp_path / "resumed", [mix], steps=5, ckpt=ckpt)
    rows = [r for r in _rows(tmp_path / "resumed") if r.get(f"train/adam_mix/{ENC}/moment_residual")]
    assert len(rows) == 2  # steps 4 and 5
    for r in rows:
        assert float(r[f"train/adam_mix/{ENC}/moment_residual"]) < 1e-4
        shares = [float(r[f"train/adam_mix/{ENC}/{t}/step_share"]) for t in (DEC, ALIGN, BEFORE)]
        assert sum(shares) == pytest.approx(1.0, abs=1e-4)
        assert float(r[f"train/adam_mix/{ENC}/{BEFORE}/step_norm"]) > 0  # decays by beta1 a step, not gone


def test_bad_interval() -> None:
    with pytest.raises(ValueError, match="log_every_n_steps must be >= 1"):
        AdamStepMix(log_every_n_steps=0)


def test_benchmark_table_reads_the_logged_shares(tmp_path: Path) -> None:
    from adam_mix_table import adam_mix_table

    _fit(tmp_path, [AdamStepMix(log_every_n_steps=2)], steps=4)
    metrics = tmp_path / "r" / "version_0" / "metrics.csv"
    table = adam_mix_table(metrics, ENC, DEC, ALIGN).splitlines()
    assert [line.split(" | ")[0] for line in table[2:4]] == ["| 2", "| 4"]  # one row per logged step
    assert table[-1].startswith("Largest moment_residual: ")
    with pytest.raises(SystemExit, match="logs no term 'text/decoder'"):
        adam_mix_table(metrics, ENC, "text/decoder", ALIGN)
    with pytest.raises(SystemExit, match="no AdamStepMix values for group 'nope'"):
        adam_mix_table(metrics, "nope", DEC, ALIGN)
