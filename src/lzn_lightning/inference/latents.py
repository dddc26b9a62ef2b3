"""Latents of items in a bank or a batch context, with per-item noise (docs/design/lzn.md §1.2, §4).

Classification and reconstruction need the latent of an item, which LZN defines through a *field* of anchors.
Two contexts are offered:

* ``"batch"`` (the reference, docs/design/lzn.md §4): the field is the anchors of the items processed
  together. An item's label can change with its batch-mates and with the batch size; a single item alone gets
  a latent that is pure noise.
* ``"bank"`` (the default when the model holds an anchor bank): the field is a fixed bank of training items of
  the encoded field (``model.set_anchor_bank``, saved in the checkpoint), plus the item's own anchor (every
  item sees the same kind of field as in training: B-1 other training items and itself). A batch is computed
  at once (one extra zone per row), yet each label depends on nothing but the item.

Every function takes the model (an :class:`~lzn_lightning.LZNLightningModule`: its ``modality()``, ``flow``,
``latent_dim``, ``eval_flow_noise``, ``anchor_bank_of()`` and ``device``) and expects to run inside
``model.inference()``.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lzn_lightning.inference.batching import chunks, on_device, progress_bar
from lzn_lightning.latent import compute_latent

CONTEXTS = ("bank", "batch")
# The model attribute (not a buffer: never saved) that keeps each field's encoded bank between calls.
_BANK_CACHE = "_lzn_bank_anchors"


@dataclass(frozen=True)
class _BankAnchors:
    """A field's bank anchors [n, d] and what they were encoded from, so that a call reuses them while nothing
    they depend on changed.

    The bank items are compared by identity and version (``set_anchor_bank`` stores a new tensor; an in-place
    change or ``load_state_dict`` bumps the version); the field modality's weights by value, against a copy
    taken at encoding time, because an EMA swap rewrites the same tensors (same values) on every call.
    """

    items: Tensor  # the bank items encoded (held, so that identity cannot be reused by another tensor)
    items_version: int
    settings: tuple[Any, ...]  # batch size, device, train mode, autocast: what else changes the encoding
    weights: tuple[Tensor, ...]  # copies of the modality's parameters and buffers
    anchors: Tensor  # [n, d]

    def matches(self, items: Tensor, settings: tuple[Any, ...], weights: list[Tensor]) -> bool:
        """Whether anchors encoded now from ``items`` with ``weights`` would be these."""
        return (
            self.items is items
            and self.items_version == items._version
            and self.settings == settings
            and len(self.weights) == len(weights)
            and all(_same_tensor(a, b) for a, b in zip(self.weights, weights, strict=True))
        )


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


def resolve_context(model: Any, context: str | None, field: str) -> str:
    """The context of a call: ``context`` checked (a bank context without a bank warns and falls back to the
    batch), or by default ``"bank"`` when the model has a bank of ``field``, else ``"batch"``."""
    has_bank = model.anchor_bank_of(field) is not None
    if context is None:
        return "bank" if has_bank else "batch"
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    if context == "bank" and not has_bank:
        warnings.warn(
            f"this model has no anchor bank of {field!r} (set_anchor_bank / the AnchorBank callback), so "
            "latents are computed through the batch's own anchors (context='batch', the reference "
            "behaviour): results depend on which items share a batch",
            RuntimeWarning,
            stacklevel=3,  # the public LZNInference method
        )
        return "batch"
    return context


def resolve_noise_scale(model: Any, context: str, noise_scale: float | None) -> float:
    """``noise_scale`` checked, or by default 0 in the bank context and ``eval_flow_noise`` in the batch."""
    if noise_scale is not None:
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        return float(noise_scale)
    return 0.0 if context == "bank" else float(model.eval_flow_noise)


def encode(model: Any, x: Tensor, field: str, batch_size: int) -> Tensor:
    """Anchors [n, d] of checked items ``x`` of an instance field, encoded ``batch_size`` at a time."""
    m = model.modality(field)
    parts = [m.encode(on_device(model, x[s])) for s in chunks(len(x), batch_size)]
    return torch.cat(parts)  # [n, d]


def bank_anchors(model: Any, field: str, batch_size: int) -> Tensor:
    """Anchors [n, d] of ``field``'s anchor bank under the weights in use.

    Encoded once and kept on the model (with a copy of the field modality's weights) while the bank items,
    those weights and the encoding settings stay the same (``_BankAnchors``), so that a bank-context call
    costs the encoding of its own items only, as a batch-context call does; training, an EMA update or
    new items encode the bank again at the next call.
    """
    items = model.anchor_bank_of(field)
    m = model.modality(field)
    weights = [t.detach() for t in (*m.parameters(), *m.buffers())]
    kind = model.device.type  # autocast, train mode, batch size and device change what encode returns
    settings = (batch_size, model.device, m.training, torch.is_autocast_enabled(kind))
    settings += (torch.get_autocast_dtype(kind),)
    cache = getattr(model, _BANK_CACHE, None)
    if cache is None:
        cache = {}
        setattr(model, _BANK_CACHE, cache)
    kept = cache.get(field)
    if kept is not None and kept.matches(items, settings, weights):
        return kept.anchors
    anchors = encode(model, items, field, batch_size)  # [n, d]
    copies = tuple(w.clone() for w in weights)
    cache[field] = _BankAnchors(items, items._version, settings, copies, anchors)
    return anchors


def prior_noise(model: Any, x: Tensor, scale: float, g: torch.Generator | None, base: int | None) -> Tensor:
    """Prior noise [b, d] for a chunk x. With a ``base`` seed (one per call, drawn from ``g``) each row's
    draw is seeded by ``base`` and its item's bytes, so an item gets the same noise whatever its position,
    batch-mates and batch size."""
    d, device = model.latent_dim, model.device
    if scale == 0.0:
        return torch.zeros(len(x), d, device=device)
    if base is None:
        return scale * torch.randn(len(x), d, generator=g, device=device)
    out = []
    for item in x:
        digest = hashlib.blake2b(item.detach().cpu().numpy().tobytes(), digest_size=8).digest()
        gi = torch.Generator(device=device).manual_seed(int.from_bytes(digest, "little") ^ base)
        out.append(torch.randn(1, d, generator=gi, device=device))
    return scale * torch.cat(out)  # [b, d]


def zone_latents(model: Any, x: Tensor, field: str, noise: Tensor, bank: Tensor | None = None) -> Tensor:
    """Latents [b, d] of a checked chunk ``x`` (on the device) of ``field`` from its prior noise [b, d]:
    class indices through their label flow (inside each class's zone); instance items through the zones
    of their field, the chunk's own anchors (``bank`` None, the reference) or the anchors ``bank`` [n, d]
    plus each item itself."""
    m = model.modality(field)
    if m.kind == "categorical":
        return m.latent(x, noise)  # [b, d]
    anchors = m.encode(x)  # [b, d]
    flow = model.flow
    if bank is None:  # the reference: the chunk's own anchors are the field
        return compute_latent(anchors, anchors, noise, flow.steps, flow.solver, flow.eps)
    # each row's field is the bank and itself: nothing but the item and the bank decides
    return compute_latent(bank, anchors, noise, flow.steps, flow.solver, flow.eps, self_in_field=True)


def item_latents(
    model: Any,
    x: Tensor,
    field: str,
    context: str | None,
    noise_scale: float | None,
    batch_size: int,
    g: torch.Generator,
    progress: bool | None,
    desc: str,
) -> Tensor:
    """Latents [N, d] (on the model's device) of checked items of an instance field, ``batch_size`` at a
    time; ``context`` and ``noise_scale`` as the public methods take them (None: the defaults)."""
    context = resolve_context(model, context, field)
    noise_scale = resolve_noise_scale(model, context, noise_scale)
    parts = chunks(len(x), batch_size)
    bank = bank_anchors(model, field, batch_size) if context == "bank" else None  # [n, d]
    base = None  # one base seed per call (not per chunk), so per-item noise does not depend on the chunking
    if bank is not None:
        base = int(torch.randint(0, 2**31, (), generator=g, device=g.device).item())
    out = []
    with progress_bar(len(x), len(parts), progress, f"{desc} ({context})") as bar:
        for s in parts:
            xs = on_device(model, x[s])
            out.append(zone_latents(model, xs, field, prior_noise(model, xs, noise_scale, g, base), bank))
            bar.update(len(xs))
    return torch.cat(out) if out else torch.zeros(0, model.latent_dim, device=model.device)  # [N, d]
