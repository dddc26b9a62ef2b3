"""Recipe smoke runs replace timm backbones by a one-conv stub (torchgeo's trick): a ResNet-50 step costs
~40 s on the 2-core CI box and the recipe test is about the wiring, not the backbone. The real timm path is
covered by the modality contract test (tests/unit/test_modality_contract.py)."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn


class _StubBackbone(nn.Sequential):
    num_features = 8

    def __init__(self, in_chans: int) -> None:
        super().__init__(
            nn.Conv2d(in_chans, 8, 3, padding=1),
            nn.GroupNorm(4, 8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Nothing to checkpoint."""


@pytest.fixture(autouse=True)
def _stub_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    def create_model(name: str, pretrained: bool = False, in_chans: int = 3, **kwargs: Any) -> nn.Module:
        assert not pretrained, "recipes must not download weights"
        return _StubBackbone(in_chans)

    monkeypatch.setattr(timm, "create_model", create_model)
