"""The objectives of an ``align`` term, one class each, selected by the term's ``form`` string.

An objective makes items of a source field land in the zone of their partner among a target field's anchors
(the "zones"), and says which zone an item is predicted to belong to:

* ``"prob"`` (:class:`ZoneProbability`) and ``"log"`` (:class:`ZoneLogProbability`): the LZN alignment
  (docs/design/lzn.md §2.1). The source *latents* are traced back through the zone anchors; the loss is
  ``-mean(max p)`` or ``-mean(log max p)`` of the target zone's posterior after the cut-off; the prediction is
  the anchor nearest to the end of the reverse flow.
* ``"infonce"`` (:class:`InfoNCE`) and ``"ce"`` (:class:`PrototypeCrossEntropy`): baselines that skip the
  latent flow and compare the source *anchors* with the zone anchors directly, through a cross-entropy over
  logits; the prediction is the highest logit.

  * InfoNCE is the contrastive (SimCLR-style) objective between two views: cosine similarities of a view-1
    anchor to every gathered view-2 anchor, divided by a temperature, cross-entropy towards its own view-2
    anchor. Same positives and negatives as the LZN two-view alignment (one direction, the global batch). Its
    prediction is retrieval (the most similar target).
  * The supervised cross-entropy has logits ``-||a - c_k||^2 / 2`` over the label anchors (a prototype
    classifier); its prediction is the nearest label anchor, the same decision rule LZN applies at the end of
    the reverse flow, and ``classify`` uses it instead of the flow.

Use :func:`make_objective` (or ``AlignConfig.objective()``) to build one from its ``form`` string.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from lzn_lightning.latent import nearest_anchor, trace_back
from lzn_lightning.latent.losses import zone_log_probability_loss, zone_probability_loss


@dataclass
class Alignment:
    """What one alignment term gives a training step.

    Attributes:
        loss: Scalar loss (before the term's weight).
        zone_accuracy: Detached fraction of rows predicted in their target zone.
        zone_probability: Detached mean posterior of the target zone at the last reverse step (None for the
            objectives without a latent flow).
    """

    loss: Tensor
    zone_accuracy: Tensor
    zone_probability: Tensor | None = None


class Objective(ABC):
    """One alignment objective: its training loss and its prediction.

    Attributes:
        form: The ``align`` ``form`` string that selects it.
        needs_latents: The source is given as latents (True, the LZN flow) or as anchors (False).
        weighs_zones: Training may weight categorical zones by the batch's class frequencies.
        classifies_anchors: ``classify`` predicts from the item's anchor with :meth:`predict` instead of the
            label modality's reverse flow.
    """

    form: ClassVar[str]
    needs_latents: ClassVar[bool]
    weighs_zones: ClassVar[bool]
    classifies_anchors: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_settings(cls, steps: int, cutoff: float, temperature: float) -> Objective:
        """Build it from an ``align`` term's settings (each objective reads the ones it uses)."""

    @abstractmethod
    def align(self, source: Tensor, zones: Tensor, targets: Tensor, log_weights: Tensor | None) -> Alignment:
        """Loss and detached diagnostics of one batch.

        Args:
            source: Source latents [b, d] (``needs_latents``) or anchors [b, d].
            zones: Zone anchors [n, d].
            targets: LongTensor [b]: the target zone of each row.
            log_weights: Optional log zone weights [n].
        """

    @abstractmethod
    def predict(self, source: Tensor, zones: Tensor, log_weights: Tensor | None = None) -> Tensor:
        """Predicted zone [b] (LongTensor) of each source row (latents or anchors, as in :meth:`align`)."""


class ZoneObjective(Objective):
    """The LZN alignment: trace the source latents back through the zones, reward the target zone.

    Args:
        steps: Reverse Euler steps.
        cutoff: Fraction of the first (tau near 1, uninformative) steps excluded from the max, in [0, 1).
    """

    needs_latents = True
    weighs_zones = True

    def __init__(self, steps: int = 100, cutoff: float = 0.2) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0.0 <= cutoff < 1.0:
            raise ValueError(f"cutoff must be in [0, 1), got {cutoff}")
        self.steps = steps
        self.cutoff = cutoff

    @classmethod
    def from_settings(cls, steps: int, cutoff: float, temperature: float) -> Objective:
        """Uses ``steps`` and ``cutoff``."""
        return cls(steps, cutoff)

    @abstractmethod
    def loss(self, logp: Tensor) -> Tensor:
        """Scalar loss from the per-step log posteriors [S, b] of the target zones."""

    def align(self, source: Tensor, zones: Tensor, targets: Tensor, log_weights: Tensor | None) -> Alignment:
        """Reverse flow of the latents ``source`` with the target zones' posteriors at every step."""
        point, logp = trace_back(source, zones, self.steps, log_weights, targets)
        assert logp is not None
        loss = self.loss(logp)
        with torch.no_grad():
            accuracy = (nearest_anchor(point, zones) == targets).float().mean()
            probability = logp[-1].exp().mean()
        return Alignment(loss, accuracy, probability)

    def predict(self, source: Tensor, zones: Tensor, log_weights: Tensor | None = None) -> Tensor:
        """The zone whose anchor is nearest to the end of the reverse flow of the latents ``source``."""
        point, _ = trace_back(source, zones, self.steps, log_weights)
        return nearest_anchor(point, zones)


class ZoneProbability(ZoneObjective):
    """``form: prob``: ``-mean(max p)`` of the target zone's posterior (the joint-model label loss)."""

    form = "prob"

    def loss(self, logp: Tensor) -> Tensor:
        """``-mean_i max_{s >= cutoff} p_s[i]``."""
        return zone_probability_loss(logp, self.cutoff)


class ZoneLogProbability(ZoneObjective):
    """``form: log``: ``-mean(log max p)`` of the target zone's posterior (the representation loss)."""

    form = "log"

    def loss(self, logp: Tensor) -> Tensor:
        """``-mean_i log max_{s >= cutoff} p_s[i]``."""
        return zone_log_probability_loss(logp, self.cutoff)


class AnchorObjective(Objective):
    """A baseline without the latent flow: cross-entropy of logits between source anchors and zone anchors."""

    needs_latents = False
    weighs_zones = False  # the baselines train on unweighted zones

    @abstractmethod
    def logits(self, source: Tensor, zones: Tensor) -> Tensor:
        """Logits [b, n] of source anchors [b, d] against zone anchors [n, d]."""

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of ``logits`` [b, n] towards zone ``targets`` [b]."""
        return F.cross_entropy(logits, targets)

    def align(self, source: Tensor, zones: Tensor, targets: Tensor, log_weights: Tensor | None) -> Alignment:
        """Cross-entropy of the anchors ``source``; ``log_weights`` must be None (unweighted zones)."""
        if log_weights is not None:
            raise ValueError(f"the {self.form!r} objective trains on unweighted zones")
        logits = self.logits(source, zones)  # [b, n]
        loss = self.loss(logits, targets)
        with torch.no_grad():
            accuracy = (logits.argmax(1) == targets).float().mean()
        return Alignment(loss, accuracy)

    def predict(self, source: Tensor, zones: Tensor, log_weights: Tensor | None = None) -> Tensor:
        """The zone of the highest logit (plus ``log_weights``, a class prior, when given)."""
        logits = self.logits(source, zones)
        return (logits + (0.0 if log_weights is None else log_weights)).argmax(1)


def infonce_logits(source: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """Cosine-similarity logits [b, n] of source anchors [b, d] against target anchors [n, d]."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.normalize(source, dim=1) @ F.normalize(targets, dim=1).T / temperature  # [b, n]


def prototype_logits(anchors: Tensor, table: Tensor) -> Tensor:
    """Logits [b, K] = -||a_i - c_k||^2 / 2 of anchors [b, d] against class anchors [K, d]."""
    return -0.5 * (anchors[:, None, :] - table[None, :, :]).pow(2).sum(-1)  # [b, K]; K is small


class InfoNCE(AnchorObjective):
    """``form: infonce``: contrastive cross-entropy over cosine similarities (see the module docstring).

    Args:
        temperature: Divides the cosine similarities (SimCLR's usual 0.1 by default).
    """

    form = "infonce"

    def __init__(self, temperature: float = 0.1) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    @classmethod
    def from_settings(cls, steps: int, cutoff: float, temperature: float) -> Objective:
        """Uses ``temperature``."""
        return cls(temperature)

    def logits(self, source: Tensor, zones: Tensor) -> Tensor:
        """Cosine similarities / temperature."""
        return infonce_logits(source, zones, self.temperature)


class PrototypeCrossEntropy(AnchorObjective):
    """``form: ce``: supervised cross-entropy over the label anchors, logits ``-||a - c_k||^2 / 2``."""

    form = "ce"
    classifies_anchors = True

    @classmethod
    def from_settings(cls, steps: int, cutoff: float, temperature: float) -> Objective:
        """Uses none of them."""
        return cls()

    def logits(self, source: Tensor, zones: Tensor) -> Tensor:
        """Negative half squared distances to the label anchors."""
        return prototype_logits(source, zones)


OBJECTIVES: dict[str, type[Objective]] = {
    cls.form: cls for cls in (ZoneProbability, ZoneLogProbability, InfoNCE, PrototypeCrossEntropy)
}
FORMS = tuple(OBJECTIVES)


def make_objective(form: str, steps: int = 100, cutoff: float = 0.2, temperature: float = 0.1) -> Objective:
    """The objective a ``form`` string selects, with the settings it uses.

    Args:
        form: One of :data:`FORMS` (``"prob"``, ``"log"``, ``"infonce"``, ``"ce"``).
        steps: Reverse Euler steps (``prob``, ``log``).
        cutoff: Fraction of leading reverse steps excluded from the max (``prob``, ``log``).
        temperature: Temperature of the cosine similarities (``infonce``).

    Raises:
        ValueError: For an unknown ``form`` or an invalid setting.
    """
    if form not in OBJECTIVES:
        raise ValueError(f"align form must be one of {FORMS}, got {form!r}")
    return OBJECTIVES[form].from_settings(steps, cutoff, temperature)
