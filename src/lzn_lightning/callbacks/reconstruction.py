"""Reconstruction L2 through RF inversion: encode, invert the decoder's ODE, decode (the reference's
"Recon")."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from lzn_lightning import distributed
from lzn_lightning.callbacks.base import EvalCallback, split_data
from lzn_lightning.callbacks.real_features import clean_split, dataset_tensors_of, subset_indices
from lzn_lightning.inference import LZNInference
from lzn_lightning.metrics import reconstruction_l2


class ReconstructionL2(EvalCallback):
    """Mean L2 norm (over C, H, W, in [-1, 1] units) between images and their reconstructions.

    As the reference (docs/design/lzn.md §4): a fixed set of training images (under the evaluation transform,
    no flip, when the data module has datasets); their latents through the field of those same images
    (``context="batch"`` with all of them in one batch); the RF ODE inverted from each image to its noise and
    integrated forward again, conditioned on the true labels when the decoder takes labels; averaged over
    ``repeats`` prior-noise draws (the reference uses 20, on 2,000 CIFAR-10 or 256 256-px images). On several
    ranks the draws are shared out over them and the errors summed.

    Logs ``recon_l2`` without ``samplers``, else ``recon_l2/<sampler>`` for each (e.g. ``recon_l2/rk45``).

    Args:
        num_samples: Number of training images (a seeded random subset).
        repeats: Independent prior-noise draws to average over.
        context: ``"batch"`` (reference) or ``"bank"`` field of the latents.
        steps: RF Euler steps of inversion and decoding (None: the image modality's ``sample_steps``).
        split: Data split of the images.
        seed: Seed of the subset and of the prior noise.
        samplers: Samplers of inversion and decoding, each reported (``"rk45"``, ``"euler<steps>"``); None:
            the image modality's ``sample_method`` with ``steps``.
        decode_batch_size: Images inverted and decoded at once (None: all); the latents always come from
            one field of all ``num_samples`` images. The reference decodes its global field of 256 (256 px)
            or 2,000 (CIFAR-10) images 32 or 250 per GPU.
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Also run at the end of ``trainer.test``.
    """

    runs_on_all_ranks = True

    def __init__(
        self,
        num_samples: int = 256,
        repeats: int = 1,
        context: str = "batch",
        steps: int | None = None,
        split: str = "train",
        seed: int = 0,
        samplers: tuple[str, ...] | None = None,
        decode_batch_size: int | None = None,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        from lzn_lightning.callbacks.generation_metrics import parse_sampler  # (a cycle at import time)

        if num_samples < 1 or repeats < 1 or (decode_batch_size is not None and decode_batch_size < 1):
            raise ValueError("num_samples, repeats and decode_batch_size must be >= 1")
        for name in samplers or ():
            parse_sampler(name)
        self.num_samples = num_samples
        self.repeats = repeats
        self.context = context
        self.steps = steps
        self.split = split
        self.seed = seed
        self.samplers = tuple(samplers) if samplers else None
        self.decode_batch_size = decode_batch_size

    def l2(
        self, m: Any, images: torch.Tensor, labels: torch.Tensor | None, seed: int, **options: Any
    ) -> float:
        """Mean reconstruction L2 of one prior-noise draw (``seed``): the reference's Recon, as
        ``LZNInference.reconstruct`` of all images in one batch computes it, decoded ``decode_batch_size``
        at a time (``options``: ``steps``, ``method`` of the sampler)."""
        infer = LZNInference(m)
        dec = m.modality(m.routing.decoder_field())
        whole = len(images)
        z = (
            infer.latents(images, context=self.context, batch_size=whole, seed=seed)
            if m.latent_from
            else None
        )
        if dec.decoder_classes > 0 and labels is None:  # as reconstruct: the classes the model gives them
            labels = infer.classify(images, context=self.context, batch_size=whole, seed=seed)
        step = self.decode_batch_size or whole
        out = []
        with m.inference():
            for s in range(0, whole, step):
                x = images[s : s + step].to(m.device)
                zs = z[s : s + step].to(m.device) if z is not None else None
                y = labels[s : s + step].to(m.device) if dec.decoder_classes > 0 else None  # type: ignore[index]
                out.append(dec.reconstruct(x, zs, labels=y, **options).cpu())
        return reconstruction_l2(images, torch.cat(out))

    def _images(self, trainer: pl.Trainer, m: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, f"{self.split}_dataset"):
            dataset = clean_split(dm, self.split)
            indices = subset_indices(len(dataset), self.num_samples, self.seed)
            return dataset_tensors_of(dataset, m, indices)
        return split_data(trainer, m, self.split, self.num_samples, self.seed)

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Reconstruct the images ``repeats`` times per sampler and average the L2 errors."""
        from lzn_lightning.callbacks.generation_metrics import parse_sampler

        m: Any = pl_module
        images, labels = self._images(trainer, m)
        dec = m.modality(m.routing.decoder_field())
        rank, world = distributed.rank(), distributed.world_size()
        runs = (
            [(name, *parse_sampler(name)) for name in self.samplers] if self.samplers else [("", None, None)]
        )
        metrics: dict[str, float] = {}
        for name, method, steps in runs:
            total = torch.zeros(2, dtype=torch.float64)  # [sum of the draws' mean errors, draws]
            for r in range(rank, self.repeats, world):  # this rank's share of the draws
                l2 = self.l2(m, images, labels, self.seed + r, steps=steps or self.steps, method=method)
                total += torch.tensor([l2, 1.0], dtype=torch.float64)
            total = distributed.global_sum(total.to(m.device)).cpu()
            metrics["recon_l2" + (f"/{name}" if name else "")] = float(total[0] / total[1])
        steps = self.steps or dec.sample_steps or "?"
        how = (
            ", ".join(self.samplers)
            if self.samplers
            else f"{getattr(dec, 'sample_method', 'euler')} {steps} steps"
        )
        what = (
            f"{len(images)} {self.split} images, latents in one field of all of them ({self.context} "
            f"context), {how} inversion + decoding, {self.repeats} noise draw(s)"
            f"{f' over {world} ranks' if world > 1 else ''}, EMA weights"
        )
        return metrics, what
