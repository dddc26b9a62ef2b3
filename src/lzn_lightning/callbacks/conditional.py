"""Conditional-sample accuracy: does a separate classifier recognise generated images as the requested
class?"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from lzn_lightning.callbacks.base import EvalCallback, num_classes_of, split_data
from lzn_lightning.callbacks.fid import _held_out
from lzn_lightning.metrics import label_accuracy, predict, train_classifier


class ConditionalSampleAccuracy(EvalCallback):
    """Generate ``per_class`` images of every class and score them with an independent classifier.

    The classifier is a small CNN trained in the callback (once) on the real training split, or any
    ``nn.Module`` returning class logits for images in [-1, 1]. Its own held-out accuracy is logged too
    (``cond_acc_classifier``), since the metric is only as good as the judge.

    Args:
        per_class: Generated images per class.
        classifier: None (train a SmallCNN in the callback) or an ``nn.Module`` classifier.
        classifier_epochs: Training epochs of the in-callback classifier.
        steps: RF Euler steps of the sampler (None: the image modality's ``sample_steps``).
        seed: Seed of the classifier and the samples.
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Also run at the end of ``trainer.test``.
    """

    def __init__(
        self,
        per_class: int = 100,
        classifier: nn.Module | None = None,
        classifier_epochs: int = 30,
        steps: int | None = None,
        seed: int = 0,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.per_class = per_class
        self.classifier = classifier
        self.classifier_epochs = classifier_epochs
        self.steps = steps
        self.seed = seed
        self._judge: tuple[nn.Module, float | None, str] | None = None

    def judge(self, trainer: pl.Trainer, pl_module: Any) -> tuple[nn.Module, float | None, str]:
        """(classifier, its held-out accuracy or None, description); trained on first use."""
        if self._judge is None:
            held_out = _held_out(trainer, pl_module)
            if self.classifier is not None:
                acc = None
                if held_out is not None:
                    acc = label_accuracy(predict(self.classifier, held_out[0]), held_out[1])
                self._judge = (self.classifier, acc, f"user classifier {type(self.classifier).__name__}")
            else:
                images, labels = split_data(trainer, pl_module, "train")
                if labels is None:
                    raise ValueError(
                        "ConditionalSampleAccuracy needs labelled training data (or a classifier)"
                    )
                k = num_classes_of(pl_module)
                t = train_classifier(
                    images,
                    labels,
                    k,
                    held_out,
                    self.classifier_epochs,
                    seed=self.seed,
                    device=pl_module.device,
                )
                self._judge = (t.net, t.held_out_accuracy, t.description)
        return self._judge

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Generate per class and compare the judge's predictions with the requested labels."""
        m: Any = pl_module
        net, judge_acc, judge_what = self.judge(trainer, m)
        k = num_classes_of(m)
        labels = torch.arange(k).repeat_interleave(self.per_class)  # [K*per_class]
        images = m.generate(len(labels), labels=labels, steps=self.steps, seed=self.seed, progress=False)
        pred = predict(net, images)
        hits = (pred == labels).float()
        per_class = hits.view(k, self.per_class).mean(1)  # [K]
        metrics = {"cond_acc": float(hits.mean()), "cond_acc_worst_class": float(per_class.min())}
        if judge_acc is not None:
            metrics["cond_acc_classifier"] = judge_acc
        what = (
            f"{len(labels)} generated images ({self.per_class} per class, EMA weights) judged by a "
            f"{judge_what}"
        )
        return metrics, what
