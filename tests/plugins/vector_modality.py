"""A complete new data type in one file: fixed-length feature vectors (tabular rows, audio features, ...).

This is the README's "add a data type" example, and it is tested (tests/integration/test_plugin_example.py):
an MLP encoder to anchors, an MLP decoder from latents trained with a squared-error loss, and ``.npy`` files
for the ``lzn classify | embed | sample`` commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lzn_lightning import Modality


class VectorModality(Modality):
    """Float vectors [B, features].

    Args:
        features: Length of each vector.
        hidden: Width of the encoder and decoder MLPs.
        lr: Learning rate of both MLPs.
        decoder: Whether to train a decoder from latents back to vectors.
    """

    kind = "instance"

    def __init__(self, features: int = 16, hidden: int = 64, lr: float = 1e-3, decoder: bool = False) -> None:
        super().__init__()
        self.features, self.hidden, self.lr, self.want_decoder = features, hidden, lr, decoder

    def build(self, latent_dim: int) -> None:
        """Create the networks once the shared latent size is known."""
        super().build(latent_dim)
        self.encoder = nn.Sequential(
            nn.Linear(self.features, self.hidden), nn.SiLU(), nn.Linear(self.hidden, latent_dim)
        )
        self.decoder = (
            nn.Sequential(
                nn.Linear(latent_dim, self.hidden), nn.SiLU(), nn.Linear(self.hidden, self.features)
            )
            if self.want_decoder
            else None
        )

    def check_field(self, x: Tensor, name: str) -> None:
        """Vectors must be float [B, features]."""
        if x.dim() != 2 or x.shape[1] != self.features or not x.is_floating_point():
            raise ValueError(
                f"field {name!r}: expected float [B, {self.features}], got {x.dtype} {tuple(x.shape)}"
            )

    def encode(self, x: Tensor) -> Tensor:
        """Anchors [B, d]."""
        return self.encoder(x)

    @property
    def has_decoder(self) -> bool:
        """True when built with ``decoder=True``."""
        return self.decoder is not None

    def decoder_loss(self, x: Tensor, latent: Tensor, batch: dict[str, Tensor], generator: Any) -> Tensor:
        """Mean squared error of the vector decoded from its latent."""
        return (self.decode(latent) - x).square().mean()

    def decode(self, latent: Tensor, **kwargs: Any) -> Tensor:
        """Vectors [B, features] from latents [B, d]."""
        assert self.decoder is not None, "built with decoder=False"
        return self.decoder(latent)

    def param_groups(self) -> list[dict[str, Any]]:
        """One ``mlp`` group at ``lr``."""
        return [{"name": "mlp", "params": [p for p in self.parameters() if p.requires_grad], "lr": self.lr}]

    input_suffixes = (".npy",)  # what `lzn classify | embed --input` reads
    output_suffixes = (".npy",)  # what `lzn sample --out` writes

    def read_inputs(self, path: str | Path) -> tuple[Tensor, dict[str, list[str]]]:
        """Vectors [N, features] from a ``.npy`` of floats; no per-item columns."""
        x = torch.from_numpy(np.load(path, allow_pickle=False)).float()
        self.check_field(x, "input")
        return x, {}

    def write_outputs(self, outputs: Tensor, path: str | Path, columns: Any = None, **options: Any) -> str:
        """Generated vectors [N, features] as a ``.npy``."""
        np.save(path, outputs.numpy())
        return f"{len(outputs)} vectors"

    def example_batch(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Standard-normal vectors."""
        return torch.randn(batch_size, self.features, generator=generator)
