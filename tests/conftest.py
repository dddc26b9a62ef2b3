"""Shared test set-up: offline, deterministic, CPU only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# The helper folders (tests/plugins, tests/unit, tests/overrides, benchmarks, experiments) are on sys.path
# through pytest's `pythonpath` setting in pyproject.toml.
