"""Evaluation callbacks: metric functions against known answers, and every callback inside a tiny fit/test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from tiny_lzn import NUM_CLASSES, tiny_data, tiny_model, tiny_trainer
from torch import nn

from lzn_lightning.callbacks import (
    FID,
    KNN,
    AnchorBank,
    ConditionalSampleAccuracy,
    LinearProbe,
    ReconstructionL2,
    SampleGrid,
    ZoneAccuracy,
)
from lzn_lightning.metrics import (
    features_of,
    frechet_distance,
    knn_accuracy,
    linear_probe_accuracy,
    train_classifier,
)


# ---------------------------------------------------------------------------------------- known answers
def test_fid_of_a_set_with_itself_is_zero_and_a_shift_costs_its_square() -> None:
    g = np.random.default_rng(0)
    feats = g.normal(size=(500, 16))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, means apart by 0.5 in each of 16 dims: FID = |mu1 - mu2|^2 = 16 * 0.25.
    assert frechet_distance(feats, feats + 0.5) == pytest.approx(4.0, rel=1e-6)


def test_fid_with_a_feature_network_of_identical_image_sets_is_zero() -> None:
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert frechet_distance(features_of(net, images), features_of(net, images.clone())) < 1e-6


def test_knn_on_separable_clusters_is_perfect() -> None:
    g = np.random.default_rng(0)
    centres = g.normal(scale=10, size=(4, 8))
    y_train, y_test = np.repeat(np.arange(4), 25), np.repeat(np.arange(4), 10)
    x_train = centres[y_train] + g.normal(size=(100, 8))
    x_test = centres[y_test] + g.normal(size=(40, 8))
    assert knn_accuracy(x_train, y_train, x_test, y_test, k=5) == 1.0
    assert linear_probe_accuracy(x_train, y_train, x_test, y_test) == 1.0


def test_linear_probe_on_random_features_is_near_chance() -> None:
    g = np.random.default_rng(0)
    x_train, x_test = g.normal(size=(400, 16)), g.normal(size=(1000, 16))
    y_train, y_test = g.integers(0, 4, 400), g.integers(0, 4, 1000)
    acc = linear_probe_accuracy(x_train, y_train, x_test, y_test)
    assert abs(acc - 0.25) < 0.06  # chance is 1/4; 1000 test points give a standard error of ~0.014


def test_effective_rank_counts_the_directions_that_hold_the_variance() -> None:
    from lzn_lightning.metrics import effective_rank

    g = np.random.default_rng(0)
    basis = np.linalg.qr(g.normal(size=(64, 64)))[0]  # a random rotation
    # k orthogonal directions of equal variance, rotated and offset: exactly k (a float64 brute force of
    # the same formula below); an isotropic cloud approaches the width.
    for k in (1, 5, 64):
        x = g.normal(size=(20000, k)) @ basis[:k] + 100.0
        eig = np.linalg.eigvalsh(np.cov(x, rowvar=False))
        share = eig[eig > 1e-12 * eig.max()] / eig.sum()
        assert effective_rank(x) == pytest.approx(float(np.exp(-(share * np.log(share)).sum())), rel=1e-6)
        assert effective_rank(x) == pytest.approx(k, rel=0.05)
    # unequal variances: fewer effective directions than the span
    assert 1.0 < effective_rank(g.normal(size=(5000, 4)) * [10.0, 1.0, 1.0, 1.0]) < 2.0
    assert effective_rank(np.ones((10, 3))) == 0.0
    with pytest.raises(ValueError, match="N >= 2, D"):
        effective_rank(np.ones(5))


def test_in_callback_classifier_learns_and_trains_inside_inference_mode() -> None:
    data = tiny_data(num_samples=96)
    data.setup("fit")
    xs = torch.stack([data.train_dataset[i]["image"] for i in range(96)])
    ys = torch.stack([data.train_dataset[i]["label"] for i in range(96)])
    with torch.inference_mode():  # as in Lightning's test loop
        xs, ys = xs.clone(), ys.clone()
        trained = train_classifier(xs, ys, NUM_CLASSES, held_out=(xs, ys), epochs=8, batch_size=32)
    assert trained.held_out_accuracy is not None and trained.held_out_accuracy > 0.9


class _AlwaysZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), NUM_CLASSES)
        logits[:, 0] = 1.0
        return logits + 0 * self.w

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def test_zone_accuracy_cuts_a_class_ordered_split_into_mixed_batch_fields(monkeypatch) -> None:
    """A split stored class by class (MNIST-5k's) must not become fields of one class each: the batch
    context's latents depend on the batch-mates, and a one-class field spreads its zones over the whole
    prior."""
    from types import SimpleNamespace

    per_class, field = 8, 8
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)  # [24]: 0 x 8, 1 x 8, 2 x 8
    split = [{"image": torch.full((1, 8, 8), float(y)), "label": y} for y in labels]
    trainer = SimpleNamespace(datamodule=SimpleNamespace(test_dataset=split, eval_batch_size=field))
    model, fields = tiny_model(), []

    def classify(images, batch_size, **kw):  # records each field; "predicts" the class written in the image
        fields.extend(images[s : s + batch_size, 0, 0, 0].long() for s in range(0, len(images), batch_size))
        return images[:, 0, 0, 0].long()

    monkeypatch.setattr(model, "classify", classify)
    cb = ZoneAccuracy(contexts=("batch",), noise_scales=(0.0,), class_weighted=False)
    metrics, what = cb.compute(trainer, model)
    assert len(fields) == NUM_CLASSES and all(len(set(f.tolist())) > 1 for f in fields), fields
    assert metrics["zone_acc"] == 1.0  # the labels were shuffled with the images
    assert "shuffled with seed 0" in what


# ----------------------------------------------------------------------------------- callbacks in a fit
@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny fit (2 steps, one validation) and one test run with every callback; returns what they
    logged."""
    root = tmp_path_factory.mktemp("cb")
    pl.seed_everything(0)
    model = tiny_model()
    callbacks = [
        AnchorBank(num=12),
        SampleGrid(per_class=2),
        ZoneAccuracy(noise_scales=(0.0, 0.5), num_samples=12),
        FID(num_samples=16, classifier_epochs=2),
        ReconstructionL2(num_samples=8),
        LinearProbe(),
        KNN(k=3),
        ConditionalSampleAccuracy(per_class=2, classifier_epochs=2),
        ConditionalSampleAccuracy(per_class=2, classifier=_AlwaysZero(), every_n_validations=0),
    ]
    trainer = tiny_trainer(
        root, 2, callbacks, logger=CSVLogger(root), limit_val_batches=1, val_check_interval=2,
        check_val_every_n_epoch=None,
    )  # fmt: skip
    data = tiny_data()
    trainer.fit(model, data)
    val = {k: float(v) for k, v in trainer.callback_metrics.items()}
    trainer.test(model, data)
    test = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {
        "val": val,
        "test": test,
        "log_dir": Path(trainer.log_dir),
        "callbacks": callbacks,
        "model": model,
    }


def test_every_metric_is_logged_after_validation_and_test(fitted: dict[str, Any]) -> None:
    expected = [
        "zone_acc", "zone_acc/bank/noise0", "zone_acc/bank/noise0.5", "zone_acc/batch/noise0",
        "zone_acc_cw/batch/noise0.5", "fid", "recon_l2", "linear_probe_acc", "knn_acc", "cond_acc",
        "cond_acc_worst_class", "cond_acc_classifier",
    ]  # fmt: skip
    for stage in ("val", "test"):
        missing = [k for k in expected if k not in fitted[stage]]
        assert not missing, f"{stage}: {missing} not logged; got {sorted(fitted[stage])}"
        assert all(math.isfinite(v) for v in fitted[stage].values())
    for key in ("zone_acc", "linear_probe_acc", "knn_acc", "cond_acc"):
        assert 0.0 <= fitted["test"][key] <= 1.0
    assert fitted["test"]["fid"] >= 0 and fitted["test"]["recon_l2"] > 0


def test_metrics_reach_the_logger_files(fitted: dict[str, Any]) -> None:
    header = (fitted["log_dir"] / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"zone_acc", "fid", "knn_acc"} <= set(header)


def test_sample_grids_are_written(fitted: dict[str, Any]) -> None:
    final = fitted["log_dir"] / "samples_final.png"
    assert Image.open(final).size == (2 * 9 + 1, NUM_CLASSES * 9 + 1)  # one row per class, 2 per row
    assert (fitted["log_dir"] / "samples" / "step2.png").is_file()


def test_conditional_accuracy_of_a_constant_judge_is_one_over_k(fitted: dict[str, Any]) -> None:
    constant = fitted["callbacks"][-1]
    assert constant.last["cond_acc"] == pytest.approx(1 / NUM_CLASSES)
    assert constant.last["cond_acc_worst_class"] == 0.0


def test_anchor_bank_is_stored_in_the_model(fitted: dict[str, Any]) -> None:
    assert fitted["model"].anchor_bank.shape == (12, 1, 8, 8)


def test_fid_rejects_an_unknown_feature_extractor() -> None:
    with pytest.raises(ValueError, match="feature_extractor"):
        FID(feature_extractor="vgg")


class _CountingEval(ZoneAccuracy):
    """Records the step of every evaluation instead of computing one."""

    def __init__(self, every_n_validations: int = 3) -> None:
        super().__init__(every_n_validations=every_n_validations)
        self.steps: list[int] = []

    def _run_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.steps.append(trainer.global_step)


def test_a_resumed_run_evaluates_at_the_steps_of_the_uninterrupted_one(tmp_path: Path) -> None:
    """The count of validations travels in the checkpoint: every 3rd validation is at steps 3 and 6 whether
    or not the run stops at step 4 and resumes (without it the resumed run would evaluate at step 7)."""
    every = {"limit_val_batches": 1, "val_check_interval": 1, "check_val_every_n_epoch": None}
    straight = _CountingEval()
    pl.seed_everything(0)
    tiny_trainer(tmp_path / "s", 6, [straight], **every).fit(tiny_model(), tiny_data())
    first, again = _CountingEval(), _CountingEval()
    ck = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    pl.seed_everything(0)
    tiny_trainer(tmp_path / "a", 4, [first, ck], enable_checkpointing=True, **every).fit(
        tiny_model(), tiny_data()
    )
    pl.seed_everything(0)
    resumed = tiny_trainer(tmp_path / "b", 6, [again], **every)
    resumed.fit(tiny_model(), tiny_data(), ckpt_path=tmp_path / "ck" / "last.ckpt")
    assert straight.steps == [3, 6]
    assert first.steps + again.steps == [3, 6]


def test_two_evaluation_callbacks_of_one_class_keep_their_own_state() -> None:
    assert ZoneAccuracy(split="val").state_key != ZoneAccuracy(split="test").state_key
    assert ZoneAccuracy(split="val").state_key == ZoneAccuracy(split="val").state_key
