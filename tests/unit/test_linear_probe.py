"""The linear probe of case study 2 (LinearProbeModule, CachedFeatures, recipes/imagenet_linear*.yaml) on a
tiny ImageNet-layout folder of JPEGs and a tiny LZN image encoder: it learns, the encoder stays frozen, the
accuracies are the hand count, the feature cache is reused and re-keyed, a resumed run ends bit for bit where
a straight one does, and mistakes end in one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from lzn_lightning import LZNLightningModule
from lzn_lightning.checkpoints import read_checkpoint
from lzn_lightning.cli import main
from lzn_lightning.data import CachedFeatures, ImageNetDataModule
from lzn_lightning.linear_probe import LinearProbeModule, load_frozen_encoder, probe_report

ROOT = Path(__file__).resolve().parents[2]
CLASSES = 3
SIZE = 16  # px of the crops the tiny encoder reads


# -------------------------------------------------------------------------------------------- fixtures
def _save_lzn(model: LZNLightningModule, path: Path) -> Path:
    """A checkpoint as ``lzn fit`` writes one, without a trainer (weights and hyper-parameters)."""
    ckpt = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    torch.save(ckpt, path)
    return path


def _tiny_repr_model(seed: int, **image: Any) -> LZNLightningModule:
    """A representation LZN (two views, no decoder) whose image encoder is a tiny tower on 16x16 RGB."""
    torch.manual_seed(seed)
    init = {"channels": 3, "size": SIZE, "encoder": {"name": "tower", "width": 8, "ch_mult": [1, 2],
            "num_res_blocks": 1}, "decoder": None} | image  # fmt: skip
    return LZNLightningModule(
        modalities={"image": {"class_path": "ImageModality", "init_args": init}},
        latent_dim=8,
        fields={"image_view2": "image"},
        align=[{"source": "image", "target": "image_view2", "steps": 4}],
        warmup_steps=1,
        ema_decay=0.9,
    )


@pytest.fixture(scope="module")
def lzn_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny representation model whose EMA weights differ from its live ones (one EMA update)."""
    model = _tiny_repr_model(0)
    assert model.ema is not None
    with torch.no_grad():
        for p in model.ema.shadow.parameters():
            p.mul_(1.5)  # EMA weights != live weights: the probe must read the EMA ones
    model.ema.num_updates.fill_(1)
    return _save_lzn(model, tmp_path_factory.mktemp("lzn") / "repr.ckpt")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet layout, JPEGs of 20x24 px: 3 classes (a red, a green, a blue tint over noise) x 8 training
    and 4 validation images."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for c in range(CLASSES):
            sub = root / split / f"n0{c}"
            sub.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (20, 24, 3))
                pixels[..., c] += 160  # the class's colour channel
                Image.fromarray(pixels.astype(np.uint8)).save(sub / f"{i}.JPEG")
    return root


def _imagenet(root: Path, **kw: Any) -> ImageNetDataModule:
    """The recipe's ImageNet data at 16 px: two augmented views for training, the centre crop to evaluate."""
    args = {"root": str(root), "size": SIZE, "batch_size": 6, "eval_batch_size": 12, "two_views": True,
            "eval_two_views": False} | kw  # fmt: skip
    return ImageNetDataModule(**args)


def _trainer(root: Path, **kw: Any) -> pl.Trainer:
    args = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
            "enable_model_summary": False, "enable_checkpointing": False, "default_root_dir": root,
            "num_sanity_val_steps": 0} | kw  # fmt: skip
    return pl.Trainer(**args)


def _probe(ckpt: Path, **kw: Any) -> LinearProbeModule:
    return LinearProbeModule(num_classes=CLASSES, encoder_ckpt=str(ckpt), top_k=(1, 2), **kw)


def _clean_val_loss(probe: LinearProbeModule, data: ImageNetDataModule) -> float:
    """Cross-entropy of the probe on the centre-cropped validation images."""
    _, val, _ = data.clean_datasets()
    batch = next(iter(torch.utils.data.DataLoader(val, batch_size=len(val))))
    with torch.no_grad():
        return float(nn.functional.cross_entropy(probe(batch), batch["label"]))


# -------------------------------------------------------------------------------------------- learning
def test_probe_learns_on_augmented_views_with_the_encoder_frozen_in_eval_mode(
    lzn_ckpt: Path, folder: Path, tmp_path: Path
) -> None:
    pl.seed_everything(0)
    probe = _probe(lzn_ckpt, lr=0.05)  # a test-sized rate (the paper's 3e-4 is for 156 steps an epoch)
    encoder_before = {k: v.clone() for k, v in probe.encoder.state_dict().items()}
    modes: list[bool] = []
    probe.encoder.register_forward_hook(lambda m, i, o: modes.append(m.training))
    data = _imagenet(folder)
    before = _clean_val_loss(probe, data)
    _trainer(tmp_path, max_epochs=12, limit_val_batches=0).fit(probe, data)
    after = _clean_val_loss(probe, data)

    assert after < 0.7 * before, (before, after)
    assert modes and not any(modes)  # every training forward ran in eval mode
    assert not probe.encoder.training
    for key, value in probe.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), f"frozen encoder changed: {key}"
    assert all(not p.requires_grad for p in probe.encoder.parameters())
    (group,) = probe.optimizers().optimizer.param_groups  # type: ignore[union-attr]
    assert {id(p) for p in group["params"]} == {id(p) for p in probe.head.parameters()}
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0


def test_probe_reads_the_ema_weights_of_the_checkpoint(lzn_ckpt: Path) -> None:
    raw = torch.load(lzn_ckpt, weights_only=True)["state_dict"]
    ema = {
        k.removeprefix("ema.shadow.image."): v for k, v in raw.items() if k.startswith("ema.shadow.image.")
    }
    encoder = load_frozen_encoder(lzn_ckpt)
    ours = encoder.modality.state_dict()
    assert ema and all(torch.equal(ours[k], v) for k, v in ema.items())
    live = {
        k.removeprefix("modalities.image."): v for k, v in raw.items() if k.startswith("modalities.image.")
    }
    assert any(not torch.equal(ours[k], v) for k, v in live.items())  # not the live weights


# ------------------------------------------------------------------------------------------------- top-k
class _Passthrough(nn.Module):
    """An "encoder" whose features are the inputs themselves (so head = identity makes logits = inputs)."""

    feature_dim = 7

    def forward(self, x: Tensor) -> Tensor:
        return x


def _hand_topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores, counted one row at a time."""
    hits = 0
    for row, label in zip(scores.astype(np.float64), labels, strict=True):
        higher = sum(1 for s in row if s > row[label])
        hits += higher < k
    return hits / len(labels)


def test_top1_and_top5_equal_a_hand_count(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(53, 7, generator=g)  # 53: batches of 10 leave a partial one
    labels = torch.randint(0, 7, (53,), generator=g)
    probe = LinearProbeModule(num_classes=7, encoder=_Passthrough(), paper_top1=69.5)
    with torch.no_grad():
        probe.head.weight.copy_(torch.eye(7))
        probe.head.bias.zero_()
    items = [{"image": s, "label": y} for s, y in zip(scores, labels, strict=True)]
    (metrics,) = _trainer(tmp_path).test(probe, torch.utils.data.DataLoader(items, batch_size=10))

    for k in (1, 5):
        expected = _hand_topk(scores.numpy(), labels.numpy(), k)
        assert metrics[f"test/top{k}"] == pytest.approx(expected, abs=1e-7)
    written = json.loads((tmp_path / "probe_test.json").read_text())
    assert written["accuracy_percent"]["top1"] == pytest.approx(
        100 * _hand_topk(scores.numpy(), labels.numpy(), 1)
    )
    printed = capsys.readouterr().err
    assert (
        "linear probe top-1:" in printed and "(paper: 69.5%)" in printed and "linear probe top-5:" in printed
    )


def test_probe_report_puts_the_paper_beside_top1() -> None:
    text = probe_report({"top1": 70.123, "top5": 89.5}, 69.5)
    assert text.splitlines() == ["linear probe top-1: 70.12%   (paper: 69.5%)", "linear probe top-5: 89.50%"]


# ----------------------------------------------------------------------------------------------- cache
def _cached(folder: Path, cache: Path, **images: Any) -> CachedFeatures:
    return CachedFeatures(
        _imagenet(folder, **images), cache_dir=str(cache), batch_size=6, encode_batch_size=5
    )


def test_feature_cache_holds_the_centre_crop_features_is_reused_and_rekeyed(
    lzn_ckpt: Path, folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    pl.seed_everything(0)
    probe = _probe(lzn_ckpt, lr=0.05)
    first = _cached(folder, cache)
    trainer = _trainer(tmp_path, max_epochs=20)
    trainer.fit(probe, first)
    trainer.save_checkpoint(tmp_path / "cached.ckpt")  # plain data only: it loads with weights_only=True
    assert read_checkpoint(tmp_path / "cached.ckpt", probe=True)["datamodule_hyper_parameters"]["images"]
    assert first.computed == ["train", "val"]  # ImageNet's test split is its val split: encoded once
    files = sorted(cache.glob("*.pt"))
    assert len(files) == 2 and not list(cache.glob("*.part*"))

    # The cache holds the frozen encoder's features of the centre-cropped images, in stored order.
    train, _, _ = _imagenet(folder).clean_datasets()
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=len(train))))
    saved = torch.load(first.cache_files["train"], weights_only=True)
    torch.testing.assert_close(saved["features"], probe.features(batch["image"]), rtol=0, atol=1e-6)
    assert torch.equal(saved["labels"], batch["label"])

    # The test accuracy is the head's own on the cached test features, and agrees with scikit-learn's
    # logistic regression fitted on the same cached training features (well-separated classes).
    (metrics,) = _trainer(tmp_path).test(probe, first)
    val = torch.load(first.cache_files["val"], weights_only=True)
    with torch.no_grad():
        own = (probe.head(val["features"]).argmax(1) == val["labels"]).float().mean().item()
    assert metrics["test/top1"] == pytest.approx(own)
    sk = LogisticRegression(max_iter=2000).fit(saved["features"].numpy(), saved["labels"].numpy())
    assert own == pytest.approx(sk.score(val["features"].numpy(), val["labels"].numpy()))

    # Loader and batch settings are not in the key: the same features are read back.
    again = CachedFeatures(
        _imagenet(folder, batch_size=3, num_workers=1),
        cache_dir=str(cache),
        batch_size=12,
        encode_batch_size=7,
    )
    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(_probe(lzn_ckpt), again)
    assert again.computed == [] and sorted(cache.glob("*.pt")) == files  # read, not recomputed

    other_crop = _cached(folder, cache, size=12)  # another evaluation transform: other files
    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(
        _probe(_save_lzn(_tiny_repr_model(0, size=12), tmp_path / "s12.ckpt")), other_crop
    )
    assert other_crop.computed == ["train", "val"]
    other_encoder = _cached(folder, cache)  # another checkpoint's weights: other files
    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(
        _probe(_save_lzn(_tiny_repr_model(1), tmp_path / "seed1.ckpt")), other_encoder
    )
    assert other_encoder.computed == ["train", "val"]
    assert len(list(cache.glob("*.pt"))) == 6


# ---------------------------------------------------------------------------------------------- resume
def _fit_steps(lzn_ckpt: Path, folder: Path, root: Path, steps: int, ckpt_path: Path | None = None) -> Any:
    pl.seed_everything(0)
    probe = _probe(lzn_ckpt, lr=0.05)
    save = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=3, save_top_k=-1, filename="s{step}")
    trainer = _trainer(
        root, max_steps=steps, limit_val_batches=0, enable_checkpointing=True, callbacks=[save]
    )
    trainer.fit(probe, _imagenet(folder, num_workers=1), ckpt_path=ckpt_path)
    return probe, trainer


def test_resumed_probe_ends_bit_for_bit_where_the_straight_run_ends(
    lzn_ckpt: Path, folder: Path, tmp_path: Path
) -> None:
    # 24 training images in batches of 6: 4 steps an epoch; the checkpoint at step 3 is mid-epoch.
    straight, _ = _fit_steps(lzn_ckpt, folder, tmp_path / "straight", 7)
    (mid,) = (tmp_path / "straight" / "ckpt").glob("s*3.ckpt")
    resumed, trainer = _fit_steps(lzn_ckpt, folder, tmp_path / "resumed", 7, ckpt_path=mid)
    assert trainer.global_step == 7
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    a, b = straight.optimizers().optimizer.state_dict(), resumed.optimizers().optimizer.state_dict()  # type: ignore[union-attr]
    for index, state in a["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][index][name])), name


# ------------------------------------------------------------------------------------------------- CLI
def test_recipe_fits_and_tests_through_the_lzn_cli(
    lzn_ckpt: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = str(ROOT / "recipes" / "imagenet_linear.yaml")
    tiny = [f"--model.encoder_ckpt={lzn_ckpt}", "--model.init_args.num_classes=3",
            "--model.init_args.top_k=[1, 2]",
            f"--data.init_args.root={folder}", "--data.init_args.size=16", "--data.init_args.batch_size=6",
            "--data.init_args.num_workers=0", f"--trainer.default_root_dir={tmp_path}",
            "--trainer.max_steps=2", "--trainer.enable_progress_bar=false",
            "--trainer.logger=false"]  # fmt: skip
    cli = main(["fit", "--config", recipe, *tiny])
    assert cli is not None and cli.trainer.global_step == 2 and isinstance(cli.model, LinearProbeModule)
    (last,) = tmp_path.rglob("last.ckpt")
    main(
        [
            "test",
            "--config",
            recipe,
            *tiny,
            f"--trainer.default_root_dir={tmp_path / 'test'}",
            f"--ckpt_path={last}",
        ]
    )
    assert "(paper: 69.5%)" in capsys.readouterr().err
    assert set(json.loads((tmp_path / "test" / "probe_test.json").read_text())["accuracy_percent"]) == {
        "top1",
        "top2",
    }
    with pytest.raises(SystemExit) as info:  # a probe checkpoint is not a model lzn embed can read
        main(
            [
                "embed",
                "--ckpt_path",
                str(last),
                "--input",
                str(folder / "val"),
                "--out",
                str(tmp_path / "e.npy"),
            ]
        )
    assert info.value.code == 2 and "linear probe's checkpoint" in capsys.readouterr().err


def test_cached_recipe_parses(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(ROOT / "recipes" / "imagenet_linear_cached.yaml"), "--print_config"])
    assert info.value.code == 0 and "CachedFeatures" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- errors
def test_recipe_without_encoder_checkpoint_says_which_argument(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(ROOT / "recipes" / "imagenet_linear.yaml")])
    assert info.value.code == 2
    assert "--model.encoder_ckpt" in capsys.readouterr().err


def test_missing_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _probe(tmp_path / "nope.ckpt")


def test_checkpoint_without_an_image_encoder_is_refused(tmp_path: Path) -> None:
    image = {
        "channels": 1,
        "size": 8,
        "encoder": None,
        "decoder": {"name": "unet", "width": 8},
        "sample_steps": 2,
    }
    plain_rf = LZNLightningModule(
        modalities={"image": {"class_path": "ImageModality", "init_args": image}}, latent_from=None
    )
    path = _save_lzn(plain_rf, tmp_path / "rf.ckpt")
    with pytest.raises(ValueError, match="the linear probe reads an image encoder"):
        _probe(path)


def test_wrong_class_count_is_refused(lzn_ckpt: Path, folder: Path, tmp_path: Path) -> None:
    probe = LinearProbeModule(num_classes=5, encoder_ckpt=str(lzn_ckpt), top_k=(1,))
    with pytest.raises(ValueError, match="num_classes=3"):
        _trainer(tmp_path, max_steps=1).fit(probe, _imagenet(folder))


# ------------------------------------------------------------------------------------------------ plumbing
def test_clean_datasets_give_every_split_the_evaluation_crop(folder: Path) -> None:
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    data = _imagenet(folder)  # two augmented training views
    train, _, _ = data.clean_datasets()
    first = train[0]
    assert set(first) == {"image", "label"}  # one view
    assert torch.equal(first["image"], train[0]["image"])  # no randomness
    with Image.open(train.files[0]) as f:
        expected = F.pil_to_tensor(data.eval_transform()(f.convert("RGB"))).float() / 127.5 - 1
    torch.testing.assert_close(first["image"], expected, rtol=0, atol=1e-6)
    assert data.train_dataset is None  # the module's own datasets are untouched
    assert data.view_settings(train=True)[1] is True  # and its training views are still two


def test_the_cli_reads_the_model_by_class_only_when_a_config_names_one(tmp_path: Path) -> None:
    from lzn_lightning.lightning_cli import names_model_class

    named, plain = tmp_path / "named.yaml", tmp_path / "plain.yaml"
    named.write_text("model:\n  class_path: LinearProbeModule\n")
    plain.write_text("model:\n  latent_dim: 8\n")
    assert names_model_class(["--config", str(named)]) and names_model_class([f"--config={named}"])
    assert not names_model_class(["--config", str(plain), "--model.latent_dim=4"])
    assert names_model_class(["--config", str(plain), "--model=LinearProbeModule"])
    assert not names_model_class(["--config", str(tmp_path / "missing.yaml")])  # LightningCLI reports it


@pytest.mark.ddp
@pytest.mark.slow  # two processes that each import torch and Lightning
@pytest.mark.timeout(300)
def test_cached_recipe_on_two_processes_shards_the_encoding_and_joins_it_in_order(
    lzn_ckpt: Path, folder: Path, tmp_path: Path
) -> None:
    import os
    import shutil
    import subprocess
    import sys

    lzn = shutil.which("lzn", path=str(Path(sys.executable).parent)) or "lzn"
    cache = tmp_path / "cache"
    args = [lzn, "fit", "--config", str(ROOT / "recipes" / "imagenet_linear_cached.yaml"),
            f"--model.init_args.encoder_ckpt={lzn_ckpt}", "--model.init_args.num_classes=3",
            "--model.init_args.top_k=[1, 2]", f"--data.init_args.images.init_args.root={folder}",
            "--data.init_args.images.init_args.size=16", f"--data.init_args.cache_dir={cache}",
            "--data.init_args.batch_size=6", "--data.init_args.num_workers=0", "--trainer.accelerator=cpu",
            "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_steps=2",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr
    assert not list(cache.glob("*.part*")) and len(list(cache.glob("*.pt"))) == 2

    # Each rank encoded every second image; the joined file is the single-process encoding, in order.
    train, _, _ = _imagenet(folder).clean_datasets()
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=len(train))))
    (train_file,) = cache.glob("train-*.pt")
    saved = torch.load(train_file, weights_only=True)
    expected = load_frozen_encoder(lzn_ckpt).eval()(batch["image"])
    torch.testing.assert_close(saved["features"], expected, rtol=0, atol=1e-5)
    assert torch.equal(saved["labels"], batch["label"])
