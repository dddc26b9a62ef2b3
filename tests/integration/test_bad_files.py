"""Image files that do not decode: a fit ends in one error line naming the file (in the main process and
inside a loader worker), ``skip_bad_files`` serves the next readable image and names the skipped one, and
``lzn check-data`` lists every unreadable file. Three kinds: a truncated JPEG, an empty file, a text file with
an image extension."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_run import run_lzn
from PIL import Image
from tiny_recipe import tiny_override

from lzn_lightning.cli import main
from lzn_lightning.data.files import ImageFileDataset, LoadRGB, UnreadableImageError, check_image_file

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "digits_gen.yaml"


def _both(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit status, stdout + stderr) of ``lzn argv``."""
    code, out, err = run_lzn(argv, capsys)
    return code, out + err


def _good_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"good_{i:02d}.jpg")


def _bad_images(folder: Path) -> dict[str, Path]:
    """A truncated JPEG, an empty file and a text file, all named like images."""
    whole = (folder / "good_00.jpg").read_bytes()
    bad = {"truncated": folder / "truncated.jpg", "empty": folder / "empty.jpg", "text": folder / "notes.png"}
    bad["truncated"].write_bytes(whole[: len(whole) // 2])
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("not an image\n")
    return bad


def _overlay(tmp_path: Path, folder: Path, workers: int, skip: bool) -> list[str]:
    overlay = {
        "model": {"modalities": {"image": {"init_args": {"channels": 3, "size": 8}}}},
        "data": {
            "class_path": "ImageFolderDataModule",
            "init_args": {
                "root": str(folder),
                "size": 8,
                "use_labels": False,
                "val_fraction": 0.0,
                "batch_size": 4,
                "eval_batch_size": 4,
                "num_workers": workers,
                "skip_bad_files": skip,
            },
        },
        "trainer": {"max_steps": 3, "limit_val_batches": 0, "default_root_dir": str(tmp_path)},
    }
    path = tmp_path / f"folder_{workers}_{skip}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return ["--config", str(RECIPE), "--config", str(tiny_override(RECIPE, tmp_path)), "--config", str(path)]


def test_each_kind_of_bad_file_raises_one_line_naming_it(tmp_path: Path) -> None:
    _good_images(tmp_path, 1)
    for path in _bad_images(tmp_path).values():
        with pytest.raises(UnreadableImageError) as info:
            LoadRGB(8)(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert "skip_bad_files" in str(info.value) and "lzn check-data" in str(info.value)
        assert check_image_file(str(path)) is not None
    assert check_image_file(str(tmp_path / "good_00.jpg")) is None


@pytest.mark.parametrize("workers", [0, 1], ids=["main-process", "worker"])
def test_fit_stops_with_one_line_naming_the_file(workers: int, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "images"
    _good_images(folder, 7)
    truncated = _bad_images(folder)["truncated"]
    (folder / "empty.jpg").unlink()
    (folder / "notes.png").unlink()
    code, out = _both(["fit", *_overlay(tmp_path, folder, workers, skip=False)], capsys)
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2, out
    assert len(errors) == 1 and f"cannot read image {truncated}" in errors[0], out
    assert "Traceback" not in out


def test_skip_bad_files_trains_and_names_what_it_skipped(tmp_path: Path, capsys, caplog) -> None:
    folder = tmp_path / "images"
    _good_images(folder, 5)
    bad = _bad_images(folder)
    with caplog.at_level(logging.WARNING, logger="lzn_lightning.data.files"):
        code, out = _both(["fit", *_overlay(tmp_path, folder, 0, skip=True)], capsys)
    assert code == 0, out
    skipped = " ".join(r.getMessage() for r in caplog.records)
    drawn = [name for name, path in bad.items() if str(path) in skipped]
    assert drawn, f"no skip was logged: {skipped!r}"  # 3 steps of 4 from 6 training images draw most of them


def test_skipping_serves_the_next_readable_image_and_its_label(tmp_path: Path) -> None:
    _good_images(tmp_path, 3)
    bad = _bad_images(tmp_path)
    files = [tmp_path / "good_00.jpg", bad["empty"], bad["truncated"], tmp_path / "good_01.jpg"]
    ds = ImageFileDataset(files, [0, 1, 2, 3], LoadRGB(8), skip_bad_files=True)
    item = ds[1]
    assert int(item["label"]) == 3  # the empty and the truncated file are both passed over
    assert np.allclose(item["image"].numpy(), ds[3]["image"].numpy())
    strict = ImageFileDataset(files, [0, 1, 2, 3], LoadRGB(8))
    with pytest.raises(UnreadableImageError, match=r"empty\.jpg"):
        strict[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_check_data_lists_every_unreadable_file(workers: int, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "images"
    _good_images(folder, 5)
    bad = _bad_images(folder)
    code, out = _both(["check-data", "--workers", str(workers), *_overlay(tmp_path, folder, 0, skip=False)],
                     capsys)  # fmt: skip
    assert code == 1, out
    listed = [line for line in out.splitlines() if line.startswith("unreadable:")]
    assert sorted(listed) == sorted(f"unreadable: {p} ({check_image_file(str(p))})" for p in bad.values())
    assert "checked 8 files" in out and "3 unreadable" in out
    for path in bad.values():
        path.unlink()
    code, out = _both(["check-data", *_overlay(tmp_path, folder, 0, skip=False)], capsys)
    assert code == 0 and "checked 5 files" in out and "0 unreadable" in out, out


def test_check_data_needs_a_recipe_and_is_listed(capsys) -> None:
    code, out = _both(["check-data"], capsys)
    assert code == 2 and "--config recipes/<recipe>.yaml" in out
    main(["--help"])
    assert "check-data" in capsys.readouterr().out
