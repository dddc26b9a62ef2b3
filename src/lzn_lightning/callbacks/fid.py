"""The FID callback: generated images against real training images, via clean-fid's Frechet distance
(:mod:`lzn_lightning.metrics.fid`).

Feature networks:

* ``"inception"``: clean-fid's InceptionV3 (the standard FID network; "clean" mode: uint8 images, PIL bicubic
  resize to 299 px). clean-fid downloads its weights on first use, which fails on machines without network.
* ``"classifier"``: the penultimate layer (128-d) of a small CNN trained in the callback on the run's training
  split (the usual substitute for MNIST-like data, where Inception features mean little). Numbers are
  comparable only between runs that use the same data and classifier settings.
* any ``nn.Module`` mapping images [B, C, H, W] in [-1, 1] to features [B, D].
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch import Tensor, nn

from lzn_lightning.callbacks.base import EvalCallback, split_data
from lzn_lightning.metrics import InceptionFeatures, features_of, frechet_distance, train_classifier


class FID(EvalCallback):
    """Frechet distance between features of generated images and of real training images.

    For a class-conditional model the generated images are asked for the labels of the real images used
    (as the reference does), so both sets have the same class mix; otherwise they are unconditional. The log
    line states the feature network, the sample counts and the sampler.

    Args:
        num_samples: Generated images (and at most this many real images, a random subset of ``real_split``).
        feature_extractor: ``"classifier"``, ``"inception"`` or an ``nn.Module`` (see the module docstring).
        real_split: Split of the real images.
        steps: RF Euler steps of the sampler (None: the image modality's ``sample_steps``).
        classifier_epochs: Training epochs of the in-callback classifier.
        seed: Seed of the real subset, the classifier and the samples.
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Also run at the end of ``trainer.test``.
    """

    def __init__(
        self,
        num_samples: int = 1000,
        feature_extractor: str | nn.Module = "classifier",
        real_split: str = "train",
        steps: int | None = None,
        classifier_epochs: int = 30,
        seed: int = 0,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        if isinstance(feature_extractor, str) and feature_extractor not in ("classifier", "inception"):
            raise ValueError(
                "feature_extractor must be 'classifier', 'inception' or an nn.Module, "
                f"got {feature_extractor!r}"
            )
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        self.num_samples = num_samples
        self.feature_extractor = feature_extractor
        self.real_split = real_split
        self.steps = steps
        self.classifier_epochs = classifier_epochs
        self.seed = seed
        self._net: nn.Module | None = feature_extractor if isinstance(feature_extractor, nn.Module) else None
        self._net_what = (
            f"user feature network {type(feature_extractor).__name__}" if self._net is not None else ""
        )
        self._real: tuple[Tensor, Tensor | None, np.ndarray] | None = None

    def _features_net(
        self, trainer: pl.Trainer, pl_module: Any, real: Tensor, labels: Tensor | None
    ) -> nn.Module:
        if self._net is not None:
            return self._net
        if self.feature_extractor == "inception":
            self._net = InceptionFeatures(pl_module.device)
            self._net_what = "clean-fid InceptionV3 pool3 2048-d ('clean' PIL-bicubic resize to 299)"
            return self._net
        if labels is None:
            raise ValueError(
                "feature_extractor='classifier' needs labelled training data; pass an nn.Module instead"
            )
        k = int(labels.max()) + 1
        field = pl_module.routing.label_field(required=False)
        if field is not None:
            k = int(pl_module.modality(field).anchor_table().shape[0])
        test = _held_out(trainer, pl_module)
        trained = train_classifier(
            real, labels, k, test, self.classifier_epochs, seed=self.seed, device=pl_module.device
        )
        self._net = trained.net
        self._net_what = f"penultimate 128-d features of a {trained.description}"
        return self._net

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Generate ``num_samples`` images and compute the FID against the real features (cached)."""
        m: Any = pl_module
        if self._real is None:
            real, labels = split_data(trainer, m, self.real_split, self.num_samples, self.seed)
            net = self._features_net(trainer, m, real, labels)
            self._real = (real, labels, features_of(net, real))
        real, labels, real_feats = self._real
        assert self._net is not None
        conditional = labels is not None and m.routing.label_field(required=False) is not None
        gen_labels = labels if conditional else None
        n = len(real) if conditional else self.num_samples
        fake = m.generate(n, labels=gen_labels, steps=self.steps, seed=self.seed, progress=False)
        fid = frechet_distance(real_feats, features_of(self._net, fake))
        steps = self.steps or m.modality(m.routing.decoder_field()).sample_steps or "?"
        what = (
            f"clean-fid frechet_distance; features: {self._net_what}; {len(fake)} generated "
            f"({'with the real images labels' if conditional else 'unconditional'}, EMA weights, "
            f"Euler {steps} steps) vs {len(real)} real {self.real_split} images"
        )
        return {"fid": fid}, what


def _held_out(trainer: pl.Trainer, pl_module: Any) -> tuple[Tensor, Tensor] | None:
    """The test split (else val) with labels, to report the classifier's accuracy; None if unavailable."""
    for split in ("test", "val"):
        try:
            x, y = split_data(trainer, pl_module, split)
        except (ValueError, AttributeError, KeyError, TypeError):
            continue
        if y is not None:
            return x, y
    return None
