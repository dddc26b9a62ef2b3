"""A non-editable install (the wheel) contains the built-in modalities and every subpackage, and `lzn` works
from another directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # builds the wheel and installs it in a new virtual environment
@pytest.mark.timeout(300)
def test_wheel_has_modalities_and_lzn_runs_elsewhere(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # Build from a copy, so the build leaves nothing (build/, *.egg-info) in the working tree.
    src = tmp_path / "src_copy"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info"))
    dist = tmp_path / "dist"
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, timeout=240)  # fmt: skip
    (wheel,) = dist.glob("lzn_lightning-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("lzn_lightning/modalities/image.py", "lzn_lightning/modalities/label.py",
                     "lzn_lightning/data/digits.py", "lzn_lightning/latent/solvers.py",
                     "lzn_lightning/metrics/generation.py", "lzn_lightning/py.typed"):  # fmt: skip
        assert expected in names, f"{expected} missing from the wheel"
    assert not any(n.startswith(("modalities/", "tests/", "recipes/")) for n in names)

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=120)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "recipes" / "digits_joint.yaml", elsewhere / "recipe.yaml")
    # -S-free isolation: the installed copy comes first on the path, ahead of this checkout's editable
    # install.
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    code = (
        "import lzn_lightning, lzn_lightning.modalities as m, sys; "
        "print(lzn_lightning.__file__); print(m.ImageModality.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()  # fmt: skip
    assert out[0].startswith(str(site)) and out[1] == "lzn_lightning.modalities.image"
    lzn = site / "bin" / "lzn"
    assert lzn.exists()
    proc = subprocess.run([sys.executable, str(lzn), "fit", "--config", "recipe.yaml", "--print_config"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "class_path: lzn_lightning.modalities.LabelModality" in proc.stdout
