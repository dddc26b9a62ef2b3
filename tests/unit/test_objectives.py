"""Each align objective's loss and prediction against a direct float64 computation, and the form registry."""

from __future__ import annotations

import math

import pytest
import torch

from lzn_lightning.config import AlignConfig
from lzn_lightning.latent.reference import trace_back_direct
from lzn_lightning.objectives import (
    FORMS,
    OBJECTIVES,
    InfoNCE,
    PrototypeCrossEntropy,
    ZoneLogProbability,
    ZoneProbability,
    make_objective,
)

# Per-step target-zone probabilities of 3 rows over 5 reverse steps; cutoff 0.4 drops steps 0-1.
PROBS = [[0.9, 0.8, 0.7], [0.2, 0.9, 0.1], [0.3, 0.4, 0.2], [0.6, 0.1, 0.5], [0.5, 0.3, 0.4]]


def _best_after_cutoff(cutoff: float) -> list[float]:
    first = int(len(PROBS) * cutoff)
    return [max(PROBS[s][i] for s in range(first, len(PROBS))) for i in range(len(PROBS[0]))]


@pytest.mark.parametrize("cutoff", [0.0, 0.4])
def test_zone_probability_loss_is_minus_the_mean_best_probability(cutoff: float) -> None:
    logp = torch.log(torch.tensor(PROBS, dtype=torch.float64))
    expected = -sum(_best_after_cutoff(cutoff)) / 3
    # the loss is computed in float32 (the training dtype), hence the float32 tolerance
    assert float(ZoneProbability(steps=5, cutoff=cutoff).loss(logp)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("cutoff", [0.0, 0.4])
def test_zone_log_probability_loss_is_minus_the_mean_log_best_probability(cutoff: float) -> None:
    logp = torch.log(torch.tensor(PROBS, dtype=torch.float64))
    expected = -sum(math.log(p) for p in _best_after_cutoff(cutoff)) / 3
    assert float(ZoneLogProbability(steps=5, cutoff=cutoff).loss(logp)) == pytest.approx(expected, rel=1e-6)


def _flow_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(6, 3, generator=g, dtype=torch.float64)
    zones = 2.0 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    log_w = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    return latents, zones, targets, log_w


@pytest.mark.parametrize("objective_class", [ZoneProbability, ZoneLogProbability])
def test_zone_objectives_align_and_predict_through_the_direct_reverse_flow(objective_class: type) -> None:
    latents, zones, targets, log_w = _flow_case()
    objective = objective_class(steps=10, cutoff=0.2)
    point, logp = trace_back_direct(latents, zones, 10, log_w, targets)
    assert logp is not None
    best = logp[2:].max(0).values  # cutoff 0.2 of 10 steps drops steps 0-1
    expected = -(best.exp().mean() if objective_class is ZoneProbability else best.mean())
    nearest = torch.cdist(point, zones).argmin(1)
    term = objective.align(latents, zones, targets, log_w)
    assert float(term.loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(term.zone_accuracy) == pytest.approx(float((nearest == targets).double().mean()))
    assert float(term.zone_probability) == pytest.approx(float(logp[-1].exp().mean()), rel=1e-6)
    assert torch.equal(objective.predict(latents, zones, log_w), nearest)


def test_infonce_predicts_the_most_cosine_similar_target() -> None:
    g = torch.Generator().manual_seed(1)
    src = torch.randn(5, 4, generator=g, dtype=torch.float64)
    tgt = torch.randn(7, 4, generator=g, dtype=torch.float64)
    cosine = [[float(src[i] @ tgt[j] / (src[i].norm() * tgt[j].norm())) for j in range(7)] for i in range(5)]
    expected = torch.tensor([max(range(7), key=row.__getitem__) for row in cosine])
    assert torch.equal(InfoNCE(temperature=0.3).predict(src, tgt), expected)
    targets = torch.tensor([4, 0, 6, 2, 1])
    term = InfoNCE(temperature=0.3).align(src, tgt, targets, None)
    assert term.zone_probability is None
    assert float(term.zone_accuracy) == pytest.approx(float((expected == targets).double().mean()))


def test_prototype_cross_entropy_predicts_the_nearest_label_anchor_under_a_prior() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(8, 3, generator=g, dtype=torch.float64)
    table = torch.randn(4, 3, generator=g, dtype=torch.float64)
    log_w = torch.log(torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64))
    objective = PrototypeCrossEntropy()
    assert torch.equal(objective.predict(a, table), torch.cdist(a, table).argmin(1))
    scores = [
        [-0.5 * float(((a[i] - table[k]) ** 2).sum()) + float(log_w[k]) for k in range(4)] for i in range(8)
    ]
    expected = torch.tensor([max(range(4), key=row.__getitem__) for row in scores])
    assert torch.equal(objective.predict(a, table, log_w), expected)
    assert objective.classifies_anchors and not InfoNCE().classifies_anchors


def test_anchor_objectives_refuse_zone_weights() -> None:
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="unweighted"):
        PrototypeCrossEntropy().align(x, x, torch.arange(3), torch.zeros(3))


def test_make_objective_picks_the_class_of_each_form_with_its_settings() -> None:
    assert FORMS == ("prob", "log", "infonce", "ce")  # the strings recipes use
    assert all(OBJECTIVES[form].form == form for form in FORMS)
    prob = AlignConfig(source="image", target="label", steps=7, cutoff=0.5).objective()
    assert isinstance(prob, ZoneProbability) and (prob.steps, prob.cutoff) == (7, 0.5)
    log = make_objective("log", steps=20)
    assert isinstance(log, ZoneLogProbability) and log.needs_latents and log.weighs_zones
    infonce = AlignConfig(source="image", target="image_view2", form="infonce", temperature=0.5).objective()
    assert isinstance(infonce, InfoNCE) and infonce.temperature == 0.5 and not infonce.needs_latents
    assert isinstance(make_objective("ce"), PrototypeCrossEntropy)


def test_unknown_form_and_bad_settings_are_clear_errors() -> None:
    with pytest.raises(
        ValueError, match=r"align form must be one of \('prob', 'log', 'infonce', 'ce'\), got 'bogus'"
    ):
        make_objective("bogus")
    with pytest.raises(ValueError, match="cutoff must be in"):
        make_objective("prob", cutoff=1.0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        make_objective("log", steps=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        make_objective("infonce", temperature=0.0)
