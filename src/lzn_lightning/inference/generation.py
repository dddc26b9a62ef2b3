"""Generation: a request checked and resolved from ``generate``'s arguments, then latents and decoding.

:func:`generation_request` turns ``generate(num, labels, condition, target)`` into one
:class:`GenerationRequest`; :func:`generate` draws each chunk's latents (N(0, I), inside class zones, or
through the zones of an instance-field condition) and lets the target modality decode them. Functions of the
model (an :class:`~lzn_lightning.LZNLightningModule`), called by
:meth:`~lzn_lightning.inference.LZNInference.generate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lzn_lightning.inference.batching import chunks, on_device, prepared, progress_bar
from lzn_lightning.inference.latents import item_latents, zone_latents


@dataclass(frozen=True)
class GenerationRequest:
    """What :meth:`~lzn_lightning.inference.LZNInference.generate` was asked for, checked and resolved."""

    target: str  # the field to decode
    num: int  # items to generate
    field: str | None  # the condition's field; None: unconditional
    data: Tensor | None  # the condition, prepared (the field's layout)
    decoder_labels: Tensor | None  # classes given straight to the decoder (a model without label zones)
    label_field: str | None  # the field with class zones, if any
    decoder_classes: int  # > 0: the decoder also takes one class per sample


def generation_request(
    model: Any,
    num: int | None,
    labels: Any,
    condition: Mapping[str, Any] | None,
    target: str | None,
    noise_scale: float,
) -> GenerationRequest:
    """``generate``'s arguments, checked and resolved into one request (``labels`` become a condition on the
    label field, or the decoder's own classes on a model without label zones)."""
    target = model.routing.decoder_field(target)
    classes = model.modality(target).decoder_classes
    label_field = model.routing.label_field(required=False)
    decoder_labels = None
    if labels is not None:
        if condition:
            raise ValueError("give labels or condition, not both")
        labels = torch.as_tensor(labels).long().reshape(-1)
        if label_field is not None:
            condition = {label_field: labels}
        elif classes > 0:
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
                raise ValueError(f"labels must be in [0, {classes})")
            decoder_labels = labels
        else:
            raise ValueError(
                "this model has no label modality and an unconditional decoder: pass labels=None"
            )
    field, data = _condition(model, condition)
    given = data if data is not None else decoder_labels
    if given is not None:
        if num is not None and num != len(given):
            raise ValueError(f"num={num} but the condition has {len(given)} items; give one of them")
        num = len(given)
    if num is None or num < 0:
        raise ValueError(f"num must be an int >= 0 for unconditional samples, got {num}")
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    if field is not None and model.modality(field).kind == "categorical" and field != label_field:
        raise ValueError(f"cannot condition on {field!r}: the field with class zones is {label_field!r}")
    return GenerationRequest(target, num, field, data, decoder_labels, label_field, classes)


def _condition(model: Any, condition: Mapping[str, Any] | None) -> tuple[str | None, Tensor | None]:
    """(field, prepared data) of ``generate``'s condition, or (None, None)."""
    if not condition:
        return None, None
    if not isinstance(condition, Mapping) or len(condition) != 1:
        raise ValueError(f"condition must be a dict of one field and its data, got {condition!r:.80}")
    ((field, data),) = condition.items()
    if field not in model.field_map:
        fields = sorted(model.field_map)
        raise ValueError(f"condition field {field!r} is not a field of this model; its fields: {fields}")
    if model.modality(field).kind == "instance":
        model.routing.source_field(field)  # it must have an encoder
    return field, prepared(model, data, field)


def generate(
    model: Any,
    request: GenerationRequest,
    noise_scale: float,
    batch_size: int,
    g: torch.Generator,
    progress: bool | None,
    decode_options: Mapping[str, Any],
) -> Any:
    """The target modality's ``present`` of the data decoded for ``request``, ``batch_size`` at a time, all
    randomness drawn from ``g``."""
    m = model.modality(request.target)
    parts = chunks(request.num, batch_size) or [slice(0, 0)]  # one empty chunk: an empty batch
    out: list[Tensor] = []
    with model.inference(), progress_bar(request.num, len(parts), progress, "generate") as bar:
        z_items = None  # latents of an instance-field condition, through that field's zones
        if request.field is not None and model.modality(request.field).kind == "instance":
            z_items = item_latents(
                model, request.data, request.field, None, noise_scale, batch_size, g, False, "latents"
            )
        for s in parts:
            z, y = _chunk_latents(model, request, s, z_items, noise_scale, g)
            x = decode(m, z, _decoder_labels(model, request, z, y, g), g, decode_options)
            out.append(x.float().cpu() if x.is_floating_point() else x.cpu())
            bar.update(s.stop - s.start)
    return m.present(torch.cat(out))


def _chunk_latents(
    model: Any,
    request: GenerationRequest,
    s: slice,
    z_items: Tensor | None,
    noise_scale: float,
    g: torch.Generator,
) -> tuple[Tensor, Tensor | None]:
    """(latents [b, d], the chunk's given classes or None) of the items ``s`` of a generation request."""
    b, d = s.stop - s.start, model.latent_dim
    if z_items is None and request.field is not None:  # class indices: latents inside their zones
        y = on_device(model, request.data[s])  # type: ignore[index]
        # drawn even at noise_scale 0, so the decoder's draws that follow do not depend on the scale
        noise = noise_scale * torch.randn(b, d, generator=g, device=model.device)
        return zone_latents(model, y, request.field, noise), y
    y = request.decoder_labels[s].to(model.device) if request.decoder_labels is not None else None
    if z_items is not None:  # an instance-field condition: latents computed beforehand
        return z_items[s], y
    return torch.randn(b, d, generator=g, device=model.device), y  # LZN latents: N(0, I)


def _decoder_labels(
    model: Any, request: GenerationRequest, z: Tensor, y: Tensor | None, g: torch.Generator
) -> Tensor | None:
    """The classes a class-conditioned decoder gets: the given ones, else the zones of the latents ``z``
    (reverse label flow, as the reference does), else random ones; None for other decoders."""
    if request.decoder_classes <= 0:
        return None
    if y is not None:
        return y
    if request.label_field is not None:
        return model.modality(request.label_field).decode(z)
    return torch.randint(0, request.decoder_classes, (len(z),), generator=g, device=model.device)


def decode(
    m: Any, z: Tensor, labels: Tensor | None, g: torch.Generator | None, options: Mapping[str, Any]
) -> Any:
    """Modality ``m``'s decoding of latents ``z`` (with the classes of a class-conditioned decoder)."""
    if labels is None:
        return m.decode(z, generator=g, **options)
    return m.decode(z, labels=labels, generator=g, **options)
