"""From any field to any other through the shared latent: latents, translation and retrieval (functional).

The functional layer beneath :class:`~lzn_lightning.inference.LZNInference` (``model.generate``,
``model.classify``): a batch is its own field (no anchor bank, no chunking), results stay token ids, and
:func:`retrieve` finds the candidate whose zone a latent falls in. These work on the fields of a trained
:class:`~lzn_lightning.LZNLightningModule`, whatever their data types (image, text, a user's own modality):
nothing here knows about pixels or characters.

    z = latents(model, "text", tokens)                       # [B, d]: each text through its batch's zones
    images = translate(model, "text", tokens, "image")       # the image decoder from the texts' latents
    captions = translate(model, "image", images, "text")     # the text decoder from the images' latents
    best = retrieve(model, "image", images, "text", tokens)  # per image, the index of the text whose zone
                                                             # its latent lands in (labels: the class zone)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lzn_lightning.latent import compute_latent, nearest_anchor, trace_back


def _checked(model: Any, field: str, x: Tensor) -> Tensor:
    if field not in model.field_map:
        raise ValueError(f"{field!r} is not a field of this model; its fields: {sorted(model.field_map)}")
    x = x.to(model.device)
    model.modality(field).check_field(x, field)
    return x


def anchors(model: Any, field: str, x: Tensor | None = None) -> Tensor:
    """Anchors [n, d] of data ``x`` of an instance field, or the anchor table of a categorical field."""
    m = model.modality(field)
    if m.kind == "categorical":
        return m.anchor_table()
    if x is None:
        raise ValueError(f"field {field!r} is an instance field: pass its data")
    return m.encode(_checked(model, field, x))


@torch.no_grad()
def latents(
    model: Any,
    field: str,
    x: Tensor,
    noise_scale: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Latents [B, d] of a batch of a field: instance data through the zones of the whole batch; class
    indices of a categorical field through its label flow (inside each class's zone).

    Args:
        model: A trained LZN module (EMA weights are used when it has them).
        field: A field, e.g. ``"image"``, ``"text"`` or ``"label"``.
        x: The batch of that field (the field's own layout, e.g. token ids for text, class indices).
        noise_scale: Prior-noise scale (0: the zone centres' trajectories).
        generator: Random generator of the noise.
    """
    m = model.modality(field)
    shape = (len(x), model.latent_dim)
    noise = torch.zeros(shape, device=model.device)
    if noise_scale:
        noise = noise_scale * torch.randn(shape, generator=generator, device=model.device)
    with model.inference():
        if m.kind == "categorical":
            if not hasattr(m, "latent"):
                raise ValueError(f"categorical field {field!r} ({type(m).__name__}) has no latent() flow")
            return m.latent(_checked(model, field, x), noise)  # [B, d] inside each class's zone
        a = anchors(model, field, x)  # [B, d]
        flow = model.flow
        return compute_latent(a, a, noise, flow.steps, flow.solver, flow.eps)


@torch.no_grad()
def translate(
    model: Any,
    source: str,
    x: Tensor,
    target: str,
    noise_scale: float = 0.0,
    generator: torch.Generator | None = None,
    **decode_kwargs: Any,
) -> Any:
    """Decode field ``target`` from the latents of a batch of field ``source`` (see :func:`latents`).

    ``generator`` draws the latents' prior noise and the decoder's randomness; ``decode_kwargs`` go to the
    target modality's ``decode`` (e.g. ``temperature`` for text, ``steps`` for images).

    Returns what the target modality's ``decode`` returns (images [B, C, H, W], token ids [B, L], class
    indices); text targets may use :meth:`~lzn_lightning.modalities.TextModality.detokenize` on the result.
    """
    m = model.modality(target)
    if not m.has_decoder and m.kind != "categorical":
        raise ValueError(f"field {target!r} has no decoder to translate into")
    z = latents(model, source, x, noise_scale=noise_scale, generator=generator)
    with model.inference():
        return m.decode(z, generator=generator, **decode_kwargs)


@torch.no_grad()
def retrieve(model: Any, source: str, x: Tensor, target: str, candidates: Tensor | None = None) -> Tensor:
    """For each item of ``x``, the index of the ``target`` zone its latent falls in ([B], int64).

    The latents of ``x`` are traced back through the target anchors: the ``candidates`` of an instance field
    (e.g. a set of captions) or the anchor table of a categorical field (then the indices are class labels).
    """
    z = latents(model, source, x)
    with model.inference():
        zone_anchors = anchors(model, target, candidates)  # [n, d]
        steps = next((a.steps for a in model.align if a.target == target), 100)
        point, _ = trace_back(z, zone_anchors, steps)
        return nearest_anchor(point, zone_anchors).cpu()
