"""The EMA warm-up counts the update being made, as the paper's trainers (and its released checkpoints) do."""

from __future__ import annotations

import torch
from torch import nn

from lzn_lightning.ema import ModalityEMA


def test_first_updates_use_the_papers_warm_up_decay() -> None:
    model = nn.Linear(3, 2)
    ema = ModalityEMA(model, decay=0.999999)
    start = [p.detach().clone() for p in ema.shadow.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    # delta = (1 + k) / (10 + k) with k = 1 on the first update: the shadow moves 9/11 of the way
    for s, s0, live in zip(ema.shadow.parameters(), start, model.parameters(), strict=True):
        torch.testing.assert_close(s, s0 - (1 - 2 / 11) * (s0 - live), rtol=0, atol=1e-6)
    second = [p.detach().clone() for p in ema.shadow.parameters()]
    ema.update(model)
    for s, s1, live in zip(ema.shadow.parameters(), second, model.parameters(), strict=True):
        torch.testing.assert_close(s, s1 - (1 - 3 / 12) * (s1 - live), rtol=0, atol=1e-6)
    assert int(ema.num_updates) == 2
