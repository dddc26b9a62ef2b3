"""From any field to any other through the shared latent: latents, translation and retrieval (functional).

Function-style shorthands of :class:`~lzn_lightning.inference.LZNInference`'s one-batch operations
(:meth:`~lzn_lightning.inference.LZNInference.batch_latents`, ``translate``, ``retrieve``, ``anchors``), for
research code: a batch is its own field (no anchor bank, no chunking), results stay on the model's device
and in the field's layout (token ids, not strings). They work on the fields of a trained
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

from lzn_lightning.inference import LZNInference


def anchors(model: Any, field: str, x: Tensor | None = None) -> Tensor:
    """Anchors [n, d] of data ``x`` of an instance field, or the anchor table of a categorical field."""
    return LZNInference(model).anchors(field, x)


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
    return LZNInference(model).batch_latents(x, field, noise_scale=noise_scale, generator=generator)


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
    return LZNInference(model).translate(
        x, source, target, noise_scale=noise_scale, generator=generator, **decode_kwargs
    )


def retrieve(model: Any, source: str, x: Tensor, target: str, candidates: Tensor | None = None) -> Tensor:
    """For each item of ``x``, the index of the ``target`` zone its latent falls in ([B], int64).

    The latents of ``x`` are traced back through the target anchors: the ``candidates`` of an instance field
    (e.g. a set of captions) or the anchor table of a categorical field (then the indices are class labels).
    """
    return LZNInference(model).retrieve(x, source, target, candidates)
