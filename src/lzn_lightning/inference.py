"""Inference on a trained LZN model, for any of its fields (docs/design/architecture.md §6).

:class:`LZNInference` wraps a model (composition: it holds the module, the module does not inherit from it)
and works on fields, whatever their data type::

    infer = LZNInference(model)
    images = infer.generate(condition={"label": torch.arange(10)})         # label -> image
    images = infer.generate(condition={"text": ["a thick 3", "a 7"]})     # text -> image
    captions = infer.generate(condition={"image": images}, target="text")  # image -> text (strings)
    labels = infer.classify(images)                                       # image -> label
    labels = infer.classify(["great fun"], field="text")                  # text -> label

:class:`~lzn_lightning.LZNLightningModule` exposes the same methods (``model.generate(...)``,
``model.classify(...)``, ...), each a one-line call of this class, so a loaded checkpoint has them; this file
never imports the module (no import cycle).

Every method runs with the EMA weights (when the model has them), in eval mode, without gradients, in batches
on ``model.device``, with a tqdm progress bar for long jobs, and returns CPU tensors (or, for text, strings).
Raw data is turned into a field's tensors by its modality's ``prepare`` (e.g. strings -> token ids) and
decoded tensors into user data by ``present`` (token ids -> strings); images stay tensors.

The one-batch operations :meth:`~LZNInference.batch_latents`, :meth:`~LZNInference.translate`,
:meth:`~LZNInference.retrieve` and :meth:`~LZNInference.anchors` take the batch as its own field (no bank, no
chunking) and keep results on the device in the field's layout; :mod:`lzn_lightning.crossmodal` offers them
as functions of the model.

Classification and reconstruction need the latent of an item, which LZN defines through a *field* of anchors
(docs/design/lzn.md §1.2). Two contexts are offered:

* ``"batch"`` (the reference, docs/design/lzn.md §4): the field is the anchors of the items processed
  together. An item's label can change with its batch-mates and with the batch size; a single item alone gets
  a latent that is pure noise.
* ``"bank"`` (the default when the model holds an anchor bank): the field is a fixed bank of training items of
  the encoded field (``model.set_anchor_bank``, saved in the checkpoint), plus the item's own anchor (every
  item sees the same kind of field as in training: B-1 other training items and itself). A batch is computed
  at once (one extra zone per row), yet each label depends on nothing but the item.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lzn_lightning.latent import compute_latent, nearest_anchor, trace_back
from lzn_lightning.objectives import Objective

CONTEXTS = ("bank", "batch")
# Why 256: the global batch of the CPU recipes, i.e. the field size their zones were trained with; also a
# size at which one batch of 32 px images stays far below a GB on any device.
DEFAULT_BATCH_SIZE = 256
# Why 4: below that a job ends in a blink and a progress bar is noise (e.g. in every callback call).
_PROGRESS_MIN_BATCHES = 4
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


@dataclass(frozen=True)
class _GenerationRequest:
    """What :meth:`LZNInference.generate` was asked for, checked and resolved."""

    target: str  # the field to decode
    num: int  # items to generate
    field: str | None  # the condition's field; None: unconditional
    data: Tensor | None  # the condition, prepared (the field's layout)
    decoder_labels: Tensor | None  # classes given straight to the decoder (a model without label zones)
    label_field: str | None  # the field with class zones, if any
    decoder_classes: int  # > 0: the decoder also takes one class per sample


class LZNInference:
    """Python inference API of a trained LZN model, over any of its fields.

    Args:
        model: An :class:`~lzn_lightning.LZNLightningModule` (anything with its ``modalities``, ``field_map``,
            ``latent_from``, ``align``, ``flow``, ``eval_flow_noise``, ``latent_dim``, ``anchor_bank_of()``,
            ``inference()`` and ``device``).
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------------------- which field does what
    def source_field(self, field: str | None = None) -> str:
        """The instance field to encode: ``field`` (checked), else ``latent_from``, else the first instance
        field with an encoder."""
        model = self.model
        if field is not None:
            m = model.modality(self._field(field))
            if m.kind != "instance" or not m.has_encoder:
                raise ValueError(
                    f"field {field!r} ({type(m).__name__}) has no encoder to compute latents from"
                )
            return field
        candidates = ([model.latent_from] if model.latent_from else []) + list(model.field_map)
        for name in candidates:
            m = model.modality(name)
            if m.kind == "instance" and m.has_encoder:
                return name
        raise ValueError("this model has no instance field with an encoder, so it cannot encode data")

    def label_field(self, source: str | None = None, required: bool = True) -> str | None:
        """The categorical field whose zones classify ``source`` (default: the encoded field): one aligned
        with it, else any categorical field; None (or an error when ``required``) when there is none."""
        model = self.model
        try:
            source = self.source_field(source)
        except ValueError:
            if source is not None:
                raise
            source = None  # a plain RF model encodes nothing; it may still have a label field
        aligned = [
            a.target
            for a in model.align
            if a.source == source and model.modality(a.target).kind == "categorical"
        ]
        others = [f for f in model.field_map if model.modality(f).kind == "categorical"]
        for field in aligned + others:
            return field
        if required:
            raise ValueError(
                "this model has no label modality (a categorical field aligned with the encoded field), so "
                "it cannot classify; train a joint recipe (e.g. recipes/digits_joint.yaml)"
            )
        return None

    def decoder_field(self, target: str | None = None) -> str:
        """The field to decode into: ``target`` (checked), else ``latent_from`` when it decodes, else the
        first field with a decoder."""
        model = self.model
        if target is not None:
            if not model.modality(self._field(target)).has_decoder:
                raise ValueError(f"field {target!r} ({type(model.modality(target)).__name__}) has no decoder")
            return target
        candidates = ([model.latent_from] if model.latent_from else []) + list(model.field_map)
        for field in candidates:
            if model.modality(field).has_decoder:
                return field
        raise ValueError("this model has no decoder (e.g. a representation recipe), so it cannot generate")

    # ----------------------------------------------------------------------------------------- plumbing
    def _seeded_generator(self, seed: int | None, generator: torch.Generator | None) -> torch.Generator:
        if generator is not None:
            return generator
        if seed is None:  # follow torch's global RNG, so torch.manual_seed / seed_everything apply
            seed = int(torch.randint(0, 2**62, ()).item())
        return torch.Generator(device=self.device).manual_seed(seed)

    def _prepared(self, data: Any, field: str) -> Tensor:
        """The field's tensor of user data (its modality's ``prepare``: strings -> token ids), checked."""
        x = self.model.modality(field).prepare(data)
        self.model.modality(field).check_field(x, field)
        return x

    def _on_device(self, x: Tensor) -> Tensor:
        x = x.to(self.device)
        return x.float() if x.is_floating_point() else x  # float32 for data; ids and classes keep their dtype

    @staticmethod
    def _chunks(n: int, batch_size: int) -> list[slice]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]

    @staticmethod
    def _bar(total: int, batches: int, progress: bool | None, desc: str) -> tqdm:
        show = batches >= _PROGRESS_MIN_BATCHES if progress is None else progress
        return tqdm(total=total, desc=desc, unit="item", disable=not show, leave=False)

    def _context(self, context: str | None, field: str) -> str:
        has_bank = self.model.anchor_bank_of(field) is not None
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
                stacklevel=3,
            )
            return "batch"
        return context

    def _noise_scale(self, context: str, noise_scale: float | None) -> float:
        if noise_scale is not None:
            if noise_scale < 0:
                raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
            return float(noise_scale)
        return 0.0 if context == "bank" else float(self.model.eval_flow_noise)

    # ------------------------------------------------------------------------------------------ latents
    def _encode(self, x: Tensor, field: str, batch_size: int) -> Tensor:
        m = self.model.modality(field)
        parts = [m.encode(self._on_device(x[s])) for s in self._chunks(len(x), batch_size)]
        return torch.cat(parts)  # [n, d]

    def _bank_anchors(self, field: str, batch_size: int) -> Tensor:
        """Anchors [n, d] of ``field``'s anchor bank under the weights in use.

        Encoded once and kept on the model (with a copy of the field modality's weights) while the bank items,
        those weights and the encoding settings stay the same (``_BankAnchors``), so that a bank-context call
        costs the encoding of its own items only, as a batch-context call does; training, an EMA update or
        new items encode the bank again at the next call.
        """
        items = self.model.anchor_bank_of(field)
        m = self.model.modality(field)
        weights = [t.detach() for t in (*m.parameters(), *m.buffers())]
        kind = self.device.type  # autocast, train mode, batch size and device change what encode returns
        settings = (batch_size, self.device, m.training, torch.is_autocast_enabled(kind))
        settings += (torch.get_autocast_dtype(kind),)
        cache = getattr(self.model, _BANK_CACHE, None)
        if cache is None:
            cache = {}
            setattr(self.model, _BANK_CACHE, cache)
        kept = cache.get(field)
        if kept is not None and kept.matches(items, settings, weights):
            return kept.anchors
        anchors = self._encode(items, field, batch_size)  # [n, d]
        copies = tuple(w.clone() for w in weights)
        cache[field] = _BankAnchors(items, items._version, settings, copies, anchors)
        return anchors

    def _noise(self, x: Tensor, scale: float, g: torch.Generator | None, base: int | None) -> Tensor:
        """Prior noise [b, d] for a chunk x. With a ``base`` seed (one per call, drawn from ``g``) each row's
        draw is seeded by ``base`` and its item's bytes, so an item gets the same noise whatever its position,
        batch-mates and batch size."""
        d = self.model.latent_dim
        if scale == 0.0:
            return torch.zeros(len(x), d, device=self.device)
        if base is None:
            return scale * torch.randn(len(x), d, generator=g, device=self.device)
        out = []
        for item in x:
            digest = hashlib.blake2b(item.detach().cpu().numpy().tobytes(), digest_size=8).digest()
            gi = torch.Generator(device=self.device).manual_seed(int.from_bytes(digest, "little") ^ base)
            out.append(torch.randn(1, d, generator=gi, device=self.device))
        return scale * torch.cat(out)

    def _latents(
        self,
        x: Tensor,
        field: str,
        context: str | None,
        noise_scale: float | None,
        batch_size: int,
        g: torch.Generator,
        progress: bool | None,
        desc: str,
    ) -> Tensor:
        """Latents [N, d] (on the model's device) of checked items of an instance field; ``context`` and
        ``noise_scale`` as the public methods take them (None: the defaults). Call inside
        ``model.inference()``."""
        context = self._context(context, field)
        noise_scale = self._noise_scale(context, noise_scale)
        chunks = self._chunks(len(x), batch_size)
        bank = self._bank_anchors(field, batch_size) if context == "bank" else None  # [n, d]
        # One base seed per call (not per chunk), so per-item noise does not depend on the chunking.
        base = (
            int(torch.randint(0, 2**31, (), generator=g, device=g.device).item())
            if bank is not None
            else None
        )
        out = []
        with self._bar(len(x), len(chunks), progress, f"{desc} ({context})") as bar:
            for s in chunks:
                xs = self._on_device(x[s])
                out.append(self._zone_latents(xs, field, self._noise(xs, noise_scale, g, base), bank))
                bar.update(len(xs))
        return torch.cat(out) if out else torch.zeros(0, self.model.latent_dim, device=self.device)  # [N, d]

    def _zone_latents(self, x: Tensor, field: str, noise: Tensor, bank: Tensor | None = None) -> Tensor:
        """Latents [b, d] of a checked chunk ``x`` (on the device) of ``field`` from its prior noise [b, d]:
        class indices through their label flow (inside each class's zone); instance items through the zones
        of their field, the chunk's own anchors (``bank`` None, the reference) or the anchors ``bank`` [n, d]
        plus each item itself."""
        m = self.model.modality(field)
        if m.kind == "categorical":
            return m.latent(x, noise)  # [b, d]
        anchors = m.encode(x)  # [b, d]
        flow = self.model.flow
        if bank is None:  # the reference: the chunk's own anchors are the field
            return compute_latent(anchors, anchors, noise, flow.steps, flow.solver, flow.eps)
        # each row's field is the bank and itself: nothing but the item and the bank decides
        return compute_latent(bank, anchors, noise, flow.steps, flow.solver, flow.eps, self_in_field=True)

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
        self._field(field)
        with self.model.inference():
            x = self._on_device(self._prepared(data, field))
            return self._zone_latents(x, field, self._noise(x, noise_scale, generator, None))

    def anchors(self, field: str, data: Any = None) -> Tensor:
        """Anchors [n, d], on the model's device, of data of an instance field (one batch), or the anchor
        table of a categorical field (``data`` not needed)."""
        m = self.model.modality(self._field(field))
        with self.model.inference():
            if m.kind == "categorical":
                return m.anchor_table()
            if data is None:
                raise ValueError(f"field {field!r} is an instance field: pass its data")
            return m.encode(self._on_device(self._prepared(data, field)))

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
        m = self.model.modality(target)
        if not m.has_decoder and m.kind != "categorical":
            raise ValueError(f"field {target!r} has no decoder to translate into")
        z = self.batch_latents(data, source, noise_scale=noise_scale, generator=generator)
        with self.model.inference():
            return self._decode(m, z, None, generator, decode_options)

    def retrieve(self, data: Any, source: str, target: str, candidates: Any = None) -> Tensor:
        """For each item of a batch of ``source``, the index of the ``target`` zone its latent falls in.

        The :meth:`batch_latents` of ``data`` are traced back through the target anchors: the ``candidates``
        of an instance field (e.g. a set of captions) or the anchor table of a categorical field (then the
        indices are class labels).

        Returns:
            LongTensor [B] on the CPU.
        """
        z = self.batch_latents(data, source)
        with self.model.inference():
            zone_anchors = self.anchors(target, candidates)  # [n, d]
            # Why 100 when no alignment targets the field: AlignSpec's default trace-back steps.
            steps = next((a.steps for a in self.model.align if a.target == target), 100)
            point, _ = trace_back(z, zone_anchors, steps)
            return nearest_anchor(point, zone_anchors).cpu()

    def _field(self, field: str) -> str:
        if field not in self.model.field_map:
            raise ValueError(
                f"{field!r} is not a field of this model; its fields: {sorted(self.model.field_map)}"
            )
        return field

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
            context: ``"bank"`` or ``"batch"`` (see the module docstring); None: ``"bank"`` when the model
                has an anchor bank of this field, else ``"batch"``.
            noise_scale: Prior-noise scale (0: the deterministic zone-centre trajectory); None: 0 for
                ``"bank"``, the model's ``eval_flow_noise`` for ``"batch"``.
            batch_size: Items per batch; in ``"batch"`` context also the size of the field.
            seed: Seed of the prior noise (None: from torch's global RNG).
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            Float [N, d] on the CPU.
        """
        field = self.source_field(field)
        with self.model.inference():
            x = self._prepared(data, field)
            g = self._seeded_generator(seed, None)
            z = self._latents(x, field, context, noise_scale, batch_size, g, progress, "latents")
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
        request = self._generation_request(num, labels, condition, target, noise_scale)
        m = self.model.modality(request.target)
        g = self._seeded_generator(seed, generator)
        chunks = self._chunks(request.num, batch_size) or [slice(0, 0)]  # one empty chunk: an empty batch
        out: list[Tensor] = []
        with self.model.inference(), self._bar(request.num, len(chunks), progress, "generate") as bar:
            z_items = None  # latents of an instance-field condition, through that field's zones
            if request.field is not None and self.model.modality(request.field).kind == "instance":
                z_items = self._latents(
                    request.data, request.field, None, noise_scale, batch_size, g, False, "latents"
                )
            for s in chunks:
                z, y = self._chunk_latents(request, s, z_items, noise_scale, g)
                x = self._decode(m, z, self._decoder_labels(request, z, y, g), g, decode_options)
                out.append(x.float().cpu() if x.is_floating_point() else x.cpu())
                bar.update(s.stop - s.start)
        return m.present(torch.cat(out))

    def _generation_request(
        self,
        num: int | None,
        labels: Any,
        condition: Mapping[str, Any] | None,
        target: str | None,
        noise_scale: float,
    ) -> _GenerationRequest:
        """``generate``'s arguments, checked and resolved into one request (``labels`` become a condition
        on the label field, or the decoder's own classes on a model without label zones)."""
        target = self.decoder_field(target)
        classes = self.model.modality(target).decoder_classes
        label_field = self.label_field(required=False)
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
        field, data = self._condition(condition)
        given = data if data is not None else decoder_labels
        if given is not None:
            if num is not None and num != len(given):
                raise ValueError(f"num={num} but the condition has {len(given)} items; give one of them")
            num = len(given)
        if num is None or num < 0:
            raise ValueError(f"num must be an int >= 0 for unconditional samples, got {num}")
        if noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
        if field is not None and self.model.modality(field).kind == "categorical" and field != label_field:
            raise ValueError(f"cannot condition on {field!r}: the field with class zones is {label_field!r}")
        return _GenerationRequest(target, num, field, data, decoder_labels, label_field, classes)

    def _chunk_latents(
        self,
        request: _GenerationRequest,
        s: slice,
        z_items: Tensor | None,
        noise_scale: float,
        g: torch.Generator,
    ) -> tuple[Tensor, Tensor | None]:
        """(latents [b, d], the chunk's given classes or None) of the items ``s`` of a generation request."""
        b, d = s.stop - s.start, self.model.latent_dim
        if z_items is None and request.field is not None:  # class indices: latents inside their zones
            y = self._on_device(request.data[s])  # type: ignore[index]
            # drawn even at noise_scale 0, so the decoder's draws that follow do not depend on the scale
            noise = noise_scale * torch.randn(b, d, generator=g, device=self.device)
            return self._zone_latents(y, request.field, noise), y
        y = request.decoder_labels[s].to(self.device) if request.decoder_labels is not None else None
        if z_items is not None:  # an instance-field condition: latents computed beforehand
            return z_items[s], y
        return torch.randn(b, d, generator=g, device=self.device), y  # LZN latents: N(0, I)

    def _decoder_labels(
        self, request: _GenerationRequest, z: Tensor, y: Tensor | None, g: torch.Generator
    ) -> Tensor | None:
        """The classes a class-conditioned decoder gets: the given ones, else the zones of the latents
        ``z`` (reverse label flow, as the reference does), else random ones; None for other decoders."""
        if request.decoder_classes <= 0:
            return None
        if y is not None:
            return y
        if request.label_field is not None:
            return self.model.modality(request.label_field).decode(z)
        return torch.randint(0, request.decoder_classes, (len(z),), generator=g, device=self.device)

    @staticmethod
    def _decode(
        m: Any, z: Tensor, labels: Tensor | None, g: torch.Generator | None, options: Mapping[str, Any]
    ) -> Any:
        """Modality ``m``'s decoding of latents ``z`` (with the classes of a class-conditioned decoder)."""
        if labels is None:
            return m.decode(z, generator=g, **options)
        return m.decode(z, labels=labels, generator=g, **options)

    def _condition(self, condition: Mapping[str, Any] | None) -> tuple[str | None, Tensor | None]:
        """(field, prepared data) of ``generate``'s condition, or (None, None)."""
        if not condition:
            return None, None
        if not isinstance(condition, Mapping) or len(condition) != 1:
            raise ValueError(f"condition must be a dict of one field and its data, got {condition!r:.80}")
        ((field, data),) = condition.items()
        if field not in self.model.field_map:
            fields = sorted(self.model.field_map)
            raise ValueError(f"condition field {field!r} is not a field of this model; its fields: {fields}")
        if self.model.modality(field).kind == "instance":
            self.source_field(field)  # it must have an encoder
        return field, self._prepared(data, field)

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
        field = self.source_field(field)
        label_field = self.label_field(field)
        label_mod = model.modality(label_field)  # type: ignore[arg-type]
        with model.inference():
            x = self._prepared(data, field)
            log_w = None
            if class_weights is not None:
                w = torch.as_tensor(class_weights, dtype=torch.float32, device=self.device).reshape(-1)
                k = label_mod.anchor_table().shape[0]
                if w.shape[0] != k or bool((w < 0).any()) or float(w.sum()) <= 0:
                    raise ValueError(f"class_weights must be {k} non-negative numbers, not all 0")
                log_w = torch.log(w / w.sum())
            objective = self.anchor_classifier(field, label_field)
            if objective is not None:  # the supervised baseline: nearest label anchor, no flow
                anchors = self._encode(x, field, batch_size)  # [N, d]
                return objective.predict(anchors, label_mod.anchor_table(), log_w).cpu()
            g = self._seeded_generator(seed, None)
            z = self._latents(x, field, context, noise_scale, batch_size, g, progress, "classify")
            preds = [label_mod.decode(z[s], log_weights=log_w) for s in self._chunks(len(z), batch_size)]
        return torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.long)

    def anchor_classifier(self, field: str, label_field: str | None) -> Objective | None:
        """The objective of an ``align`` term from ``field`` to ``label_field`` that classifies the anchors
        itself (the supervised ``"ce"`` baseline), or None: classification goes through the label flow."""
        for a in self.model.align:
            if a.source == field and a.target == label_field:
                objective = a.objective()
                if objective.classifies_anchors:
                    return objective
        return None

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
        field = self.source_field(field)
        m = self.model.modality(field)
        x = self._prepared(data, field)
        chunks = self._chunks(len(x), batch_size)
        out = []
        with self.model.inference(), self._bar(len(x), len(chunks), progress, "embed") as bar:
            for s in chunks:
                out.append(m.embed(self._on_device(x[s])).float().cpu())
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
        """
        model = self.model
        field = self.decoder_field(field)
        m = model.modality(field)
        encoded = model.latent_from is not None  # a plain RF baseline is not conditioned on latents
        if encoded and field != self.source_field():
            raise ValueError(
                f"the decoder of {field!r} does not decode the encoded field {self.source_field()!r}"
            )
        conditioned = m.decoder_classes > 0
        if conditioned and labels is None:
            labels = self.classify(
                data, context=context, noise_scale=noise_scale, batch_size=batch_size, seed=seed
            )
        with model.inference():
            x = self._prepared(data, field)
            g = self._seeded_generator(seed, None)
            z = (
                self._latents(x, field, context, noise_scale, batch_size, g, progress, "latents")
                if encoded
                else None
            )
            out = []
            for s in self._chunks(len(x), batch_size):
                y = labels[s].to(self.device).long() if conditioned and labels is not None else None
                zs = z[s] if z is not None else None
                out.append(m.reconstruct(self._on_device(x[s]), zs, labels=y, **options).cpu())
        return torch.cat(out) if out else x[:0].cpu()


def reconstruction_l2(original: Tensor, reconstructed: Tensor) -> float:
    """Mean over images of the L2 norm of the error over (C, H, W), in [-1, 1] units (the reference's
    Recon)."""
    err = (reconstructed.float() - original.float()).flatten(1)  # [N, C*H*W]
    return float(err.norm(dim=1).mean()) if len(err) else math.nan


def mean_reconstruction_l2(
    model: Any, images: Tensor, repeats: int, seed: int = 0, **reconstruct_kwargs: Any
) -> tuple[float, Tensor]:
    """The reference's Recon: ``model.reconstruct`` of all ``images`` in one batch (one field), once per
    prior-noise seed ``seed, seed + 1, ...``; returns the mean :func:`reconstruction_l2` and the last
    reconstruction.

    Args:
        model: An LZN model (or an :class:`LZNInference`).
        images: Float [N, C, H, W] in [-1, 1].
        repeats: Number of prior-noise draws.
        seed: Seed of the first draw.
        **reconstruct_kwargs: Passed on to ``reconstruct`` (``labels``, ``context``, ``steps``, ...).
    """
    errors, recon = [], images
    for r in range(repeats):
        recon = model.reconstruct(
            images, batch_size=len(images), seed=seed + r, progress=False, **reconstruct_kwargs
        )
        errors.append(reconstruction_l2(images, recon))
    return sum(errors) / len(errors), recon
