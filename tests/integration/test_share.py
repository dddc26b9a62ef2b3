"""Sharing a model: ``lzn export`` folders, ``from_pretrained`` (folder, Hub cache offline), every ``lzn``
command on an export, ``lzn push-to-hub`` against a local stand-in of huggingface_hub's ``HfApi``, the
encoder alone in a process that cannot import lzn_lightning, and the one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml
from cli_run import run_lzn
from tiny_lzn import IMAGE, LABEL, LATENT_DIM, train_image_text_label, train_tiny

import lzn_lightning.cli as cli
import lzn_lightning.hub as hub
from lzn_lightning import LZNLightningModule, load_for_inference
from lzn_lightning.export import export_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# The tiny model of tests/unit/tiny_lzn.py as a recipe (as `lzn fit` saves config.yaml in its log folder).
RECIPE = {
    "seed_everything": 0,
    "model": {
        "modalities": {"image": IMAGE, "label": LABEL}, "latent_dim": LATENT_DIM, "flow": {"steps": 3},
        "align": [{"source": "image", "target": "label", "steps": 6}], "warmup_steps": 2, "ema_decay": 0.9,
    },
    "data": {"class_path": "SyntheticDataModule", "init_args": {
        "num_samples": 48, "num_test_samples": 24, "num_classes": 3, "image_shape": [1, 8, 8],
        "batch_size": 16, "eval_batch_size": 24}},
    "trainer": {
        "accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
        "default_root_dir": "runs/tiny_joint",
        "callbacks": [{"class_path": "ZoneAccuracy", "init_args": {"every_n_validations": 4}}],
    },
}  # fmt: skip
METRICS = "cond_acc,epoch,step,train/loss,val/zone_acc/image->label,zone_acc,zone_acc/bank/noise0\n"
METRICS += ",0,3,1.5,0.5,,\n0.75,0,3,,0.625,0.875,0.875\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained run laid out as `lzn fit` writes it, its export, and inputs for the commands."""
    root = tmp_path_factory.mktemp("share")
    _, ckpt = train_tiny(root)
    log = root / "lightning_logs" / "version_0"
    (log / "checkpoints").mkdir(parents=True)
    shutil.move(ckpt, log / "checkpoints" / "last.ckpt")
    (log / "config.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    (log / "metrics.csv").write_text(METRICS)
    images = torch.Generator().manual_seed(1)
    np.save(root / "images.npy", (torch.rand(10, 1, 8, 8, generator=images) * 2 - 1).numpy())
    paths = {"root": root, "ckpt": log / "checkpoints" / "last.ckpt", "recipe": log / "config.yaml"}
    paths["export"] = export_checkpoint(paths["ckpt"], root / "exported")
    return paths


def _same_outputs(a: LZNLightningModule, b: LZNLightningModule, images: torch.Tensor) -> None:
    assert torch.equal(a.embed(images), b.embed(images))
    assert torch.equal(a.classify(images), b.classify(images))
    labels = torch.arange(6) % 3
    assert torch.equal(a.generate(6, labels=labels, seed=3), b.generate(6, labels=labels, seed=3))


def test_round_trip_is_exact(run: dict[str, Path]) -> None:
    original = load_for_inference(run["ckpt"])
    loaded = LZNLightningModule.from_pretrained(run["export"])
    assert not loaded.training and loaded.ema is None
    with original.ema_weights():
        want = original.modalities.state_dict()
        assert original.ema is not None and int(original.ema.num_updates) > 0  # the EMA differs from the live
        for name, value in loaded.modalities.state_dict().items():
            assert value.dtype == want[name].dtype and torch.equal(value, want[name]), name
    assert torch.equal(loaded.anchor_bank_of("image"), original.anchor_bank_of("image"))
    _same_outputs(original, loaded, torch.from_numpy(np.load(run["root"] / "images.npy")))


def test_folder_and_card(run: dict[str, Path]) -> None:
    files = sorted(p.name for p in run["export"].iterdir())
    assert files == [
        "README.md",
        "anchor_banks.safetensors",
        "config.json",
        "model.safetensors",
        "recipe.yaml",
    ]
    config = json.loads((run["export"] / "config.json").read_text())
    assert config["model"]["latent_dim"] == LATENT_DIM and "init_from" not in config["model"]
    assert config["anchor_banks"] == ["image"] and config["training"]["iteration"] == 4
    card = (run["export"] / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "lzn-lightning" and meta["license"] == "mit"
    assert meta["dataset"] == "synthetic data (a smoke-test run)" and "datasets" not in meta
    assert {"lzn-lightning", "image-generation", "image-classification"} <= set(meta["tags"])
    assert "# tiny_joint" in body and "training steps: 4" in body and "synthetic data" in body
    rows = {line.split("|")[1].strip(" `"): line for line in body.splitlines() if line.startswith("| `")}
    assert set(rows) == {"cond_acc", "val/zone_acc/image->label", "zone_acc", "zone_acc/bank/noise0"}
    assert rows["zone_acc"].endswith("| 0.875 | 3 | test | ZoneAccuracy |")
    assert "- ZoneAccuracy: `ZoneAccuracy(split=test," in body and "every_n_validations=4" in body
    assert rows["val/zone_acc/image->label"].endswith("| 0.625 | 3 | validation | validation loop |")
    assert "- validation loop: `LZNLightningModule.validation_step" in body
    assert rows["cond_acc"].endswith("| - | - |")  # the recipe has no ConditionalSampleAccuracy callback
    assert (
        "lzn classify --ckpt_path exported " in body
        and "from_pretrained(" in body
        and "latent_dim: 8" in body
    )


def test_every_command_on_an_export(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = str(run["root"] / "images.npy")
    for name, source in (("ckpt", run["ckpt"]), ("export", run["export"])):
        for argv in (
            ["sample", "--num", "6", "--labels", "0,1,2", "--out", f"{name}_s.npy"],
            ["classify", "--input", images, "--out", f"{name}_c.npy"],
            ["embed", "--input", images, "--out", f"{name}_e.npy"],
        ):
            argv[-1] = str(tmp_path / argv[-1])
            code, _, err = run_lzn([*argv, "--ckpt_path", str(source)], capsys)
            assert code == 0, err
    for kind in ("s", "c", "e"):
        assert np.array_equal(
            np.load(tmp_path / f"ckpt_{kind}.npy"), np.load(tmp_path / f"export_{kind}.npy")
        )
    tested = {}
    for name, source in (("ckpt", run["ckpt"]), ("export", run["export"])):
        got = cli.main(["test", "--config", str(run["recipe"]), "--ckpt_path", str(source),
                        f"--trainer.default_root_dir={tmp_path / name}"])  # fmt: skip
        tested[name] = {k: float(v) for k, v in got.trainer.callback_metrics.items()}
    assert tested["ckpt"] == tested["export"] and "zone_acc" in tested["export"]


def _fill_cache(cache: Path, repo_id: str, export: Path) -> None:
    """Lay ``export`` out in ``cache`` the way snapshot_download does (refs/main -> snapshots/<commit>)."""
    from huggingface_hub.file_download import repo_folder_name

    commit = "1" * 40
    repo = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(export, repo / "snapshots" / commit)


def test_hub_cache_offline(
    run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import constants

    _fill_cache(tmp_path / "hub", "someone/tiny-lzn", run["export"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(cli, "USER_HF_OFFLINE", True)
    local = LZNLightningModule.from_pretrained(run["export"])
    images = torch.from_numpy(np.load(run["root"] / "images.npy"))
    for name in ("someone/tiny-lzn", "hf://someone/tiny-lzn", "hf://someone/tiny-lzn@main"):
        _same_outputs(local, LZNLightningModule.from_pretrained(name), images)
    by_commit = LZNLightningModule.from_pretrained("someone/tiny-lzn", revision="1" * 40)
    assert torch.equal(by_commit.embed(images), local.embed(images))
    images_npy = str(run["root"] / "images.npy")
    argv = ["embed", "--ckpt_path", "hf://someone/tiny-lzn", "--input", images_npy, "--out"]
    code, _, err = run_lzn([*argv, str(tmp_path / "e.npy")], capsys)
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "e.npy"), local.embed(images).numpy())
    argv[2] = "someone/absent"
    code, _, err = run_lzn([*argv, str(tmp_path / "x.npy")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "someone/absent is not in the Hugging Face cache" in err and "HF_HUB_OFFLINE=1" in err


class FakeHfApi:
    """huggingface_hub.HfApi's create_repo and upload_folder, recording instead of uploading."""

    calls: ClassVar[list[tuple[str, dict]]] = []
    uploaded: Path

    def create_repo(self, repo_id: str, **kw: object) -> None:
        FakeHfApi.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def upload_folder(self, repo_id: str, folder_path: str, **kw: object) -> object:
        FakeHfApi.calls.append(("upload_folder", {"repo_id": repo_id, **kw}))
        shutil.copytree(folder_path, FakeHfApi.uploaded)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def test_push_to_hub(
    run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeHfApi.calls, FakeHfApi.uploaded = [], tmp_path / "uploaded"
    monkeypatch.setattr(hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(cli, "USER_HF_OFFLINE", False)
    code, out, err = run_lzn(
        ["push-to-hub", "--ckpt_path", str(run["ckpt"]), "--repo", "someone/tiny-lzn", "--private"], capsys
    )
    assert code == 0, err
    assert "someone/tiny-lzn/commit/abc" in out
    (_, created), (_, uploaded) = FakeHfApi.calls
    assert created == {"repo_id": "someone/tiny-lzn", "private": True, "repo_type": "model", "exist_ok": True}
    assert uploaded["repo_id"] == "someone/tiny-lzn" and uploaded["repo_type"] == "model"
    assert "lzn sample   --ckpt_path someone/tiny-lzn" in (FakeHfApi.uploaded / "README.md").read_text()
    images = torch.from_numpy(np.load(run["root"] / "images.npy"))
    _same_outputs(
        load_for_inference(run["ckpt"]), LZNLightningModule.from_pretrained(FakeHfApi.uploaded), images
    )
    monkeypatch.setattr(cli, "USER_HF_OFFLINE", True)
    code, _, err = run_lzn(["push-to-hub", "--ckpt_path", str(run["ckpt"]), "--repo", "someone/x"], capsys)
    assert code == 2 and "unset HF_HUB_OFFLINE" in err


# Runs with `python -I`, and a finder that refuses lzn_lightning: the file must need plain torch only.
_PLAIN_TORCH = textwrap.dedent("""
    import sys
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "lzn_lightning":
                raise ImportError("lzn_lightning is not installed here")
    sys.meta_path.insert(0, Refuse())
    try:
        import lzn_lightning
        raise SystemExit("lzn_lightning was importable")
    except ImportError:
        pass
    import numpy as np, torch
    x = torch.from_numpy(np.load(sys.argv[1]))
    np.save(sys.argv[3], torch.jit.load(sys.argv[2])(x).numpy())
    np.save(sys.argv[5], torch.export.load(sys.argv[4]).module()(x).numpy())
""")


@pytest.mark.slow  # a fresh interpreter that imports torch
def test_encoder_runs_without_lzn_lightning(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = str(run["root"] / "images.npy")
    code, _, err = run_lzn(["embed", "--ckpt_path", str(run["export"]), "--input", images,
                            "--out", str(tmp_path / "emb.npy")], capsys)  # fmt: skip
    assert code == 0, err
    for fmt, out in (("torchscript", "encoder.pt"), ("export", "encoder.pt2")):
        argv = ["export", "--ckpt_path", str(run["ckpt"]), "--part", "encoder", "--format", fmt, "--out"]
        code, _, err = run_lzn([*argv, str(tmp_path / out)], capsys)
        assert code == 0, err
    script = tmp_path / "plain.py"
    script.write_text(_PLAIN_TORCH)
    argv = [
        images,
        tmp_path / "encoder.pt",
        tmp_path / "ts.npy",
        tmp_path / "encoder.pt2",
        tmp_path / "ex.npy",
    ]
    proc = subprocess.run(
        [sys.executable, "-I", str(script), *map(str, argv)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = np.load(tmp_path / "emb.npy")
    for got in ("ts.npy", "ex.npy"):
        np.testing.assert_allclose(np.load(tmp_path / got), want, rtol=0, atol=1e-5)


def _broken_copy(run: dict[str, Path], tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "broken"
    shutil.copytree(run["export"], folder)
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, _, err = run_lzn(argv, capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_one_line_errors(run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = str(run["root"] / "images.npy")

    def embed(source: Path | str) -> str:
        out = str(tmp_path / "e.npy")
        return _one_line_error(["embed", "--ckpt_path", str(source), "--input", images, "--out", out], capsys)

    (tmp_path / "empty").mkdir()
    assert "is not an lzn-lightning export (no config.json)" in embed(tmp_path / "empty")
    assert "lzn export" in embed(tmp_path / "empty")
    future = _broken_copy(run, tmp_path, lambda c: c.update(format_version=99))
    err = embed(future)
    assert "export format 99" in err and "upgrade lzn-lightning" in err
    shutil.rmtree(future)
    unknown = _broken_copy(run, tmp_path, lambda c: c["model"]["modalities"]["image"].update(
        class_path="someones_package.HologramModality"))  # fmt: skip
    err = embed(unknown)
    assert "cannot build the model of" in err and "someones_package.HologramModality" in err
    # A path that does not exist and ends like a checkpoint stays a missing checkpoint, not a Hub name.
    assert "checkpoint runs/missing.ckpt does not exist" in embed("runs/missing.ckpt")


def test_imported_paper_model_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from authors_checkpoint import authors_checkpoint
    from tiny_recipe import tiny_override

    recipe = ROOT / "recipes" / "cifar10_joint.yaml"
    ckpt, _ = authors_checkpoint(recipe, tmp_path)
    out = tmp_path / "paper.ckpt"
    argv = ["import-reference", "--recipe", str(recipe), "--checkpoint", str(ckpt), "--out", str(out),
            "--config", str(tiny_override(recipe, tmp_path))]  # fmt: skip
    assert run_lzn(argv, capsys)[0] == 0
    code, _, err = run_lzn(["export", "--ckpt_path", str(out), "--out", str(tmp_path / "paper")], capsys)
    assert code == 0, err
    card = (tmp_path / "paper" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert (
        meta["base_model"] == "microsoft/latent-zoning-networks" and meta["library_name"] == "lzn-lightning"
    )
    assert meta["datasets"] == ["uoft-cs/cifar10"] and meta["dataset"] == "CIFAR-10"
    assert "arXiv 2509.15591" in card and f"`{ckpt}`" in card and "# cifar10_joint" in card
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    original, loaded = load_for_inference(out), LZNLightningModule.from_pretrained(tmp_path / "paper")
    assert torch.equal(original.embed(images), loaded.embed(images))


def test_text_model_round_trip(tmp_path: Path) -> None:
    """Token-id banks (int64) and a text encoder/decoder survive the export exactly too."""
    from lzn_lightning.callbacks import AnchorBank

    ckpt = train_image_text_label(tmp_path, [AnchorBank(num=8)])
    folder = export_checkpoint(ckpt, tmp_path / "exported")
    original, loaded = load_for_inference(ckpt), LZNLightningModule.from_pretrained(folder)
    assert loaded.anchor_bank_of("text").dtype == torch.int64
    assert torch.equal(loaded.anchor_bank_of("text"), original.anchor_bank_of("text"))
    texts = ["a one", "a seven", "three"]
    assert torch.equal(original.classify(texts, field="text"), loaded.classify(texts, field="text"))
    assert torch.equal(original.embed(texts, field="text"), loaded.embed(texts, field="text"))
