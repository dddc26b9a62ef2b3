"""Labels as a categorical modality: a learnable table of class anchors; decoding = nearest zone."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lzn_lightning.latent import compute_latent, nearest_anchor, trace_back
from lzn_lightning.modality import Modality


class LabelModality(Modality):
    """Class labels: K learnable anchors, one zone per class (docs/design/lzn.md §2.2, §3.4).

    Args:
        num_classes: Number of classes K (checked against the datamodule at fit time).
        lr: Learning rate of the anchor table (reference joint CIFAR10: 1e-4).
        init_std: Standard deviation of the N(0, std^2) anchor initialisation.
        flow_steps: Euler steps of the label flow (latent of a label for generation; reverse flow to
            classify).
    """

    kind: ClassVar[str] = "categorical"

    def __init__(
        self, num_classes: int = 10, lr: float = 1e-4, init_std: float = 1.0, flow_steps: int = 100
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"LabelModality needs num_classes >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.lr = lr
        self.init_std = init_std
        self.flow_steps = flow_steps

    def build(self, latent_dim: int) -> None:
        """Create the [K, d] anchor table."""
        super().build(latent_dim)
        self.anchors = nn.Parameter(torch.randn(self.num_classes, latent_dim) * self.init_std)

    def anchor_table(self) -> Tensor:
        """The [K, d] class anchors."""
        return self.anchors

    def check_field(self, x: Tensor, name: str) -> None:
        """Labels must be integer class indices in [0, num_classes)."""
        if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"field {name!r}: LabelModality expects integer class indices, got {x.dtype}")
        if x.dim() != 1:
            raise ValueError(
                f"field {name!r}: LabelModality expects a [batch] tensor, got shape {tuple(x.shape)}"
            )
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_classes):
            raise ValueError(
                f"field {name!r}: label {int(x.max())} out of range for num_classes={self.num_classes}; "
                "set model.modalities.<label>.init_args.num_classes to the dataset's number of classes"
            )

    def check_datamodule(self, datamodule: Any, name: str) -> None:
        """The datamodule's ``num_classes`` must equal ``num_classes``."""
        k = getattr(datamodule, "num_classes", None)
        if k is not None and k != self.num_classes:
            raise ValueError(
                f"model.modalities.{name}.init_args.num_classes={self.num_classes} but the data has {k} "
                f"classes; set it to {k}"
            )

    def latent(self, labels: Tensor, noise: Tensor) -> Tensor:
        """Latents inside the zones of ``labels``: forward Euler label flow through all K anchors
        (docs/design/lzn.md §4)."""
        table = self.anchor_table()
        return compute_latent(table, table[labels], noise, steps=self.flow_steps, solver="euler")

    def decode(self, latent: Tensor, log_weights: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Class indices: reverse flow to tau=0 through the label anchors, then the nearest anchor."""
        point, _ = trace_back(latent, self.anchor_table(), steps=self.flow_steps, log_weights=log_weights)
        return nearest_anchor(point, self.anchor_table())

    def param_groups(self) -> list[dict[str, Any]]:
        """One group, ``anchors``."""
        return [{"name": "anchors", "params": [self.anchors], "lr": self.lr}]

    def example_batch(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Random class indices."""
        return torch.randint(0, self.num_classes, (batch_size,), generator=generator)
