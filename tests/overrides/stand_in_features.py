"""Stand-in feature networks for the paper's generation metrics offline (Inception and CLIP weights cannot be
downloaded on the test machines): fixed random convolutions with the outputs' layout of the real ones, so the
whole ``lzn test`` protocol runs; their numbers mean nothing beside the paper's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _rgb16(x: Tensor) -> Tensor:
    """Images [B, C, H, W] in [-1, 1] as [B, 3, 16, 16] (grey expanded, any size pooled or upsampled)."""
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)


class StandInInception(nn.Module):
    """``{"pool3": [B, 16], "spatial": [B, 7 * 2 * 2], "probs": [B, 10]}`` as InceptionFeatureSet gives
    ``{"pool3": [B, 2048], "spatial": [B, 7 * 17 * 17], "probs": [B, 1008]}``.

    Args:
        seed: Seed of the fixed random weights (another seed is another network, e.g. for the cache key).
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Linear(16, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = torch.tanh(self.conv(_rgb16(x)))  # [B, 16, 16, 16]
        pool3 = h.mean((2, 3))  # [B, 16]
        spatial = F.adaptive_avg_pool2d(h[:, :7], 2).flatten(1)  # [B, 7*2*2]
        return {"pool3": pool3, "spatial": spatial, "probs": self.head(pool3).softmax(-1)}


class StandInCLIP(nn.Module):
    """``{"clip": [B, 12]}``, unit-norm, as CLIPImageEmbeddings gives unit-norm CLIP image embeddings."""

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(3 * 16 * 16, 12)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"clip": F.normalize(self.proj(_rgb16(x).flatten(1)), dim=-1)}
