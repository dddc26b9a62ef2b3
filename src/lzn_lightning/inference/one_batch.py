"""One batch as its own field: its latents and anchors, translation to another field, retrieval of zones.

Functions of a trained model, for research code (:mod:`lzn_lightning.crossmodal` re-exports them; the
:class:`~lzn_lightning.inference.LZNInference` methods of the same names call them): no anchor bank, no
chunking, results on the model's device and in the field's layout (token ids, not strings). Every function
takes the batch first, then the field(s): ``translate(model, x, source, target)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lzn_lightning.inference.batching import on_device, prepared
from lzn_lightning.inference.generation import decode
from lzn_lightning.inference.latents import prior_noise, zone_latents
from lzn_lightning.latent import nearest_anchor, trace_back


def latents(
    model: Any, x: Any, field: str, noise_scale: float = 0.0, generator: torch.Generator | None = None
) -> Tensor:
    """Latents [B, d], on the model's device, of one batch of any field, the batch being its own field:
    instance items through the zones of the batch, class indices of a categorical field through their label
    flow (inside each class's zone).

    Args:
        model: A trained LZN module (EMA weights are used when it has them).
        x: The batch, in the field's layout (e.g. token ids for text, class indices) or what its modality's
            ``prepare`` takes.
        field: Any field of the model, e.g. ``"image"``, ``"text"`` or ``"label"``.
        noise_scale: Prior-noise scale (0: the zone centres' trajectories, no draw).
        generator: Random generator of the noise (None: torch's global RNG).
    """
    model.routing.checked(field)
    with model.inference():
        xs = on_device(model, prepared(model, x, field))
        return zone_latents(model, xs, field, prior_noise(model, xs, noise_scale, generator, None))


def anchors(model: Any, field: str, x: Any = None) -> Tensor:
    """Anchors [n, d], on the model's device, of a batch ``x`` of an instance field, or the anchor table of a
    categorical field (``x`` not needed)."""
    m = model.modality(model.routing.checked(field))
    with model.inference():
        if m.kind == "categorical":
            return m.anchor_table()
        if x is None:
            raise ValueError(f"field {field!r} is an instance field: pass its data")
        return m.encode(on_device(model, prepared(model, x, field)))


def translate(
    model: Any,
    x: Any,
    source: str,
    target: str,
    noise_scale: float = 0.0,
    generator: torch.Generator | None = None,
    **decode_options: Any,
) -> Any:
    """Decode field ``target`` from the :func:`latents` of a batch ``x`` of field ``source``.

    The functional form of ``generate(condition={source: x}, target=target)``: the batch is its own field, and
    the result is the target modality's raw ``decode`` output on the model's device (images [B, C, H, W],
    token ids [B, L], class indices), not its ``present``; text targets may use
    :meth:`~lzn_lightning.modalities.TextModality.detokenize` on it.

    Args:
        model: A trained LZN module.
        x: The batch of ``source`` (its layout or what its modality's ``prepare`` takes).
        source: The field to start from (instance or categorical).
        target: The field to decode (it needs a decoder, or class zones).
        noise_scale: Prior-noise scale of the latents (0: the zone centres' trajectories).
        generator: Draws the latents' prior noise and the decoder's randomness (None: the global RNG).
        **decode_options: Passed to the target modality's ``decode`` (``temperature`` for text, ``steps`` for
            images).
    """
    m = model.modality(target)
    if not m.has_decoder and m.kind != "categorical":
        raise ValueError(f"field {target!r} has no decoder to translate into")
    z = latents(model, x, source, noise_scale=noise_scale, generator=generator)
    with model.inference():
        return decode(m, z, None, generator, decode_options)


def retrieve(model: Any, x: Any, source: str, target: str, candidates: Any = None) -> Tensor:
    """For each item of a batch ``x`` of ``source``, the index of the ``target`` zone its latent falls in.

    The :func:`latents` of ``x`` are traced back through the target anchors: the ``candidates`` of an instance
    field (e.g. a set of captions) or the anchor table of a categorical field (then the indices are class
    labels).

    Returns:
        LongTensor [B] on the CPU.
    """
    z = latents(model, x, source)
    with model.inference():
        zone_anchors = anchors(model, target, candidates)  # [n, d]
        point, _ = trace_back(z, zone_anchors, model.routing.trace_steps(target))
        return nearest_anchor(point, zone_anchors).cpu()
