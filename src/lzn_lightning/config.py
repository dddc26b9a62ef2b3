"""Typed settings of the LZN module (``--model.flow.*`` / ``--model.align`` in ``lzn fit --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lzn_lightning.latent import SOLVERS
from lzn_lightning.objectives import FORMS, Objective, make_objective


@dataclass
class FlowConfig:
    """Latent computation (anchors -> latents) settings.

    Args:
        solver: ``"dpm++"`` (3rd-order multistep, generation recipes) or ``"euler"`` (representation recipe).
        steps: Solver steps (= evaluations of the minibatch field).
        noise_scale: Scale of the prior noise that picks the point inside a zone (0.45 for representations).
        eps: Start time; None uses the solver default (1e-3 dpm++, 1e-4 euler).
    """

    solver: str = "dpm++"
    steps: int = 20
    noise_scale: float = 1.0
    eps: float | None = None

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"flow.solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.steps < 1:
            raise ValueError(f"flow.steps must be >= 1, got {self.steps}")


@dataclass
class AlignConfig:
    """One latent alignment term: latents of ``source`` must land in the right zone of ``target``'s anchors.

    Args:
        source: Batch field whose latents are traced back (an instance field, e.g. ``image``).
        target: Batch field whose anchors define the zones (``label``, or ``image_view2`` for two views).
        steps: Reverse Euler steps.
        cutoff: Fraction of the first (tau near 1, uninformative) steps excluded from the max.
        form: The objective (:mod:`lzn_lightning.objectives`): ``"prob"`` (-mean max p, joint recipes) or
            ``"log"`` (-mean log max p, representation recipes); or a baseline that skips the latent flow:
            ``"infonce"`` (contrastive, two views) or ``"ce"`` (supervised cross-entropy over the label
            anchors).
        weight: Loss coefficient.
        class_weights: For a categorical target: weight the zones by the global batch class frequencies.
        temperature: Temperature of the ``"infonce"`` form (SimCLR's usual 0.1 by default).
    """

    source: str
    target: str
    steps: int = 100
    cutoff: float = 0.2
    form: str = "prob"
    weight: float = 1.0
    class_weights: bool = True
    temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"align form must be one of {FORMS}, got {self.form!r}")
        if self.temperature <= 0:
            raise ValueError(f"align temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.cutoff < 1.0:
            raise ValueError(f"align cutoff must be in [0, 1), got {self.cutoff}")

    def objective(self) -> Objective:
        """The objective ``form`` selects, with this term's ``steps``, ``cutoff`` and ``temperature``."""
        return make_objective(self.form, self.steps, self.cutoff, self.temperature)


def as_config(value: Any, cls: type) -> Any:
    """Accept a dataclass instance or a plain dict (as stored in checkpoints)."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or dict, got {type(value).__name__}")
