"""The paper's generation metrics beside FID, as plain functions of feature arrays (float64 inside).

The features come from a feature network (:mod:`lzn_lightning.metrics.feature_sets`): Inception pool3 for
precision/recall, its softmax for the Inception Score, the first 7 channels of ``mixed_6/conv`` for sFID, and
L2-normalised CLIP image embeddings for CMMD. Each function takes numpy arrays or torch tensors, and says in
its docstring which published definition it computes and how it differs from the evaluator the LZN authors
used (the consistency-models evaluator, after Kynkaanniemi et al. 2019 and openai/guided-diffusion).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import rel_entr
from torch import Tensor

from lzn_lightning.metrics.fid import frechet_distance


def _as_float64(name: str, x: Any) -> Tensor:
    """``x`` (numpy or torch) as a float64 CPU tensor."""
    t = x.detach().cpu() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"{name} must be a numeric array, got dtype {t.dtype}")
    return t.to(torch.float64)


def _feature_pair(real: Any, fake: Any) -> tuple[Tensor, Tensor]:
    """Both sets as float64 [N, D] with the same D, or a one-line ValueError."""
    a, b = _as_float64("real_features", real), _as_float64("fake_features", fake)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(
            f"features must be 2-D [N, D], got shapes {tuple(a.shape)} and {tuple(b.shape)}; "
            "flatten each sample's features first"
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"real and fake features must have the same dimension D, got {a.shape[1]} and {b.shape[1]}; "
            "compute both with the same feature network"
        )
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("features contain NaN or inf; check the feature network's input range")
    return a, b


def _squared_distances(u: Tensor, v: Tensor) -> Tensor:
    """Squared Euclidean distances [len(u), len(v)], clamped at 0 (one matrix; in place to save memory)."""
    d = u @ v.T
    d.mul_(-2).add_((u * u).sum(1)[:, None]).add_((v * v).sum(1)[None, :])
    return d.clamp_(min=0)


def manifold_radii(features: Any, k: int = 3, batch_size: int = 10000) -> np.ndarray:
    """Radius of each point's k-NN ball: squared distance to its k-th nearest neighbour in its own set.

    The point itself is at distance 0 and is the 0-th neighbour; the radius is the (k+1)-th smallest entry of
    its distance row, as in Kynkaanniemi et al. 2019 (an exact duplicate of the point counts as a neighbour).
    Only blocks of ``batch_size`` x ``batch_size`` distances are formed.

    Args:
        features: [N, D] features, N > k.
        k: Neighbourhood size.
        batch_size: Rows and columns of one distance block.

    Returns:
        float64 [N] squared radii.
    """
    x, _ = _feature_pair(features, features)
    _check_k(k, len(x), "features")
    _check_batch(batch_size)
    radii = torch.empty(len(x), dtype=torch.float64)
    for r0 in range(0, len(x), batch_size):
        rows = x[r0 : r0 + batch_size]
        nearest = torch.full((len(rows), 0), float("inf"), dtype=torch.float64)  # running k+1 smallest
        for c0 in range(0, len(x), batch_size):
            d = _squared_distances(rows, x[c0 : c0 + batch_size])
            block = d.topk(min(k + 1, d.shape[1]), dim=1, largest=False).values
            merged = torch.cat([nearest, block], dim=1)
            nearest = merged.topk(min(k + 1, merged.shape[1]), dim=1, largest=False).values
        radii[r0 : r0 + batch_size] = nearest.sort(dim=1).values[:, k]
    return radii.numpy()


def precision_recall(
    real_features: Any,
    fake_features: Any,
    k: int = 3,
    batch_size: int = 10000,
    real_radii: Any | None = None,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of generated against real features.

    Each set's manifold is the union of balls around its points, of squared radius the squared Euclidean
    distance to the point's k-th nearest neighbour within its own set (:func:`manifold_radii`). A sample is
    inside a manifold when its squared distance to some point of it is <= that point's radius. Precision =
    fraction of fake samples inside the real manifold; recall = fraction of real samples inside the fake
    manifold. This is what the consistency-models evaluator the LZN authors used computes (k = 3), except
    that distances here are float64, where that evaluator computes them in float16 (float32 if float16
    overflows), so points within round-off of a ball's boundary can be decided differently.

    Distances are formed in blocks of ``batch_size`` x ``batch_size`` (float64: 800 MB at 10,000), so 50,000
    x 50,000 never forms one matrix; the real x fake blocks serve both directions at once.

    Args:
        real_features: [N, D] features of real images (Inception pool3 in the paper).
        fake_features: [M, D] features of generated images.
        k: Neighbourhood size of the manifold estimate (the paper's evaluator: 3); must be < N and < M.
        batch_size: Rows and columns of one distance block (trades memory for speed).
        real_radii: ``manifold_radii(real_features, k)`` computed before (the real set's third of the work),
            to reuse across several generated sets; None computes it.

    Returns:
        (precision, recall), each in [0, 1].
    """
    real, fake = _feature_pair(real_features, fake_features)
    _check_k(k, len(real), "real_features")
    _check_k(k, len(fake), "fake_features")
    _check_batch(batch_size)
    if real_radii is None:
        real_radii = manifold_radii(real, k, batch_size)
    real_radii = _as_float64("real_radii", real_radii)
    if real_radii.shape != (len(real),):
        raise ValueError(
            f"real_radii must be [N] = [{len(real)}] (manifold_radii of real_features), got "
            f"{tuple(real_radii.shape)}"
        )
    fake_radii = torch.from_numpy(manifold_radii(fake, k, batch_size))
    real_inside = torch.zeros(len(real), dtype=torch.bool)  # real sample inside the fake manifold (recall)
    fake_inside = torch.zeros(len(fake), dtype=torch.bool)  # fake sample inside the real manifold (precision)
    for r0 in range(0, len(real), batch_size):
        rows = real[r0 : r0 + batch_size]
        for c0 in range(0, len(fake), batch_size):
            d = _squared_distances(rows, fake[c0 : c0 + batch_size])  # [rows, cols] real x fake
            real_inside[r0 : r0 + batch_size] |= (d <= fake_radii[None, c0 : c0 + batch_size]).any(1)
            fake_inside[c0 : c0 + batch_size] |= (d <= real_radii[r0 : r0 + batch_size, None]).any(0)
    return float(fake_inside.double().mean()), float(real_inside.double().mean())


def inception_score(probs: Any, split_size: int = 5000) -> float:
    """Inception Score (Salimans et al. 2016): mean over splits of exp(mean_x KL(p(y|x) || p(y))).

    The samples are cut into consecutive splits of ``split_size`` (the last one holds the remainder, as in
    the consistency-models evaluator the LZN authors used, which calls the split size ``is_split_size`` and
    uses 5,000); p(y) is the mean of p(y|x) over the split. 0 log 0 is taken as 0, so exact zeros (one-hot
    rows) are defined; that evaluator computes ``p * (log p - log p(y))`` directly, which gives NaN for an
    exact 0 and otherwise the same number.

    Args:
        probs: [N, C] class probabilities of generated images (rows sum to 1): the Inception softmax in the
            paper (1008 classes, logits without bias; see :class:`InceptionFeatureSet`).
        split_size: Samples per split, 1 <= split_size <= N.

    Returns:
        The mean score over splits, in [1, C].
    """
    p = _as_float64("probs", probs)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must be [N, C] class probabilities, got shape {tuple(p.shape)}")
    if not 1 <= split_size <= len(p):
        raise ValueError(
            f"split_size must be between 1 and the number of samples ({len(p)}), got {split_size}; "
            "pass more samples or a smaller split_size"
        )
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(len(p), dtype=torch.float64), atol=1e-3):
        raise ValueError("probs must be non-negative rows summing to 1; pass softmax(logits), not logits")
    scores = []
    for s0 in range(0, len(p), split_size):
        part = p[s0 : s0 + split_size].numpy()
        marginal = part.mean(0, keepdims=True)  # p(y) of this split, [1, C]
        kl = rel_entr(part, marginal).sum(1)  # KL(p(y|x) || p(y)) per sample, 0 log 0 = 0
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores))


def spatial_frechet_distance(real_spatial: Any, fake_spatial: Any) -> float:
    """sFID (Nash et al. 2021): the Frechet distance of flattened spatial features.

    In the paper (as in the consistency-models / guided-diffusion evaluator) the spatial features are the
    first 7 channels of Inception's ``mixed_6/conv`` (7 x 17 x 17 = 2023 values per image); the order in
    which they are flattened does not change the distance.

    Args:
        real_spatial: [N, ...] spatial features of real images ([N, 2023] or [N, 7, 17, 17], say).
        fake_spatial: [M, ...] the same for generated images.

    Returns:
        :func:`~lzn_lightning.metrics.frechet_distance` of the two [N, prod(...)] sets.
    """
    a, b = _as_float64("real_spatial", real_spatial), _as_float64("fake_spatial", fake_spatial)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(
            f"spatial features must be [N, ...] with a sample axis first, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    return frechet_distance(a.flatten(1).numpy(), b.flatten(1).numpy())  # [N, C*H*W]


def cmmd(
    real_embeddings: Any,
    fake_embeddings: Any,
    sigma: float = 10.0,
    scale: float = 1000.0,
    batch_size: int = 10000,
) -> float:
    """CMMD (Jayasumana et al. 2024): scaled squared MMD of CLIP image embeddings with a Gaussian RBF kernel.

    ``scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y))`` with ``k(a, b) = exp(-||a - b||^2 /
    (2 sigma^2))``, every mean over all pairs including a point with itself: the **biased** (V-statistic)
    estimator, exactly as the published code (google-research ``cmmd/distance.py``, sigma 10, scale 1000). It
    is 0 for a set against itself and >= 0 always. The published embeddings are CLIP ViT-L/14@336 image
    embeddings, L2-normalised (:class:`CLIPImageEmbeddings`); this function does not normalise its inputs.

    Args:
        real_embeddings: [N, D] embeddings of real images.
        fake_embeddings: [M, D] embeddings of generated images.
        sigma: Kernel bandwidth (published: 10).
        scale: Factor on the MMD^2 (published: 1000).
        batch_size: Rows and columns of one kernel block (memory only; the value does not depend on it).
    """
    x, y = _feature_pair(real_embeddings, fake_embeddings)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("cmmd needs at least one embedding in each set")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    _check_batch(batch_size)
    gamma = 1.0 / (2.0 * sigma**2)

    def mean_kernel(u: Tensor, v: Tensor) -> float:
        total = 0.0
        for r0 in range(0, len(u), batch_size):
            for c0 in range(0, len(v), batch_size):
                d = _squared_distances(u[r0 : r0 + batch_size], v[c0 : c0 + batch_size])
                total += float(d.mul_(-gamma).exp_().sum())
        return total / (len(u) * len(v))

    mmd2 = mean_kernel(x, x) + mean_kernel(y, y) - 2.0 * mean_kernel(x, y)
    return float(scale * mmd2)


def _check_k(k: int, n: int, name: str) -> None:
    if not 1 <= k < n:
        raise ValueError(
            f"k must be between 1 and the number of {name} - 1 ({n - 1}), got k={k} for {n} samples; "
            "pass more samples or a smaller k"
        )


def _check_batch(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
