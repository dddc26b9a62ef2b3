"""Exact resume: a run interrupted anywhere (mid-epoch, at a validation, by SIGKILL) and resumed from its
last checkpoint ends exactly where the uninterrupted run ends: weights, optimizer and scheduler state, EMA,
counters, the noise of every step, and the data order and augmentations of every batch.

The first tests drive a Trainer directly; the recipe-family tests at the end run ``lzn fit`` on a recipe of
each family (with its own callbacks: the anchor bank, two views, text) under its tiny overlay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from run_probes import BatchLog, Crash

from lzn_lightning import LZNLightningModule
from lzn_lightning.checkpoints import AtomicCheckpointIO
from lzn_lightning.data import ImageNetDataModule, SyntheticDataModule

ROOT = Path(__file__).resolve().parents[2]
STEPS = 13  # 5 batches per epoch: the runs cross two epoch boundaries
IMAGE = {"class_path": "ImageModality", "init_args": {
    "encoder": {"name": "tower", "width": 8, "ch_mult": [1, 2], "head_hidden": 16},
    "decoder": {"name": "unet", "width": 8, "ch_mult": [1, 2]},
    "num_classes": 3, "sample_steps": 2}}  # fmt: skip


def _model(image: dict[str, Any] = IMAGE) -> LZNLightningModule:
    """Image (encoder + RF decoder), label, and two aligned augmented views: every random draw is used."""
    return LZNLightningModule(
        modalities={
            "image": image,
            "label": {"class_path": "LabelModality", "init_args": {"num_classes": 3}},
        },
        fields={"image_view2": "image"},
        latent_dim=8,
        flow={"steps": 3},
        align=[
            {"source": "image", "target": "label", "steps": 5},
            {"source": "image", "target": "image_view2", "steps": 5, "form": "log"},
        ],
        warmup_steps=4,
        ema_decay=0.9,
    )


def _data() -> SyntheticDataModule:
    # 44 images in batches of 8: 5 batches an epoch and 4 images left over (drop_last), as in every real split
    return SyntheticDataModule(
        num_samples=44, num_test_samples=8, num_classes=3, image_shape=(1, 8, 8), batch_size=8,
        eval_batch_size=8, two_views=True,
    )  # fmt: skip


def _trainer(root: Path, callbacks: list[pl.Callback], **kw: Any) -> pl.Trainer:
    args: dict[str, Any] = {
        "max_steps": STEPS, "accelerator": "cpu", "logger": False, "enable_progress_bar": False,
        "enable_model_summary": False, "default_root_dir": root, "num_sanity_val_steps": 0,
        "limit_val_batches": 0, "plugins": [AtomicCheckpointIO()],
    }  # fmt: skip
    return pl.Trainer(callbacks=callbacks, **(args | kw))


def _fit(
    root: Path,
    callbacks: list[pl.Callback],
    ckpt: Path | None = None,
    setup: Callable[[], tuple[LZNLightningModule, pl.LightningDataModule]] = lambda: (_model(), _data()),
    **kw: Any,
) -> tuple[Any, pl.Trainer]:
    pl.seed_everything(0)
    model, data = setup()
    trainer = _trainer(root, callbacks, **kw)
    trainer.fit(model, data, ckpt_path=ckpt)
    return model, trainer


def _assert_same_state(a: tuple[Any, pl.Trainer], b: tuple[Any, pl.Trainer], steps: int = STEPS) -> None:
    (m1, t1), (m2, t2) = a, b
    assert t1.global_step == t2.global_step == steps and int(m1.iteration) == int(m2.iteration)
    s1, s2 = m1.state_dict(), m2.state_dict()  # weights, EMA (ema.*), counters
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), f"{k} differs after resuming"
    o1, o2 = t1.optimizers[0].state_dict(), t2.optimizers[0].state_dict()
    for pid, state in o1["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(o2["state"][pid][name])), (
                f"adam {name}"
            )
    assert (
        t1.lr_scheduler_configs[0].scheduler.state_dict() == t2.lr_scheduler_configs[0].scheduler.state_dict()
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[Any, pl.Trainer], BatchLog]:
    log = BatchLog()
    return _fit(tmp_path_factory.mktemp("straight"), [log], enable_checkpointing=False), log


# The synthetic resume grid is slow (each case trains twice, ~30 s): `make test-slow`. The fast suite keeps
# the quick-start recipe resumed mid-epoch on its real data and networks.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("save", "saved", "crash_at"),
    [
        ("steps", 7, 9),  # saved after step 7 (mid-epoch 1); steps 8 and 9 trained, then lost in the crash
        ("steps", 5, 7),  # saved after step 5, the last batch of epoch 0
        ("validation", 7, 8),  # saved when the validation after step 7 ends (how the recipes checkpoint)
        ("validation", 10, 11),  # saved at the validation after the last batch of epoch 1
    ],
)
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(
    straight: tuple[tuple[Any, pl.Trainer], BatchLog], tmp_path: Path, save: str, saved: int, crash_at: int
) -> None:
    if save == "validation":  # validation draws no training randomness, so it may run in one run only
        every: dict[str, Any] = {}
        extra = {"limit_val_batches": 1, "val_check_interval": saved, "check_val_every_n_epoch": None}
    else:
        every, extra = {"every_n_train_steps": saved}, {}
    ck = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, **every)
    first_log = BatchLog()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path / "a", [ck, first_log, Crash(crash_at)], **extra)
    assert torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["global_step"] == saved

    resumed_log = BatchLog()
    resumed = _fit(
        tmp_path / "b", [resumed_log], tmp_path / "ck" / "last.ckpt", enable_checkpointing=False, **extra
    )
    reference, reference_log = straight
    _assert_same_state(reference, resumed)
    # Every batch (both augmented views) and every step's random draws match the uninterrupted run.
    assert sorted(resumed_log.seen) == list(range(saved + 1, STEPS + 1))
    for log in (first_log, resumed_log):
        for step, fingerprint in log.seen.items():
            assert fingerprint == reference_log.seen[step], f"step {step} read other data or drew other noise"


@pytest.mark.slow
@pytest.mark.parametrize("first", [5, 7])  # the first run ends with epoch 0, or 2 batches into epoch 1
def test_a_finished_run_extended_to_more_steps_equals_the_longer_run(
    straight: tuple[tuple[Any, pl.Trainer], BatchLog], tmp_path: Path, first: int
) -> None:
    ck = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    _fit(tmp_path / "a", [ck], max_steps=first)
    assert torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["global_step"] == first
    log = BatchLog()
    resumed = _fit(tmp_path / "b", [log], tmp_path / "ck" / "last.ckpt", enable_checkpointing=False)
    reference, reference_log = straight
    _assert_same_state(reference, resumed)
    assert sorted(log.seen) == list(range(first + 1, STEPS + 1))
    for step, fingerprint in log.seen.items():
        assert fingerprint == reference_log.seen[step], f"step {step} read other data or drew other noise"


def _imagenet_folder(
    root: Path, per_class: tuple[int, int] = (14, 3), size: tuple[int, int] = (20, 24), suffix: str = ".png"
) -> Path:
    """An ImageNet-layout folder of random images of ``size`` (height, width): 3 classes, ``per_class`` =
    (training, validation) images each; by default 3 x 14 PNGs (5 batches of 8) and 3 x 3."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), per_class, strict=True):
        for c in range(3):
            folder = root / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}{suffix}")
    return root


@pytest.mark.slow
def test_two_view_imagenet_run_with_photometric_on_device_resumes_exactly(tmp_path: Path) -> None:
    """ImageNet's two views with the colour jitter, grayscale and blur drawn in the workers and applied on the
    device: the resumed run reads and draws exactly what the straight one does. (Views finished in the
    workers are the synthetic runs above.)"""
    root = _imagenet_folder(tmp_path / "imagenet")
    steps = 7  # 5 batches an epoch: saved mid-epoch 0 (step 3), crashed at 5, resumed across the boundary

    def setup() -> tuple[LZNLightningModule, pl.LightningDataModule]:
        model = _model(IMAGE | {"init_args": IMAGE["init_args"] | {"channels": 3, "size": 8}})
        return model, ImageNetDataModule(root=str(root), size=8, batch_size=8, eval_batch_size=8)

    straight_log, resumed_log = BatchLog(), BatchLog()
    straight = _fit(tmp_path / "s", [straight_log], setup=setup, enable_checkpointing=False, max_steps=steps)
    ck = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, every_n_train_steps=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path / "a", [ck, Crash(5)], setup=setup, max_steps=steps)
    last = tmp_path / "ck" / "last.ckpt"
    resumed = _fit(tmp_path / "b", [resumed_log], last, setup, enable_checkpointing=False, max_steps=steps)
    _assert_same_state(straight, resumed, steps)
    assert sorted(resumed_log.seen) == list(range(4, steps + 1))
    for step, fingerprint in resumed_log.seen.items():
        assert fingerprint == straight_log.seen[step], (
            f"step {step} read other data or drew other augmentations"
        )


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:0] = [{tests!r}, {plugins!r}]
    import lightning.pytorch as pl
    from test_resume import _fit

    class Kill(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 9:  # steps 8 and 9 trained after the checkpoint of step 7
                os.kill(os.getpid(), signal.SIGKILL)

    ck = pl.callbacks.ModelCheckpoint(dirpath={ck!r}, save_last=True, every_n_train_steps=7)
    _fit({root!r}, [ck, Kill()])
    """
)


@pytest.mark.slow  # a fit in a subprocess, killed, then resumed
@pytest.mark.timeout(180)
def test_sigkill_loses_only_the_steps_since_the_last_checkpoint(
    straight: tuple[tuple[Any, pl.Trainer], BatchLog], tmp_path: Path
) -> None:
    script = _KILLED_RUN.format(
        tests=str(Path(__file__).parent),
        plugins=str(ROOT / "tests" / "plugins"),
        ck=str(tmp_path / "ck"),
        root=str(tmp_path / "a"),
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=170, env=env
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not list((tmp_path / "ck").glob(".*.tmp")), "a temporary checkpoint file was left behind"
    resumed = _fit(tmp_path / "b", [], tmp_path / "ck" / "last.ckpt", enable_checkpointing=False)
    _assert_same_state(straight[0], resumed)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)

    def dies_half_way(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # e.g. Ctrl-C or a pre-emption signal in the middle of the write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1  # the previous checkpoint, intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


# ------------------------------------------------------------------------------------------ recipe families
# One recipe per family, each with what only it has: the anchor bank and evaluation callbacks (joint), the RF
# decoder alone with its sample callbacks (generation), two augmented views (representation), text (captions).
# The quick start's recipe in the fast suite, the other families in `make test-slow`.
FAMILIES = [
    "digits_joint",
    *(pytest.param(f, marks=pytest.mark.slow) for f in ("digits_gen", "digits_repr", "digits_caption")),
]
FAMILY_STEPS = 6  # the tiny overlay's data is 4 batches an epoch: the resumed part crosses an epoch boundary
PROBE = "run_probes"  # tests/plugins/run_probes.py, on sys.path (tests/conftest.py)


def _lzn_fit(recipe: Path, root: Path, *extra: str) -> Any:
    """``lzn fit`` on the recipe's tiny overlay for FAMILY_STEPS steps, with a BatchLog; returns the CLI.

    The overlay validates (and the recipe checkpoints) every 2 steps, so a checkpoint of step 2 is mid-epoch.
    """
    from tiny_recipe import tiny_override

    from lzn_lightning.cli import main

    root.mkdir(parents=True, exist_ok=True)
    args = ["fit", "--config", str(recipe), "--config", str(tiny_override(recipe, root))]
    args += [f"--trainer.max_steps={FAMILY_STEPS}", f"--trainer.default_root_dir={root}"]
    args += [f"--trainer.callbacks+={PROBE}.BatchLog", *extra]
    return main(args)


def _batch_log(cli: Any) -> BatchLog:
    (log,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "BatchLog"]
    return log


@pytest.mark.timeout(300)
@pytest.mark.parametrize("family", FAMILIES)
def test_recipe_resumed_mid_epoch_equals_the_uninterrupted_run(family: str, tmp_path: Path) -> None:
    recipe = ROOT / "recipes" / f"{family}.yaml"
    straight = _lzn_fit(recipe, tmp_path / "straight")
    crash = ['--trainer.callbacks+={"class_path": "run_probes.Crash", "init_args": {"step": 3}}']
    with pytest.raises(RuntimeError, match="simulated crash"):
        _lzn_fit(recipe, tmp_path / "crashed", *crash)  # step 3 trains, then the run dies
    (last,) = (tmp_path / "crashed").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 2  # mid-epoch 0
    resumed = _lzn_fit(recipe, tmp_path / "resumed", f"--ckpt_path={last}")

    _assert_same_state((straight.model, straight.trainer), (resumed.model, resumed.trainer), FAMILY_STEPS)
    seen, again = _batch_log(straight).seen, _batch_log(resumed).seen
    assert sorted(again) == list(range(3, FAMILY_STEPS + 1))
    for step, fingerprint in again.items():
        assert fingerprint == seen[step], f"{family}: step {step} read other data or drew other noise"
