"""Shared test set-up: offline, deterministic, CPU only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# The example plug-in of the README ("add a data type in one file") lives in tests/plugins; putting that
# folder on sys.path lets YAML refer to it as `vector_modality.VectorModality`, exactly as a user's own module
# would.
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
# The tiny models of tests/unit/tiny_lzn.py serve the integration tests too, whichever folder pytest runs.
sys.path.insert(0, str(Path(__file__).parent / "unit"))
# The tiny overlay of any recipe (tests/overrides/tiny_recipe.py): recipe smoke runs, resume and README tests.
sys.path.insert(0, str(Path(__file__).parent / "overrides"))
