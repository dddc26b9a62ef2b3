"""`lzn sample --prompts | --images`, `lzn classify | embed` on .txt files, with a tiny image + text + label
model (wiring and errors only; tests/integration/test_text_end_to_end.py shows that such a model learns)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_lzn
from tiny_lzn import train_image_text_label


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_image_text_label(tmp_path_factory.mktemp("text_cli"))


def test_prompts_to_images_and_images_to_captions(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("pattern 1\npattern 2\npattern 0\n")
    code, _, err = run_lzn(
        ["sample", "--ckpt_path", str(ckpt), "--prompts", str(prompts), "--out", str(tmp_path / "x.npy")],
        capsys,
    )
    assert code == 0, err
    images = np.load(tmp_path / "x.npy")
    assert images.shape == (3, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    code, _, err = run_lzn(["sample", "--ckpt_path", str(ckpt), "--images", str(tmp_path / "x.npy"),
                      "--out", str(tmp_path / "c.csv")], capsys)  # fmt: skip
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "c.csv").open()))
    assert rows[0] == ["index", "caption"] and len(rows) == 4 and all(r[1] for r in rows[1:])


def test_classify_and_embed_a_text_file(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("pattern 1\npattern 2\n")
    code, _, err = run_lzn(
        ["classify", "--ckpt_path", str(ckpt), "--input", str(texts), "--out", str(tmp_path / "p.csv")],
        capsys,
    )
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert rows[0] == ["index", "text", "label"] and [r[1] for r in rows[1:]] == ["pattern 1", "pattern 2"]
    assert all(0 <= int(r[2]) < 3 for r in rows[1:])
    code, _, err = run_lzn(
        ["embed", "--ckpt_path", str(ckpt), "--input", str(texts), "--out", str(tmp_path / "e.npy")], capsys
    )
    assert code == 0, err
    assert np.load(tmp_path / "e.npy").shape == (2, 8)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pattern 1\npattern #2\n", r"line 2: the text .* outside the alphabet: \['#'\]"),
        ("pattern 1\n\npattern 2\n", "line 2: the text is empty"),
        ("a" * 20 + "\n", "line 1: the text has 20 characters, more than max_len - 1 = 11"),
        ("\n\n", "holds no text"),
    ],
)
def test_bad_text_files_are_one_line_errors(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture, content: str, message: str
) -> None:
    import re

    texts = tmp_path / "t.txt"
    texts.write_text(content)
    code, _, err = run_lzn(
        ["classify", "--ckpt_path", str(ckpt), "--input", str(texts), "--out", str(tmp_path / "p.csv")],
        capsys,
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and re.search(message, lines[0]), err
    assert not (tmp_path / "p.csv").exists()


def test_sample_takes_exactly_one_source(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_lzn(["sample", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "g.png")], capsys)
    assert code == 2 and "exactly one of --num" in err
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["decode"] == ["image", "text"]
