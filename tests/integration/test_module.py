"""LZNLightningModule behaviours: skipped steps, frozen phases, EMA, resuming, pure-Python checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lzn_lightning import LZNLightningModule

IMAGE = {
    "class_path": "ImageModality",
    "init_args": {
        "encoder": {"name": "tower", "width": 8, "head_hidden": 16},
        "decoder": {"name": "unet", "width": 8},
    },
}
LABEL = {"class_path": "LabelModality", "init_args": {"num_classes": 3}}


def _model(**kw: object) -> LZNLightningModule:
    args: dict = {
        "modalities": {"image": IMAGE, "label": LABEL},
        "latent_dim": 8,
        "flow": {"steps": 3},
        "align": [{"source": "image", "target": "label", "steps": 5}],
        "warmup_steps": 2,
        "ema_decay": 0.9,
    }
    return LZNLightningModule(**(args | kw))


def _loader(n: int = 24, batch: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    labels = torch.arange(n) % 3
    return DataLoader(
        [{"image": images[i], "label": labels[i]} for i in range(n)], batch_size=batch, drop_last=True
    )


def _trainer(tmp_path: Path, steps: int, **kw: object) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0, **kw,
    )  # fmt: skip


def _params(model: LZNLightningModule, prefix: str = "") -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.modalities.named_parameters() if n.startswith(prefix)}


def test_non_finite_loss_skips_the_step_but_counts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model()
    before = _params(model)
    original = model.losses

    def poisoned(batch: dict, train: bool) -> tuple[dict, dict]:
        losses, stats = original(batch, train)
        return {k: v * float("nan") for k, v in losses.items()}, stats

    monkeypatch.setattr(model, "losses", poisoned)
    # A skipped step does not advance trainer.global_step, so the run is bounded by the batches instead.
    _trainer(tmp_path, 2, enable_checkpointing=False, max_epochs=1, limit_train_batches=2).fit(
        model, _loader()
    )
    assert int(model.iteration) == 2  # counted, like the reference's iteration counter
    for name, value in _params(model).items():
        assert torch.equal(value, before[name]), f"{name} changed on a skipped step"
    assert int(model.ema.num_updates) == 0  # no EMA update without a real step


def test_persistent_non_finite_loss_stops_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(max_consecutive_skips=3)
    monkeypatch.setattr(model, "losses", lambda batch, train: ({"x": torch.tensor(float("nan"))}, {}))
    with pytest.raises(FloatingPointError, match="3 consecutive training steps skipped"):
        _trainer(tmp_path, 5, enable_checkpointing=False).fit(model, _loader())


def test_frozen_group_stops_changing_and_its_ema_too(tmp_path: Path) -> None:
    model = _model(freeze_after={"image.decoder": 2})
    trainer = _trainer(tmp_path, 2, enable_checkpointing=False)
    trainer.fit(model, _loader())
    dec, enc = _params(model, "image.decoder"), _params(model, "image.encoder")
    ema_dec = {n: p.clone() for n, p in model.ema.shadow.named_parameters() if n.startswith("image.decoder")}
    trainer = _trainer(tmp_path, 3, enable_checkpointing=False)  # a new trainer: 3 more steps
    trainer.fit(model, _loader())
    assert int(model.iteration) == 5
    assert all(torch.equal(v, dec[n]) for n, v in _params(model, "image.decoder").items())
    assert any(not torch.equal(v, enc[n]) for n, v in _params(model, "image.encoder").items())
    shadow = dict(model.ema.shadow.named_parameters())
    assert all(torch.equal(shadow[n], v) for n, v in ema_dec.items())


class _LabelTables(pl.Callback):
    """The live label anchor table after every training step."""

    def __init__(self) -> None:
        self.tables: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        self.tables.append(pl_module.modality("label").anchor_table().detach().clone())


def test_label_anchor_ema_follows_the_papers_rule_through_a_frozen_phase(tmp_path: Path) -> None:
    # The authors' label anchor EMA (generation_trainer.py:715-716, ema.py:42-66) steps after every
    # successful step while the anchors train, with delta_k = min(decay, (1 + k) / (10 + k)); once
    # num_label_anchor_iterations freezes them (:757-761) it stops, and evaluation still swaps it in
    # (:258-260).
    freeze, steps, decay = 2, 4, 0.9
    # lr 1e-2 (not the paper's 1e-4): the table moves by ~1e-2 a step, far above float32 rounding
    label = {"class_path": "LabelModality", "init_args": {"num_classes": 3, "lr": 1e-2}}
    model = _model(
        modalities={"image": IMAGE, "label": label}, freeze_after={"label.anchors": freeze}, ema_decay=decay
    )
    shadow = model.modality("label").anchor_table().detach().clone()
    record = _LabelTables()
    _trainer(tmp_path, steps, enable_checkpointing=False, callbacks=[record]).fit(model, _loader())
    assert len(record.tables) == steps and int(model.ema.num_updates) == steps  # no step was skipped
    assert all(torch.equal(t, record.tables[freeze - 1]) for t in record.tables[freeze:])  # frozen
    for k, live in enumerate(record.tables[:freeze], start=1):
        delta = min(decay, (1 + k) / (10 + k))
        shadow = shadow - (1 - delta) * (shadow - live)
    assert not torch.allclose(shadow, record.tables[-1])  # the EMA lags the live table: a real check below
    torch.testing.assert_close(model.ema.shadow["label"].anchors, shadow, rtol=0, atol=1e-6)
    with model.inference():
        torch.testing.assert_close(model.modality("label").anchor_table(), shadow, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.modality("label").anchor_table(), record.tables[-1], rtol=0, atol=0)


def test_ema_swaps_in_for_evaluation_and_back(tmp_path: Path) -> None:
    model = _model()
    with model.ema_weights():  # before any update: the live weights
        assert all(
            torch.equal(a, b)
            for a, b in zip(model.modalities.parameters(), model.ema.shadow.parameters(), strict=True)
        )
    _trainer(tmp_path, 3, enable_checkpointing=False).fit(model, _loader())
    live = _params(model)
    shadow = {n: p.clone() for n, p in model.ema.shadow.named_parameters()}
    assert any(not torch.equal(live[n], shadow[n]) for n in live)
    with model.ema_weights():
        assert all(torch.equal(v, shadow[n]) for n, v in _params(model).items())
    assert all(torch.equal(v, live[n]) for n, v in _params(model).items())


def test_validation_and_test_epochs_run_with_the_ema_weights(tmp_path: Path) -> None:
    model = _model()
    _trainer(tmp_path, 3, enable_checkpointing=False).fit(model, _loader())
    live = _params(model)
    shadow = {n: p.clone() for n, p in model.ema.shadow.named_parameters()}
    seen: list[dict[str, torch.Tensor]] = []

    class Probe(pl.Callback):
        def on_validation_batch_start(
            self, trainer: pl.Trainer, pl_module: LZNLightningModule, *_: object
        ) -> None:
            seen.append(_params(pl_module))

        on_test_batch_start = on_validation_batch_start

    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=tmp_path, callbacks=[Probe()],
    )  # fmt: skip
    trainer.validate(model, _loader())
    trainer.test(model, _loader())
    assert len(seen) == 6 and all(torch.equal(v, shadow[n]) for params in seen for n, v in params.items())
    assert all(torch.equal(v, live[n]) for n, v in _params(model).items())  # swapped back after each epoch


def test_resume_continues_counters_optimizer_ema_and_noise(tmp_path: Path) -> None:
    ckpt_cb = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    first = _model()
    _trainer(tmp_path, 2, callbacks=[ckpt_cb]).fit(first, _loader())
    resumed = _model()
    trainer = _trainer(tmp_path, 4, callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck2")])
    trainer.fit(resumed, _loader(), ckpt_path=tmp_path / "ck" / "last.ckpt")
    assert int(resumed.iteration) == 4 and trainer.global_step == 4
    assert int(resumed.ema.num_updates) == 4
    adam_steps = {int(s["step"]) for s in trainer.optimizers[0].state.values()}
    assert adam_steps == {4}
    # A step's noise is a function of (seed, rank, iteration) only: the restarted model at iteration 2 draws
    # what the interrupted run drew at its step 3, not what a fresh model draws at its step 1.
    restarted = LZNLightningModule.load_from_checkpoint(tmp_path / "ck" / "last.ckpt")
    fresh = _model()
    for m in (restarted, fresh):
        m.on_train_batch_start(None, 0)
    assert int(restarted.iteration) == 2 and int(fresh.iteration) == 0
    assert not torch.equal(restarted.prior_noise(3, 1.0), fresh.prior_noise(3, 1.0))
    fresh.iteration.fill_(2)
    fresh.on_train_batch_start(None, 0)
    restarted.on_train_batch_start(None, 0)
    assert torch.equal(restarted.prior_noise(3, 1.0), fresh.prior_noise(3, 1.0))


def test_python_built_model_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    model = _model()
    trainer = _trainer(tmp_path, 1, enable_checkpointing=False)
    trainer.fit(model, _loader())
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    torch.load(tmp_path / "m.ckpt", weights_only=True)  # no pickled modules inside
    loaded = LZNLightningModule.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu").eval()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.modalities["image"].encode(x), model.eval().modalities["image"].encode(x)
        )
    assert loaded.hparams["align"][0]["target"] == "label"
