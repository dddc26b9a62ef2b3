"""Which field does what: the field to encode, the field with class zones, the field to decode, and whether an
``align`` term classifies anchors by itself.

:class:`FieldRouting` is a plain object that :class:`~lzn_lightning.LZNLightningModule` builds once, when
it is constructed (``model.routing``), from its fields, ``latent_from``, ``decode`` and ``align``; building it
checks them. It knows each field's kind and whether it encodes and decodes, nothing of weights or data, so the
module, the inference layer, the callbacks and the ``lzn`` commands ask it the same questions without asking
the inference layer about the module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lzn_lightning.config import AlignConfig
from lzn_lightning.modality import Modality
from lzn_lightning.objectives import Objective

# Why 100 when no alignment targets a field: AlignSpec's default trace-back steps.
_DEFAULT_TRACE_STEPS = 100


@dataclass(frozen=True)
class FieldFacts:
    """What routing needs to know of a field's modality (fixed once the modality is built)."""

    kind: str  # "instance" or "categorical"
    has_encoder: bool
    has_decoder: bool
    modality_type: str  # the modality's class name, for error messages


class FieldRouting:
    """The roles of a model's fields, checked once.

    Args:
        modalities: The built modalities by name.
        field_map: Batch field -> modality name (every modality's own name included).
        latent_from: The field whose anchors define the latents, or None.
        decode: The instance fields whose decoders train on their latents.
        align: The alignment terms.

    Raises:
        ValueError: A field that maps to no modality, or a ``latent_from``, ``align`` or ``decode`` entry that
            is not a field or whose modality cannot play that role.
    """

    def __init__(
        self,
        modalities: Mapping[str, Modality],
        field_map: Mapping[str, str],
        latent_from: str | None,
        decode: Sequence[str],
        align: Sequence[AlignConfig],
    ) -> None:
        for field, name in field_map.items():
            if name not in modalities:
                raise ValueError(
                    f"fields maps {field!r} to unknown modality {name!r}; known: {list(modalities)}"
                )
        self.fields: dict[str, FieldFacts] = {
            field: FieldFacts(m.kind, m.has_encoder, m.has_decoder, type(m).__name__)
            for field, m in ((f, modalities[name]) for f, name in field_map.items())
        }
        self.latent_from = latent_from
        self.align = list(align)
        self._check(decode)

    def _check(self, decode: Sequence[str]) -> None:
        known = sorted(self.fields)
        if self.latent_from is not None:
            if self.latent_from not in self.fields:
                raise ValueError(f"latent_from={self.latent_from!r} is not a field; known fields: {known}")
            if self.fields[self.latent_from].kind != "instance":
                raise ValueError(
                    f"latent_from={self.latent_from!r} must be an instance modality (e.g. images)"
                )
        for a in self.align:
            for role, field in (("source", a.source), ("target", a.target)):
                if field not in self.fields:
                    raise ValueError(f"align {role} {field!r} is not a field; known fields: {known}")
            if self.fields[a.source].kind != "instance":
                raise ValueError(
                    f"align source {a.source!r} must be an instance field (its latents are traced back)"
                )
        for field in decode:
            if field not in self.fields:
                raise ValueError(f"decode names {field!r}, which is not a field; known fields: {known}")
            facts = self.fields[field]
            if facts.kind != "instance" or not facts.has_decoder:
                raise ValueError(
                    f"decode names {field!r}, but its modality {facts.modality_type} has no decoder "
                    "(build it with its decoder, or remove the field from decode)"
                )

    def checked(self, field: str) -> str:
        """``field``, or a ValueError listing the model's fields when it is not one of them."""
        if field not in self.fields:
            raise ValueError(f"{field!r} is not a field of this model; its fields: {sorted(self.fields)}")
        return field

    def _candidates(self) -> list[str]:
        """``latent_from`` first, then every field in the order the model declares them."""
        return ([self.latent_from] if self.latent_from else []) + list(self.fields)

    def source_field(self, field: str | None = None) -> str:
        """The instance field to encode: ``field`` (checked), else ``latent_from``, else the first instance
        field with an encoder."""
        if field is not None:
            facts = self.fields[self.checked(field)]
            if facts.kind != "instance" or not facts.has_encoder:
                raise ValueError(
                    f"field {field!r} ({facts.modality_type}) has no encoder to compute latents from"
                )
            return field
        for name in self._candidates():
            facts = self.fields[name]
            if facts.kind == "instance" and facts.has_encoder:
                return name
        raise ValueError("this model has no instance field with an encoder, so it cannot encode data")

    def label_field(self, source: str | None = None, required: bool = True) -> str | None:
        """The categorical field whose zones classify ``source`` (default: the encoded field): one aligned
        with it, else any categorical field; None (or an error when ``required``) when there is none."""
        try:
            source = self.source_field(source)
        except ValueError:
            if source is not None:
                raise
            source = None  # a plain RF model encodes nothing; it may still have a label field
        aligned = [
            a.target for a in self.align if a.source == source and self.fields[a.target].kind == "categorical"
        ]
        others = [f for f, facts in self.fields.items() if facts.kind == "categorical"]
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
        if target is not None:
            facts = self.fields[self.checked(target)]
            if not facts.has_decoder:
                raise ValueError(f"field {target!r} ({facts.modality_type}) has no decoder")
            return target
        for field in self._candidates():
            if self.fields[field].has_decoder:
                return field
        raise ValueError("this model has no decoder (e.g. a representation recipe), so it cannot generate")

    def anchor_classifier(self, field: str, label_field: str | None) -> Objective | None:
        """The objective of an ``align`` term from ``field`` to ``label_field`` that classifies the anchors
        itself (the supervised ``"ce"`` baseline), or None: classification goes through the label flow."""
        for a in self.align:
            if a.source == field and a.target == label_field:
                objective = a.objective()
                if objective.classifies_anchors:
                    return objective
        return None

    def trace_steps(self, target: str) -> int:
        """Reverse-flow steps of tracing latents back through ``target``'s zones: those of the first ``align``
        term into ``target``, else the default of an ``align`` term."""
        return next((a.steps for a in self.align if a.target == target), _DEFAULT_TRACE_STEPS)
