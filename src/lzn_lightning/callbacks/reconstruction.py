"""Reconstruction L2 through RF inversion: encode, invert the decoder's ODE, decode (the reference's "Recon")."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from lzn_lightning.callbacks.base import EvalCallback, split_data
from lzn_lightning.inference import LZNInference
from lzn_lightning.metrics import mean_reconstruction_l2


class ReconstructionL2(EvalCallback):
    """Mean L2 norm (over C, H, W, in [-1, 1] units) between images and their reconstructions.

    As the reference (docs/design/lzn.md §4): a fixed set of training images; their latents through the field of
    those same images (``context="batch"`` with all of them in one batch); the RF ODE inverted from each image
    to its noise and integrated forward again, conditioned on the true labels when the decoder takes labels;
    averaged over ``repeats`` prior-noise draws (the reference uses 20).

    Args:
        num_samples: Number of training images (a seeded random subset).
        repeats: Independent prior-noise draws to average over.
        context: ``"batch"`` (reference) or ``"bank"`` field of the latents.
        steps: RF Euler steps of inversion and decoding (None: the image modality's ``sample_steps``).
        split: Data split of the images.
        seed: Seed of the subset and of the prior noise.
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Also run at the end of ``trainer.test``.
    """

    def __init__(
        self,
        num_samples: int = 256,
        repeats: int = 1,
        context: str = "batch",
        steps: int | None = None,
        split: str = "train",
        seed: int = 0,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        if num_samples < 1 or repeats < 1:
            raise ValueError("num_samples and repeats must be >= 1")
        self.num_samples = num_samples
        self.repeats = repeats
        self.context = context
        self.steps = steps
        self.split = split
        self.seed = seed

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Reconstruct the images ``repeats`` times and average the L2 errors."""
        m: Any = pl_module
        images, labels = split_data(trainer, m, self.split, self.num_samples, self.seed)
        l2, _ = mean_reconstruction_l2(
            m, images, self.repeats, self.seed, labels=labels, context=self.context, steps=self.steps
        )
        dec = m.modality(LZNInference(m).decoder_field())
        steps = self.steps or dec.sample_steps or "?"
        what = (
            f"{len(images)} {self.split} images, latents in one field of all of them ({self.context} context), "
            f"{getattr(dec, 'sample_method', 'euler')} {steps} steps inversion + decoding, {self.repeats} noise "
            "draw(s), EMA weights"
        )
        return {"recon_l2": l2}, what
