"""Metric functions not covered by the callback tests."""

from __future__ import annotations

import pytest
import torch

from lzn_lightning.metrics import SmallCNN, accuracy, label_accuracy, predict


def test_label_accuracy_is_the_fraction_of_matches() -> None:
    assert label_accuracy(torch.tensor([0, 1, 2, 1]), torch.tensor([0, 1, 1, 1])) == 0.75
    assert label_accuracy(torch.tensor([2, 2]), torch.tensor([0, 1])) == 0.0


def test_classifier_accuracy_scores_its_own_predictions() -> None:
    torch.manual_seed(0)
    net = SmallCNN(channels=1, num_classes=3, width=8)
    images = torch.rand(10, 1, 8, 8) * 2 - 1
    pred = predict(net, images, batch_size=4)  # several batches
    assert pred.shape == (10,) and pred.dtype == torch.long
    assert accuracy(net, images, pred) == 1.0
    wrong = (pred + 1) % 3
    assert accuracy(net, images, wrong) == 0.0
    assert accuracy(net, images, torch.where(torch.arange(10) < 4, pred, wrong)) == pytest.approx(0.4)
