"""Linear probe and k-nearest-neighbour accuracy of features, with scikit-learn; their effective rank."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def linear_probe_accuracy(
    train_x: Any, train_y: Any, test_x: Any, test_y: Any, c: float = 1.0, max_iter: int = 1000
) -> float:
    """Test accuracy of a multinomial logistic regression on standardised features.

    Args:
        train_x: [N, D] training features.
        train_y: [N] training labels.
        test_x: [M, D] test features.
        test_y: [M] test labels.
        c: Inverse L2 regularisation strength.
        max_iter: L-BFGS iterations.
    """
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    clf.fit(np.asarray(train_x), np.asarray(train_y))
    return float(clf.score(np.asarray(test_x), np.asarray(test_y)))


def knn_accuracy(
    train_x: Any, train_y: Any, test_x: Any, test_y: Any, k: int = 20, metric: str = "cosine"
) -> float:
    """Test accuracy of a k-nearest-neighbour vote (distance-weighted) on the features.

    Args:
        train_x: [N, D] training features.
        train_y: [N] training labels.
        test_x: [M, D] test features.
        test_y: [M] test labels.
        k: Neighbours (capped at N).
        metric: scikit-learn distance metric.
    """
    clf = KNeighborsClassifier(n_neighbors=min(k, len(train_x)), metric=metric, weights="distance")
    clf.fit(np.asarray(train_x), np.asarray(train_y))
    return float(clf.score(np.asarray(test_x), np.asarray(test_y)))


def effective_rank(features: Any) -> float:
    """exp of the entropy of the centred features' covariance spectrum (Roy & Vetterli's effective rank).

    1 when one direction holds all the variance, the feature width when the variance is isotropic: a
    representation that spreads over few of its dimensions (dimensional collapse) has a low one.

    Args:
        features: [N, D] features (N >= 2).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"effective_rank needs [N >= 2, D] features, got shape {x.shape}")
    eig = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])), 0, None)
    if eig.sum() == 0:
        return 0.0  # every feature identical: no direction holds any variance
    share = eig[eig > 0] / eig.sum()
    return float(np.exp(-(share * np.log(share)).sum()))
