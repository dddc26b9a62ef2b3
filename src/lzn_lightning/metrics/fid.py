"""Frechet distance (FID) between two image sets' features, and the feature networks it is computed in.

Feature networks:

* clean-fid's InceptionV3 (:class:`InceptionFeatures`, the standard FID network; "clean" mode: uint8 images,
  PIL bicubic resize to 299 px). clean-fid downloads its weights on first use, which fails on machines without
  network.
* the penultimate layer of a :class:`~lzn_lightning.metrics.classifier.SmallCNN` trained on the run's training
  split (the usual substitute for MNIST-like data, where Inception features mean little); numbers are
  comparable only between runs that use the same data and classifier settings.
* any ``nn.Module`` mapping images [B, C, H, W] in [-1, 1] to features [B, D] (:func:`features_of` uses its
  ``embed`` method when it has one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from cleanfid.fid import fid_from_feats
from torch import Tensor, nn


def frechet_distance(real_features: np.ndarray | Tensor, fake_features: np.ndarray | Tensor) -> float:
    """FID between two feature sets [N, D] (Gaussian fit of each; clean-fid's ``fid_from_feats``)."""
    a = np.asarray(
        real_features.cpu() if isinstance(real_features, Tensor) else real_features, dtype=np.float64
    )
    b = np.asarray(
        fake_features.cpu() if isinstance(fake_features, Tensor) else fake_features, dtype=np.float64
    )
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be [N, D] with the same D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("FID needs at least 2 samples per set")
    return float(max(fid_from_feats(a, b), 0.0))  # tiny negative values are round-off of a 0 distance


class InceptionFeatures(nn.Module):
    """clean-fid's InceptionV3 pool features (2048-d) of images in [-1, 1], "clean" resize (PIL bicubic,
    299)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()
        from cleanfid.features import build_feature_extractor
        from cleanfid.resize import build_resizer

        try:
            self._model = build_feature_extractor(
                "clean", device=torch.device(device), use_dataparallel=False
            )
        except Exception as err:  # clean-fid raises bare download errors
            raise RuntimeError(
                f"clean-fid could not load its Inception weights ({type(err).__name__}: {err}); without "
                "network use feature_extractor: classifier (or pass any nn.Module)"
            ) from err
        self._resize = build_resizer("clean")
        self._device = torch.device(device)

    def forward(self, x: Tensor) -> Tensor:
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [B, C, H, W] as clean-fid expects
        u8 = u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8
        resized = [torch.from_numpy(self._resize(img.permute(1, 2, 0).cpu().numpy())) for img in u8]
        batch = torch.stack(resized).permute(0, 3, 1, 2).float()  # [B, 3, 299, 299] in 0..255
        return self._model(batch.to(self._device))


@torch.no_grad()
def features_of(net: nn.Module | Any, images: Tensor, batch_size: int = 256) -> np.ndarray:
    """Features [N, D] of images through ``net.embed`` (if it has one) or ``net``, as float64 numpy."""
    device = next(iter(net.parameters()), torch.zeros(())).device if isinstance(net, nn.Module) else "cpu"
    fn = getattr(net, "embed", net)
    out = [fn(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).flatten(1).double().numpy()
