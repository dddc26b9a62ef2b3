"""Bad input through `lzn fit`: one clear `error:` line naming the fix, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from lzn_lightning.cli import main

ROOT = Path(__file__).resolve().parents[2]
JOINT = str(ROOT / "recipes" / "digits_joint.yaml")
SMALL = [
    "--trainer.max_steps=1",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--model.flow.steps=2",
]


def _error_of(args: list[str], capsys: pytest.CaptureFixture, tmp_path: Path) -> str:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", JOINT, *SMALL, f"--trainer.default_root_dir={tmp_path}", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_wrong_num_classes_for_the_data(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    err = _error_of(["--model.modalities.label.init_args.num_classes=7"], capsys, tmp_path)
    assert "num_classes=7" in err and "10 classes" in err and "set it to 10" in err


def test_align_names_an_unknown_field(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    err = _error_of(['--model.align=[{"source": "image", "target": "labels"}]'], capsys, tmp_path)
    assert "'labels' is not a field" in err and "'label'" in err


def test_wrong_image_size(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    err = _error_of(["--model.modalities.image.init_args.size=16"], capsys, tmp_path)
    assert "(1, 16, 16)" in err and "(1, 8, 8)" in err and "size=8" in err


def test_missing_dataset(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    missing = tmp_path / "no_cifar"
    with pytest.raises(SystemExit) as info:
        main(
            ["fit", "--config", str(ROOT / "recipes" / "cifar10_joint.yaml"),
             f"--data.init_args.root={missing}", "--trainer.accelerator=cpu", "--trainer.logger=false",
             f"--trainer.default_root_dir={tmp_path}"]
        )  # fmt: skip
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "cifar-10" in err and "Traceback" not in err


def test_debug_env_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LZN_DEBUG", "1")
    with pytest.raises(ValueError, match="is not a field"):
        main(["fit", "--config", JOINT, *SMALL, '--model.align=[{"source": "image", "target": "x"}]',
              f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip


@pytest.mark.parametrize("command", ["validate", "test"])
def test_evaluation_needs_a_checkpoint(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--config", JOINT, "--trainer.logger=false"])
    assert info.value.code == 2
    assert "--ckpt_path" in capsys.readouterr().err


def test_help_lists_every_subcommand_and_predict_is_gone(capsys: pytest.CaptureFixture) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "sample", "classify", "embed"):
        assert f"\n  {command} " in out
    assert "predict" not in out
    with pytest.raises(SystemExit) as info:
        main(["predict", "--config", JOINT])
    assert info.value.code == 2
    assert "invalid choice: 'predict'" in capsys.readouterr().err


@pytest.mark.slow  # ~15 s: several fits through the CLI
def test_fit_writes_checkpoints_atomically_and_refuses_broken_or_foreign_ones(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    from tiny_lzn import train_tiny

    from lzn_lightning.checkpoints import AtomicCheckpointIO

    root = f"--trainer.default_root_dir={tmp_path}"
    cli = main(["fit", "--config", JOINT, *SMALL, "--trainer.limit_val_batches=0", root])
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    (last,) = tmp_path.rglob("last.ckpt")
    capsys.readouterr()

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:1000])
    err = _error_of([f"--ckpt_path={truncated}"], capsys, tmp_path)
    assert "error: " in err and "truncated or corrupt" in err and str(truncated) in err

    _, other = train_tiny(tmp_path / "tiny")  # an LZN checkpoint of a much smaller model
    capsys.readouterr()
    err = _error_of([f"--ckpt_path={other}"], capsys, tmp_path)
    assert "holds another model's weights" in err and "Use the recipe" in err
    with pytest.raises(SystemExit) as info:
        main(["test", "--config", JOINT, "--trainer.logger=false", f"--ckpt_path={other}"])
    assert info.value.code == 2 and "holds another model's weights" in capsys.readouterr().err
