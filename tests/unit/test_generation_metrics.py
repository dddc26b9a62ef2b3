"""The paper's generation metrics against float64 brute force written from their definitions, and known
answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from lzn_lightning.metrics import (
    cmmd,
    frechet_distance,
    inception_score,
    manifold_radii,
    precision_recall,
    spatial_frechet_distance,
)


def _brute_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Full squared-distance matrices; radius = (k+1)-th smallest of a row that includes the point itself."""
    r_real = np.sort(cdist(real, real, "sqeuclidean"), axis=1)[:, k]
    r_fake = np.sort(cdist(fake, fake, "sqeuclidean"), axis=1)[:, k]
    cross = cdist(real, fake, "sqeuclidean")  # [N real, M fake]
    precision = np.mean([np.any(cross[:, j] <= r_real) for j in range(len(fake))])
    recall = np.mean([np.any(cross[i, :] <= r_fake) for i in range(len(real))])
    return float(precision), float(recall)


def _overlapping_sets(dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two clouds near one 6-d subspace (as image features lie near a low-dimensional manifold), the generated
    one shifted and wider: precision and recall strictly between 0 and 1, and different."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(6, dim))
    real = rng.normal(size=(300, 6)) @ basis + 0.1 * rng.normal(size=(300, dim))
    fake = (0.3 + 1.3 * rng.normal(size=(250, 6))) @ basis + 0.1 * rng.normal(size=(250, dim))
    return real, fake


@pytest.mark.parametrize("dim", [16, 2048])
@pytest.mark.parametrize("batch_size", [10000, 64, 7])
def test_precision_recall_equals_brute_force(dim: int, batch_size: int) -> None:
    real, fake = _overlapping_sets(dim)
    got = precision_recall(real, fake, k=3, batch_size=batch_size)
    want = _brute_precision_recall(real, fake, k=3)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0.0 < got[0] < 1.0 and 0.0 < got[1] < 1.0  # a case that can tell precision from recall


def test_precision_recall_reuses_given_real_radii() -> None:
    real, fake = _overlapping_sets(32, seed=2)
    radii = manifold_radii(real, k=3)
    assert precision_recall(real, fake, real_radii=radii) == precision_recall(real, fake)
    assert precision_recall(real, fake, real_radii=np.zeros(len(real)))[0] == 0.0  # the radii are used
    with pytest.raises(ValueError, match="real_radii"):
        precision_recall(real, fake, real_radii=radii[:-1])


def test_precision_recall_other_k_and_torch_inputs() -> None:
    real, fake = _overlapping_sets(32, seed=1)
    got = precision_recall(
        torch.from_numpy(real).float(), torch.from_numpy(fake).float(), k=5, batch_size=100
    )
    want = _brute_precision_recall(real.astype(np.float32), fake.astype(np.float32), k=5)
    assert got == pytest.approx(want, abs=1e-12)


def test_manifold_radii_are_kth_neighbour_distances() -> None:
    x = np.random.default_rng(2).normal(size=(101, 24))
    d = cdist(x, x, "sqeuclidean")
    np.fill_diagonal(d, np.inf)  # exclude the point itself: the k-th nearest *other* point
    want = np.sort(d, axis=1)[:, 2]  # 3rd nearest other point
    np.testing.assert_allclose(manifold_radii(x, k=3, batch_size=10), want, rtol=1e-10)


def test_precision_recall_known_answers() -> None:
    real, fake = _overlapping_sets(64)
    assert precision_recall(real, real, k=3, batch_size=50) == (1.0, 1.0)
    assert precision_recall(real, fake + 1e3, k=3) == (0.0, 0.0)  # disjoint, far apart


def test_precision_recall_by_hand_on_a_line() -> None:
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k=1: every real ball has squared radius 1
    fake = np.array([[-1.0], [1.5], [10.0]])  # squared radii 6.25, 6.25, 72.25
    # -1 is at squared distance exactly 1 from 0 (on the boundary, inside: <=), 1.5 inside, 10 outside;
    # the ball of 1.5 covers every real point.
    assert precision_recall(real, fake, k=1) == (pytest.approx(2 / 3), 1.0)
    np.testing.assert_allclose(manifold_radii(fake, k=1), [6.25, 6.25, 72.25])


def test_precision_recall_bad_input_raises() -> None:
    real, fake = _overlapping_sets(16)
    with pytest.raises(ValueError, match="2-D"):
        precision_recall(real[None], fake)
    with pytest.raises(ValueError, match="same dimension"):
        precision_recall(real, fake[:, :8])
    with pytest.raises(ValueError, match="smaller k"):
        precision_recall(real[:3], fake, k=3)
    with pytest.raises(ValueError, match="smaller k"):
        precision_recall(real, fake, k=0)
    with pytest.raises(ValueError, match="batch_size"):
        precision_recall(real, fake, batch_size=0)
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(np.full_like(real, np.nan), fake)


def _brute_inception_score(probs: np.ndarray, split_size: int) -> float:
    """Explicit loops over splits, samples and classes, with 0 log 0 = 0."""
    scores = []
    for start in range(0, len(probs), split_size):
        part = probs[start : start + split_size]
        n, c = part.shape
        marginal = [sum(part[i, y] for i in range(n)) / n for y in range(c)]
        kls = []
        for i in range(n):
            kls.append(
                sum(part[i, y] * math.log(part[i, y] / marginal[y]) for y in range(c) if part[i, y] > 0)
            )
        scores.append(math.exp(sum(kls) / n))
    return sum(scores) / len(scores)


@pytest.mark.parametrize("split_size", [60, 25, 7, 1])
def test_inception_score_equals_brute_force(split_size: int) -> None:
    logits = torch.randn(60, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2
    probs = logits.softmax(1).numpy()
    assert inception_score(probs, split_size) == pytest.approx(
        _brute_inception_score(probs, split_size), rel=1e-12
    )


def test_inception_score_known_answers() -> None:
    assert inception_score(np.full((50, 1008), 1 / 1008), split_size=10) == pytest.approx(1.0, abs=1e-12)
    classes = 10
    one_hot = np.eye(classes)[np.arange(200) % classes]  # each split of 50 holds every class 5 times
    assert inception_score(one_hot, split_size=50) == pytest.approx(classes, rel=1e-12)
    assert inception_score(torch.from_numpy(one_hot).float(), split_size=200) == pytest.approx(
        classes, rel=1e-6
    )
    always_one_class = np.eye(classes)[np.zeros(40, dtype=int)]
    assert inception_score(always_one_class, split_size=40) == pytest.approx(1.0, abs=1e-12)


def test_inception_score_bad_input_raises() -> None:
    probs = np.full((20, 4), 0.25)
    with pytest.raises(ValueError, match="smaller split_size"):
        inception_score(probs, split_size=21)
    with pytest.raises(ValueError, match="smaller split_size"):
        inception_score(probs, split_size=0)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        inception_score(probs[0], split_size=1)
    with pytest.raises(ValueError, match="not logits"):
        inception_score(np.random.default_rng(0).normal(size=(20, 4)), split_size=5)


def _brute_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * root))


def test_spatial_frechet_distance_is_fid_of_flattened_features() -> None:
    rng = np.random.default_rng(4)
    real = rng.normal(size=(400, 7, 3, 3))  # [N, C, H, W] like the 7 x 17 x 17 maps, smaller
    fake = 0.2 + 1.1 * rng.normal(size=(300, 7, 3, 3))
    got = spatial_frechet_distance(real, fake)
    assert got == pytest.approx(frechet_distance(real.reshape(400, -1), fake.reshape(300, -1)), rel=1e-10)
    assert got == pytest.approx(_brute_frechet(real.reshape(400, -1), fake.reshape(300, -1)), rel=1e-6)
    perm = rng.permutation(63)  # the flattening order (NCHW or NHWC) does not matter
    assert spatial_frechet_distance(real.reshape(400, -1)[:, perm], fake.reshape(300, -1)[:, perm]) == (
        pytest.approx(got, rel=1e-8)
    )
    assert spatial_frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_spatial_frechet_distance_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="sample axis"):
        spatial_frechet_distance(np.zeros(10), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="same D"):
        spatial_frechet_distance(np.zeros((10, 7, 2, 2)), np.zeros((10, 7, 3, 3)))


def _brute_cmmd(x: np.ndarray, y: np.ndarray, sigma: float, scale: float) -> float:
    """Biased MMD^2 by explicit loops over all pairs (diagonal included)."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma**2))

    kxx = sum(k(a, b) for a in x for b in x) / len(x) ** 2
    kyy = sum(k(a, b) for a in y for b in y) / len(y) ** 2
    kxy = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return scale * (kxx + kyy - 2 * kxy)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("batch_size", [10000, 9])
def test_cmmd_equals_brute_force(batch_size: int) -> None:
    rng = np.random.default_rng(5)
    x = _unit_rows(rng.normal(size=(40, 16)))
    y = _unit_rows(rng.normal(size=(30, 16)) + 0.5)
    got = cmmd(x, y, batch_size=batch_size)
    assert got == pytest.approx(_brute_cmmd(x, y, 10.0, 1000.0), rel=1e-9)
    assert cmmd(x, y, sigma=0.7, scale=1.0, batch_size=batch_size) == pytest.approx(
        _brute_cmmd(x, y, 0.7, 1.0), rel=1e-9
    )


def test_cmmd_known_answers() -> None:
    rng = np.random.default_rng(6)
    x = _unit_rows(rng.normal(size=(200, 768)))
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-9)  # the biased estimator of a set against itself
    shifted = _unit_rows(x + 0.3)
    assert cmmd(x, shifted) > 1e-3
    assert cmmd(x, _unit_rows(x + 0.6)) > cmmd(x, shifted)  # further away, larger


def test_cmmd_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="same dimension"):
        cmmd(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="2-D"):
        cmmd(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="sigma"):
        cmmd(np.zeros((5, 3)), np.zeros((5, 3)), sigma=0)
