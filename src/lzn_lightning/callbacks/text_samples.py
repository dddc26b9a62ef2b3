"""Text written by the model during training: what its text decoder says from another field's latents."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info

from lzn_lightning.callbacks.base import EvalCallback
from lzn_lightning.callbacks.samples import output_dir
from lzn_lightning.crossmodal import translate


class TextSamples(EvalCallback):
    """Write texts generated from the latents of ``source`` to ``<log_dir>/text_samples/step<N>.txt``.

    A categorical ``source`` (labels) gets ``num`` texts per class, from latents drawn inside each class's
    zone (prior noise 1); an instance ``source`` (e.g. images) gets the texts of the first ``num`` validation
    items, each line next to the item's own text when the data has one. The same seed every time, so the files
    of a run compare.

    Args:
        source: Field the texts are written from, e.g. ``label`` or ``image``.
        text_field: The text field whose decoder writes.
        num: Texts per class (categorical source) or items (instance source).
        temperature: 0 greedy, > 0 sampled.
        seed: Seed of the latents' noise and of the sampling.
        every_n_validations: After every n-th validation loop (0: never during fit).
        on_test: Also at the end of ``trainer.test``.
    """

    def __init__(
        self,
        source: str = "label",
        text_field: str = "text",
        num: int = 5,
        temperature: float = 1.0,
        seed: int = 0,
        every_n_validations: int = 1,
        on_test: bool = True,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        self.source, self.text_field, self.num = source, text_field, num
        self.temperature, self.seed = temperature, seed

    def lines(self, trainer: pl.Trainer, pl_module: Any) -> list[str]:
        """``"<condition>\\t<generated text>"`` lines."""
        text = pl_module.modality(self.text_field)
        g = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        if pl_module.modality(self.source).kind == "categorical":
            k = int(pl_module.modality(self.source).anchor_table().shape[0])
            labels = torch.arange(k).repeat_interleave(self.num)  # [K*num]: num texts per class
            ids = translate(pl_module, labels, self.source, self.text_field, noise_scale=1.0, generator=g,
                            temperature=self.temperature)  # fmt: skip
            written = text.detokenize(ids)
            return [f"{self.source} {y}\t{t}" for y, t in zip(labels.tolist(), written, strict=True)]
        dataset = trainer.datamodule.val_dataset  # type: ignore[attr-defined]
        items = [dataset[i] for i in range(min(self.num, len(dataset)))]
        x = torch.stack([it[self.source] for it in items])
        ids = translate(pl_module, x, self.source, self.text_field, generator=g, temperature=self.temperature)
        truth = [
            text.detokenize(it[self.text_field][None])[0] if self.text_field in it else "" for it in items
        ]
        return [f"{t}\t{w}" for t, w in zip(truth, text.detokenize(ids), strict=True)]

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Write the file; no scalar metrics."""
        path = output_dir(trainer) / "text_samples" / f"step{trainer.global_step}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines(trainer, pl_module)) + "\n", encoding="utf-8")
        return {}, f"texts from {self.source} written to {path}"

    def _run_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank == 0:
            _, what = self.compute(trainer, pl_module)
            rank_zero_info(f"[TextSamples] {what}")
