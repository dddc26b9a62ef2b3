"""One batch's losses: anchors, latents, decoder losses and alignment terms (docs/design/architecture.md §5).

:meth:`LZNLightningModule.losses <lzn_lightning.LZNLightningModule.losses>` runs :func:`batch_losses` for the
training and evaluation steps (and callbacks that measure gradients). The maths lives in
:mod:`lzn_lightning.latent` and :mod:`lzn_lightning.objectives`; this is the orchestration:

1. every needed instance field is checked, preprocessed and encoded to anchors; categorical fields give their
   table;
2. the ``latent_from`` field's latents (and those of every other ``decode`` field) are computed through the
   field of all gathered anchors of that field (``model.latents_of``);
3. each ``decode`` field's decoder loss is conditioned on its latents (detached when
   ``decoder_trains_encoder`` is off);
4. each ``align`` term traces the source latents back through the target anchors and rewards the right zone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lzn_lightning import distributed as D
from lzn_lightning.config import AlignConfig
from lzn_lightning.health import anchor_stats, latent_stats


def batch_losses(
    model: Any, batch: dict[str, Tensor], train: bool
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Weighted loss terms and (detached) diagnostics of ``model`` (an
    :class:`~lzn_lightning.LZNLightningModule`) on one batch.

    Args:
        model: The module: its modalities, ``latent_from``, ``decode_fields``, ``align``, ``flow``,
            ``latents_of`` (latents through the field of every rank's anchors) and ``generator()``.
        batch: The batch, a dict of fields.
        train: Training (preprocessing, ``flow.noise_scale``, class weights) or evaluation
            (``eval_flow_noise``).

    Returns:
        (``{"<field>/decoder" | "align/<source>-><target>": weighted loss}``, ``{name: diagnostic}``).
    """
    missing = [f for f in needed_fields(model) if f not in batch]
    if missing:
        raise ValueError(f"batch has no field(s) {missing}; it has {sorted(batch)}")
    anchors: dict[str, Tensor] = {}

    def anchors_of(field: str) -> Tensor:
        if field not in anchors:
            m = model.modality(field)
            x = batch[field]
            m.check_field(x, field)
            anchors[field] = m.encode(m.preprocess(x, train)) if m.kind == "instance" else m.anchor_table()
        return anchors[field]

    noise_scale = model.flow.noise_scale if train else model.eval_flow_noise
    losses: dict[str, Tensor] = {}
    stats: dict[str, Tensor] = {}
    latents: dict[str, Tensor] = {}
    if model.latent_from is not None:
        latents[model.latent_from] = model.latents_of(anchors_of(model.latent_from), noise_scale)
    for field in model.decode_fields:
        m = model.modality(field)
        m.check_field(batch[field], field)
        z = None  # a plain decoder (latent_from None) is not conditioned on a latent
        if model.latent_from is not None:
            if field not in latents:
                latents[field] = model.latents_of(anchors_of(field), noise_scale)
            z = latents[field] if model.decoder_trains_encoder else latents[field].detach()
        losses[f"{field}/decoder"] = model.decoder_weight * m.decoder_loss(  # type: ignore[operator]
            batch[field], z, batch, model.generator()
        )
    for a in model.align:
        objective = a.objective()
        if objective.needs_latents:
            if a.source not in latents:
                latents[a.source] = model.latents_of(anchors_of(a.source), noise_scale)
            source = latents[a.source]
        else:  # a baseline objective on the anchors themselves: no latent flow
            source = anchors_of(a.source)
        weighted = train and a.class_weights and objective.weighs_zones
        target_anchors, targets, log_w = _zones(model, a, anchors_of(a.target), batch, weighted)
        term = objective.align(source, target_anchors, targets, log_w)
        losses[f"align/{a.source}->{a.target}"] = a.weight * term.loss
        stats[f"zone_acc/{a.source}->{a.target}"] = term.zone_accuracy
        if term.zone_probability is not None:
            stats[f"zone_prob/{a.source}->{a.target}"] = term.zone_probability
    if not losses:
        raise ValueError("nothing to train: no decoder on latent_from and no align terms")
    for field, a in anchors.items():
        if model.modality(field).kind == "instance":
            stats.update({f"health/{k}/{field}": v for k, v in anchor_stats(a).items()})
    for field, z in latents.items():
        stats.update({f"health/{k}/{field}": v for k, v in latent_stats(z).items()})
    return losses, stats


def _zones(
    model: Any, a: AlignConfig, local: Tensor, batch: dict[str, Tensor], weighted: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(zone anchors [n, d], target index per local row [b], log weights [n] of a categorical target when
    ``weighted``, else None) for one align term."""
    m = model.modality(a.target)
    if m.kind == "categorical":
        labels = batch[a.target].long()
        log_w = None
        if weighted:  # the global batch's class frequencies (an all-reduce)
            counts = D.global_sum(torch.bincount(labels, minlength=local.shape[0]).float())  # [K]
            log_w = torch.log(counts / counts.sum())  # absent class -> -inf (zero weight)
        return local, labels, log_w
    b = local.shape[0]
    everyone = D.gather_with_grad(local)  # [world*b, d]
    targets = D.rank() * b + torch.arange(b, device=local.device)  # this rank's rows of the gathered set
    return everyone, targets, None


def needed_fields(model: Any) -> list[str]:
    """The batch fields that :func:`batch_losses` reads."""
    fields = ([model.latent_from] if model.latent_from else []) + model.decode_fields
    for a in model.align:
        fields += [a.source, a.target]
    return sorted(set(fields))
