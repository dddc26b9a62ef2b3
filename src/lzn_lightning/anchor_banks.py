"""Anchor banks: the items whose anchors form a field's batch-independent context (``context="bank"``).

A bank is a buffer of :class:`~lzn_lightning.LZNLightningModule` named ``anchor_bank_<field>``
(``checkpoints.BANK_PREFIX``), so it is saved in checkpoints and exports and loads with ``weights_only=True``.
The items are stored, not their anchors: the inference layer encodes them with the weights in use
(:func:`lzn_lightning.inference.latents.bank_anchors`), so a bank never goes stale as training goes on.
These functions hold the storage; the module's ``anchor_bank_of``, ``set_anchor_bank`` and
``load_state_dict`` call them.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lzn_lightning.checkpoints import BANK_PREFIX
from lzn_lightning.modality import Modality


def bank_of(module: nn.Module, field: str) -> Tensor | None:
    """The bank items of ``field`` held by ``module``, or None."""
    return module._buffers.get(BANK_PREFIX + field)


def store(module: Any, field: str, data: Any, modality: Modality) -> None:
    """Register ``data`` as ``field``'s bank on ``module`` (a float32 or integer copy on its device), or with
    None remove the bank.

    Args:
        module: The module holding the bank (a LightningModule: its ``device``).
        field: An instance field with an encoder (checked by the caller).
        data: A batch of ``field`` in its layout with n >= 1 items, or None.
        modality: The field's modality (its ``check_field`` raises on data of the wrong layout).
    """
    if data is None:
        module._buffers.pop(BANK_PREFIX + field, None)
        return
    data = torch.as_tensor(data)
    if data.dim() < 1 or data.shape[0] < 1:
        raise ValueError(
            f"the anchor bank of {field!r} needs at least one item, got shape {tuple(data.shape)}"
        )
    modality.check_field(data, field)
    data = data.detach().to(module.device)
    module.register_buffer(BANK_PREFIX + field, (data.float() if data.is_floating_point() else data).clone())


def make_room(module: Any, state_dict: Mapping[str, Tensor], fields: Container[str]) -> None:
    """Drop ``module``'s banks and register one of the right size for each bank of a field in ``fields`` that
    ``state_dict`` holds, so that ``load_state_dict`` then fills them (a bank of another field stays an
    unexpected key)."""
    for key in [k for k in module._buffers if k.startswith(BANK_PREFIX)]:
        module._buffers.pop(key)
    for key, bank in state_dict.items():
        if key.startswith(BANK_PREFIX) and key[len(BANK_PREFIX) :] in fields:
            module.register_buffer(key, torch.zeros_like(bank, device=module.device))
