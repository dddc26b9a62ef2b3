"""Plumbing of the inference layer: user data to a field's checked tensors, chunks, progress bars, generators.

Every helper takes the model (an :class:`~lzn_lightning.LZNLightningModule` or anything with its ``device``
and ``modality()``) and nothing else of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

# Why 256: the global batch of the CPU recipes, i.e. the field size their zones were trained with; also a
# size at which one batch of 32 px images stays far below a GB on any device.
DEFAULT_BATCH_SIZE = 256
# Why 4: below that a job ends in a blink and a progress bar is noise (e.g. in every callback call).
_PROGRESS_MIN_BATCHES = 4


def seeded_generator(model: Any, seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """``generator``, else a generator on the model's device seeded by ``seed`` (None: a seed drawn from
    torch's global RNG, so ``torch.manual_seed`` / ``seed_everything`` apply)."""
    if generator is not None:
        return generator
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return torch.Generator(device=model.device).manual_seed(seed)


def prepared(model: Any, data: Any, field: str) -> Tensor:
    """The field's tensor of user data (its modality's ``prepare``: strings -> token ids), checked."""
    x = model.modality(field).prepare(data)
    model.modality(field).check_field(x, field)
    return x


def on_device(model: Any, x: Tensor) -> Tensor:
    """``x`` on the model's device: float32 for data; ids and classes keep their dtype."""
    x = x.to(model.device)
    return x.float() if x.is_floating_point() else x


def chunks(n: int, batch_size: int) -> list[slice]:
    """Slices of ``batch_size`` items (the last may be shorter) covering ``n`` items."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def progress_bar(total: int, batches: int, progress: bool | None, desc: str) -> tqdm:
    """A tqdm bar over ``total`` items, shown when ``progress`` says so (None: for several batches)."""
    show = batches >= _PROGRESS_MIN_BATCHES if progress is None else progress
    return tqdm(total=total, desc=desc, unit="item", disable=not show, leave=False)
