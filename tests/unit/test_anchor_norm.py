"""The anchor normalisations that end the image tower (``ImageModality(anchor_norm=...)``)."""

from __future__ import annotations

import pytest
import torch
from lzn_lightning.modalities import ImageModality

D = 16


def tower(**kw: object) -> ImageModality:
    m = ImageModality(
        channels=1,
        size=8,
        encoder={"name": "tower", "width": 8, "head_channels": 4, "head_hidden": 16},
        decoder=None,
        **kw,
    )
    m.build(D)
    return m


def test_batch_norm_fixes_the_batch_statistics_of_the_anchors() -> None:
    torch.manual_seed(0)
    m = tower(anchor_norm="batch", anchor_scale=0.15)
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    a = m.encode(x)  # train mode: batch statistics
    assert a.shape == (64, D)
    torch.testing.assert_close(a.mean(0), torch.zeros(D), atol=1e-5, rtol=0)
    # BatchNorm divides by the biased standard deviation
    torch.testing.assert_close(a.std(0, unbiased=False), torch.full((D,), 0.15), atol=1e-4, rtol=0)


def test_batch_norm_in_eval_mode_does_not_depend_on_batch_mates() -> None:
    torch.manual_seed(0)
    m = tower(anchor_norm="batch")
    for _ in range(3):  # some running statistics
        m.encode(torch.rand(32, 1, 8, 8) * 2 - 1)
    m.eval()
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    alone = torch.cat([m.encode(x[i : i + 1]) for i in range(8)])
    together = m.encode(torch.cat([x, torch.rand(5, 1, 8, 8)]))[:8]
    torch.testing.assert_close(alone, together)


def test_group_norm_and_its_alias() -> None:
    assert isinstance(tower(anchor_norm="group").anchor_norm, torch.nn.GroupNorm)
    assert isinstance(tower(anchor_norm=True).anchor_norm, torch.nn.GroupNorm)
    assert tower(anchor_norm=False).anchor_norm is None and tower(anchor_norm="none").anchor_norm is None


BAD = [
    ({"anchor_norm": "layer"}, "anchor_norm must be one of"),
    ({"anchor_norm": "batch", "anchor_scale": 0.0}, "anchor_scale"),
]


@pytest.mark.parametrize(("kw", "match"), BAD)
def test_bad_anchor_norm_is_a_clear_error_at_construction(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ImageModality(**kw)  # type: ignore[arg-type]
