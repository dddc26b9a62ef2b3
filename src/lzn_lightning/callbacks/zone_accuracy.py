"""Classification accuracy through the label zones, per latent context and prior-noise scale."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from lzn_lightning.callbacks.base import EvalCallback, num_classes_of, split_data
from lzn_lightning.metrics import label_accuracy


class ZoneAccuracy(EvalCallback):
    """Accuracy of ``model.classify`` on a labelled split: uniform and class-weighted, over a noise sweep.

    Logs ``zone_acc/<context>/noise<s>`` (uniform class weights, the plain test accuracy) and
    ``zone_acc_cw/<context>/noise<s>`` (zones weighted by the split's true class frequencies, the
    reference's ``test_accuracy_with_class_weights``: mild label leakage, reported for comparison only), and
    ``zone_acc``: the first context at the first noise scale (by default the API's default, the
    batch-independent bank context with zero noise). The reference's TunableStdClassAccuracy sweeps noise
    over {0, 0.2, ..., 1.2}.

    Args:
        split: Labelled data split to classify.
        num_samples: Images (None: the whole split; else a seeded random subset).
        contexts: Latent contexts to evaluate (``"bank"`` falls back to ``"batch"`` without a bank; then
            skipped).
        noise_scales: Prior-noise scales of the image flow.
        class_weighted: Also report the class-weighted accuracy.
        batch_size: Images per batch, i.e. the field size of the ``"batch"`` context (None: the datamodule's
            ``eval_batch_size``, else 256). When the split spans several fields, its items are shuffled
            (seeded by ``seed``) before they are cut into fields, as the reference shuffles its test set: a
            split stored class by class (MNIST-5k's) would otherwise make fields of one or a few classes.
        seed: Seed of the subset, the shuffle and the prior noise.
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Also run at the end of ``trainer.test``.
    """

    def __init__(
        self,
        split: str = "test",
        num_samples: int | None = None,
        contexts: tuple[str, ...] = ("bank", "batch"),
        noise_scales: tuple[float, ...] = (0.0, 1.0),
        class_weighted: bool = True,
        batch_size: int | None = None,
        seed: int = 0,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        if not contexts or not noise_scales:
            raise ValueError("contexts and noise_scales must not be empty")
        self.split = split
        self.num_samples = num_samples
        self.contexts = tuple(contexts)
        self.noise_scales = tuple(float(s) for s in noise_scales)
        self.class_weighted = class_weighted
        self.batch_size = batch_size
        self.seed = seed

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Classify the split in every (context, noise, weighting) combination."""
        m: Any = pl_module
        images, labels = split_data(trainer, m, self.split, self.num_samples, self.seed)
        if labels is None:
            raise ValueError(f"ZoneAccuracy needs labels in the {self.split!r} split")
        k = num_classes_of(m)
        freq = torch.bincount(labels, minlength=k).float()  # [K]
        batch_size = self.batch_size or int(getattr(trainer.datamodule, "eval_batch_size", 0) or 256)
        contexts = [c for c in self.contexts if c != "bank" or m.anchor_bank is not None]
        if not contexts:
            raise ValueError(
                "ZoneAccuracy: the model has no anchor bank and 'batch' is not among the contexts"
            )
        shuffled = len(images) > batch_size
        if shuffled:  # batch fields are random samples of the split, whatever order it is stored in
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
            images, labels = images[order], labels[order]
        metrics: dict[str, float] = {}
        for ctx in contexts:
            for s in self.noise_scales:
                weights = [("zone_acc", None)] + ([("zone_acc_cw", freq)] if self.class_weighted else [])
                for name, w in weights:
                    pred = m.classify(
                        images, context=ctx, noise_scale=s, class_weights=w, batch_size=batch_size,
                        seed=self.seed, progress=False,
                    )  # fmt: skip
                    metrics[f"{name}/{ctx}/noise{s:g}"] = label_accuracy(pred, labels)
        metrics = {"zone_acc": metrics[f"zone_acc/{contexts[0]}/noise{self.noise_scales[0]:g}"], **metrics}
        bank = m.anchor_bank
        what = (
            f"{len(images)} {self.split} items; contexts {contexts} "
            f"(bank: {0 if bank is None else len(bank)} training items + the item itself; "
            f"batch: fields of {batch_size} items"
            f"{', shuffled with seed ' + str(self.seed) if shuffled else ''}); EMA weights"
        )
        return metrics, what
