""":class:`LZNInference`: the Python inference API of a trained LZN model, over any of its fields.

Each method checks its arguments, resolves the fields through the model's ``routing``
(:class:`~lzn_lightning.inference.routing.FieldRouting`) and runs the rooms of this package: latents in a
bank or batch context (:mod:`~lzn_lightning.inference.latents`), generation
(:mod:`~lzn_lightning.inference.generation`), one-batch operations
(:mod:`~lzn_lightning.inference.one_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

import lzn_lightning.inference.generation as generation
import lzn_lightning.inference.one_batch as one_batch
from lzn_lightning.inference.batching import (
    DEFAULT_BATCH_SIZE,
    chunks,
    on_device,
    prepared,
    progress_bar,
    seeded_generator,
)
from lzn_lightning.inference.latents import encode, item_latents


class LZNInference:
    """Python inference API of a trained LZN model, over any of its fields.

    Args:
        model: An :class:`~lzn_lightning.LZNLightningModule` (anything with its ``modalities``, ``field_map``,
            ``routing``, ``flow``, ``eval_flow_noise``, ``latent_dim``, ``anchor_bank_of()``, ``inference()``
            and ``device``).
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------------------ one batch, its own field
    def batch_latents(
        self, data: Any, field: str, noise_scale: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Latents [B, d], on the model's device, of one batch of any field, the batch being its own field
        (no anchor bank, no chunking): instance items through the zones of the batch, class indices of a
        categorical field through their label flow (inside each class's zone).

        Args:
            data: The batch, in the field's layout or what its modality's ``prepare`` takes.
            field: Any field of the model, e.g. ``"image"``, ``"text"`` or ``"label"``.
            noise_scale: Prior-noise scale (0: the zone centres' trajectories, no draw).
            generator: Random generator of the noise (None: torch's global RNG).
        """
        return one_batch.latents(self.model, data, field, noise_scale=noise_scale, generator=generator)

    def anchors(self, field: str, data: Any = None) -> Tensor:
        """Anchors [n, d], on the model's device, of data of an instance field (one batch), or the anchor
        table of a categorical field (``data`` not needed)."""
        return one_batch.anchors(self.model, field, data)

    def translate(
        self,
        data: Any,
        source: str,
        target: str,
        noise_scale: float = 0.0,
        generator: torch.Generator | None = None,
        **decode_options: Any,
    ) -> Any:
        """Decode field ``target`` from the :meth:`batch_latents` of one batch of field ``source``.

        The functional form of ``generate(condition={source: data}, target=target)``: the batch is its own
        field, and the result is the target modality's raw ``decode`` output on the model's device (images
        [B, C, H, W], token ids [B, L], class indices), not its ``present``.

        Args:
            data: The batch of ``source`` (its layout or what its modality's ``prepare`` takes).
            source: The field to start from (instance or categorical).
            target: The field to decode (it needs a decoder, or class zones).
            noise_scale: Prior-noise scale of the latents (0: the zone centres' trajectories).
            generator: Draws the latents' prior noise and the decoder's randomness (None: the global RNG).
            **decode_options: Passed to the target modality's ``decode`` (``temperature`` for text,
                ``steps`` for images).
        """
        return one_batch.translate(
            self.model, data, source, target, noise_scale=noise_scale, generator=generator, **decode_options
        )

    def retrieve(self, data: Any, source: str, target: str, candidates: Any = None) -> Tensor:
        """For each item of a batch of ``source``, the index of the ``target`` zone its latent falls in.

        The :meth:`batch_latents` of ``data`` are traced back through the target anchors: the ``candidates``
        of an instance field (e.g. a set of captions) or the anchor table of a categorical field (then the
        indices are class labels).

        Returns:
            LongTensor [B] on the CPU.
        """
        return one_batch.retrieve(self.model, data, source, target, candidates)

    # ------------------------------------------------------------------------------------------- the API
    def latents(
        self,
        data: Any,
        field: str | None = None,
        context: str | None = None,
        noise_scale: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int | None = 0,
        progress: bool | None = None,
    ) -> Tensor:
        """LZN latents of items of an instance field (the shared-space point classification, translation and
        reconstruction start from).

        Args:
            data: Items of the field in its layout (images [N, C, H, W] in [-1, 1]) or in what its modality's
                ``prepare`` takes (a list of strings for text).
            field: The field (None: the encoded field, ``latent_from``).
            context: ``"bank"`` or ``"batch"`` (see :mod:`lzn_lightning.inference.latents`); None: ``"bank"``
                when the model has an anchor bank of this field, else ``"batch"``.
            noise_scale: Prior-noise scale (0: the deterministic zone-centre trajectory); None: 0 for
                ``"bank"``, the model's ``eval_flow_noise`` for ``"batch"``.
            batch_size: Items per batch; in ``"batch"`` context also the size of the field.
            seed: Seed of the prior noise (None: from torch's global RNG).
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            Float [N, d] on the CPU.
        """
        model = self.model
        field = model.routing.source_field(field)
        with model.inference():
            x = prepared(model, data, field)
            g = seeded_generator(model, seed, None)
            z = item_latents(model, x, field, context, noise_scale, batch_size, g, progress, "latents")
        return z.cpu()

    def generate(
        self,
        num: int | None = None,
        labels: Any = None,
        condition: Mapping[str, Any] | None = None,
        target: str | None = None,
        noise_scale: float = 1.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool | None = None,
        **decode_options: Any,
    ) -> Any:
        """Generate data of field ``target`` from the shared latent, unconditionally or from another field.

        Unconditional (no ``condition``): latent z ~ N(0, I), the distribution of LZN latents by construction.
        Conditioned on a categorical field (``condition={"label": y}``, or ``labels=y``): the latent of class
        y is the forward label flow from y's anchor with prior noise, so it lands inside y's zone
        (docs/design/lzn.md §4). Conditioned on an instance field (``condition={"text": [...]}``,
        ``{"image": images}``): each item's latent is computed through its field (the anchor bank of that
        field when the model has one, else the items given together), with prior noise. Then ``target``'s
        decoder turns the latents into data. A label-conditioned image decoder gets the given labels, or else
        the labels of the latents' zones (reverse label flow), as the reference does.

        Args:
            num: Number of items N (needed for unconditional samples; otherwise the condition's length).
            labels: Shorthand for ``condition={<label field>: labels}`` (LongTensor [N] of class indices).
            condition: ``{field: data}``, one field, in its layout or what its ``prepare`` takes (strings).
            target: The field to generate (None: ``latent_from`` when it decodes, else the first decoder).
            noise_scale: Prior-noise scale of the conditioned latents (1: samples spread over each zone, as
                in training; 0: the zone centres' trajectories).
            batch_size: Items per decoder batch.
            seed: Seed of all the randomness (latents and decoder noise); ignored when ``generator`` is given;
                None draws it from torch's global RNG.
            generator: A torch.Generator on the model's device to draw from.
            progress: Show a progress bar (None: for jobs of several batches).
            **decode_options: Passed to the target modality's ``decode``: ``steps`` / ``method`` of the RF
                sampler for images, ``temperature`` / ``top_k`` for text.

        Returns:
            The target modality's ``present`` of the decoded batch: images Float [N, C, H, W] in [-1, 1] on
            the CPU; text, a list of N strings.
        """
        request = generation.generation_request(self.model, num, labels, condition, target, noise_scale)
        g = seeded_generator(self.model, seed, generator)
        return generation.generate(self.model, request, noise_scale, batch_size, g, progress, decode_options)

    def classify(
        self,
        data: Any,
        field: str | None = None,
        context: str | None = None,
        noise_scale: float | None = None,
        class_weights: Tensor | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int | None = 0,
        progress: bool | None = None,
    ) -> Tensor:
        """Class of each item: its latent, the reverse label flow, the nearest label anchor
        (docs/design/lzn.md §4).

        ``context="bank"`` (default when the model has an anchor bank of the field) gives each item a label
        that depends only on the item: the field is the fixed bank of training items plus the item itself,
        and the prior noise is 0 (the zone-centre trajectory) unless ``noise_scale`` says otherwise (then each
        item's noise is seeded by its own bytes). ``context="batch"`` is the reference: the field is the
        anchors of the ``batch_size`` items classified together and the prior noise is drawn at
        ``eval_flow_noise``; a label can then change with the batch-mates, the batch size and the seed. See
        docs/results.md for the accuracy of both on the digits recipe. A model trained with the supervised
        ``"ce"`` baseline form predicts the nearest label anchor of each item's anchor (no flow; context and
        noise do not apply).

        Args:
            data: Items of ``field`` (images [N, C, H, W] in [-1, 1], the datamodule's layout; a list of
                strings for text).
            field: The instance field the items belong to (None: the encoded field, ``latent_from``).
            context: ``"bank"`` or ``"batch"``; None: ``"bank"`` when the model has an anchor bank of it.
            noise_scale: Prior-noise scale of the flow (None: 0 for ``"bank"``, ``eval_flow_noise`` for
                ``"batch"``).
            class_weights: Optional [K] class prior for the label zones; None (the default) is uniform. The
                reference's "with class weights" accuracy uses the test batch's true class frequencies.
            batch_size: Items per batch (in ``"batch"`` context, also the size of the field).
            seed: Seed of the prior noise (None: from torch's global RNG).
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            LongTensor [N] on the CPU.
        """
        model = self.model
        field = model.routing.source_field(field)
        label_field = model.routing.label_field(field)
        label_mod = model.modality(label_field)  # type: ignore[arg-type]
        with model.inference():
            x = prepared(model, data, field)
            log_w = None
            if class_weights is not None:
                w = torch.as_tensor(class_weights, dtype=torch.float32, device=self.device).reshape(-1)
                k = label_mod.anchor_table().shape[0]
                if w.shape[0] != k or bool((w < 0).any()) or float(w.sum()) <= 0:
                    raise ValueError(f"class_weights must be {k} non-negative numbers, not all 0")
                log_w = torch.log(w / w.sum())
            objective = model.routing.anchor_classifier(field, label_field)
            if objective is not None:  # the supervised baseline: nearest label anchor, no flow
                anchors = encode(model, x, field, batch_size)  # [N, d]
                return objective.predict(anchors, label_mod.anchor_table(), log_w).cpu()
            g = seeded_generator(model, seed, None)
            z = item_latents(model, x, field, context, noise_scale, batch_size, g, progress, "classify")
            preds = [label_mod.decode(z[s], log_weights=log_w) for s in chunks(len(z), batch_size)]
        return torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.long)

    def embed(
        self,
        data: Any,
        field: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
    ) -> Tensor:
        """The representation of each item: its modality's ``embed`` (no flow, batch-independent).

        For timm-backbone image recipes it is the pre-head feature (docs/design/lzn.md §4, "no head"); for the
        tower encoder and text, the anchor.

        Args:
            data: Items of ``field`` (images [N, C, H, W] in [-1, 1]; a list of strings for text).
            field: The instance field (None: the encoded field, ``latent_from``).
            batch_size: Items per batch.
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            Float [N, D] on the CPU.
        """
        model = self.model
        field = model.routing.source_field(field)
        m = model.modality(field)
        x = prepared(model, data, field)
        parts = chunks(len(x), batch_size)
        out = []
        with model.inference(), progress_bar(len(x), len(parts), progress, "embed") as bar:
            for s in parts:
                out.append(m.embed(on_device(model, x[s])).float().cpu())
                bar.update(s.stop - s.start)
        return torch.cat(out) if out else torch.zeros(0, 0)

    def reconstruct(
        self,
        data: Any,
        labels: Tensor | None = None,
        field: str | None = None,
        context: str | None = None,
        noise_scale: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int | None = 0,
        progress: bool | None = None,
        **options: Any,
    ) -> Tensor:
        """Encode, then let the field's modality rebuild each item from its latent ("Recon",
        docs/design/lzn.md §4): for images, invert the RF ODE from the image to its noise and decode again.

        Args:
            data: Items of ``field`` (images [N, C, H, W] in [-1, 1]).
            labels: LongTensor [N] for a label-conditioned decoder (the reference uses the true labels); None
                uses :meth:`classify`'s labels.
            field: The field to reconstruct (None: the field the decoder decodes).
            context: Field of the latents, as in :meth:`classify` (the reference metric uses ``"batch"``).
            noise_scale: Prior-noise scale of the flow (None: as in :meth:`classify`).
            batch_size: Items per batch.
            seed: Seed of the prior noise (None: from torch's global RNG).
            progress: Show a progress bar (None: for jobs of several batches).
            **options: Passed to the modality's ``reconstruct`` (``steps``, ``method`` for images).

        Returns:
            The reconstructions, in the layout of ``data`` (images Float [N, C, H, W] in [-1, 1]) on the CPU.
            :func:`lzn_lightning.metrics.mean_reconstruction_l2` measures them as the reference does.
        """
        model = self.model
        field = model.routing.decoder_field(field)
        m = model.modality(field)
        encoded = model.latent_from is not None  # a plain RF baseline is not conditioned on latents
        if encoded and field != model.routing.source_field():
            raise ValueError(
                f"the decoder of {field!r} does not decode the encoded field {model.routing.source_field()!r}"
            )
        conditioned = m.decoder_classes > 0
        if conditioned and labels is None:
            labels = self.classify(
                data, context=context, noise_scale=noise_scale, batch_size=batch_size, seed=seed
            )
        with model.inference():
            x = prepared(model, data, field)
            g = seeded_generator(model, seed, None)
            z = (
                item_latents(model, x, field, context, noise_scale, batch_size, g, progress, "latents")
                if encoded
                else None
            )
            out = []
            for s in chunks(len(x), batch_size):
                y = labels[s].to(self.device).long() if conditioned and labels is not None else None
                zs = z[s] if z is not None else None
                out.append(m.reconstruct(on_device(model, x[s]), zs, labels=y, **options).cpu())
        return torch.cat(out) if out else x[:0].cpu()
