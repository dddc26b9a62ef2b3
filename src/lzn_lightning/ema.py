"""Exponential moving average of the modality weights, with the reference's warm-up and phase rules.

shadow <- shadow - (1 - delta) (shadow - theta), delta = min(decay, (1 + k) / (10 + k)), k = the number of
updates including this one (so the first update uses 2/11, as the paper's trainers and released checkpoints
count; docs/design/lzn.md §3.0). Updated only after a successful optimiser step and not for frozen parameter
groups, so it cannot be Lightning's ``EMAWeightAveraging`` (which steps on every batch and knows nothing of
frozen phases).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn


class ModalityEMA(nn.Module):
    """EMA copy of a module; lives in the LZN module's state dict as ``ema.*`` so checkpoints carry both."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(model)
        self.shadow.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module, frozen: frozenset[str] = frozenset()) -> None:
        """One EMA step towards ``model``; parameters named in ``frozen`` keep their EMA value."""
        k = int(self.num_updates) + 1  # this update counts, as in the paper's EMA
        delta = min(self.decay, (1.0 + k) / (10.0 + k))
        live = dict(model.named_parameters())
        for name, shadow in self.shadow.named_parameters():
            if name in frozen:
                continue
            shadow.lerp_(live[name].detach().to(shadow.dtype), 1.0 - delta)
        live_buffers = dict(model.named_buffers())
        for name, buf in self.shadow.named_buffers():
            buf.copy_(live_buffers[name])
        self.num_updates += 1

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[None]:
        """Temporarily load the EMA weights into ``model`` (no-op before the first update)."""
        if int(self.num_updates) == 0:
            yield
            return
        pairs = list(zip(model.parameters(), self.shadow.parameters(), strict=True))
        with torch.no_grad():
            for live, shadow in pairs:
                tmp = live.detach().clone()
                live.copy_(shadow)
                shadow.copy_(tmp)
        try:
            yield
        finally:
            with torch.no_grad():
                for live, shadow in pairs:
                    tmp = live.detach().clone()
                    live.copy_(shadow)
                    shadow.copy_(tmp)
