"""Deterministic stratified train/val/test split of index sets."""

from __future__ import annotations

import math
from collections import deque

import numpy as np


def stratified_split(
    labels: np.ndarray | None,
    val_fraction: float,
    test_fraction: float,
    seed: int = 0,
    num_samples: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(N)`` into disjoint train/val/test index arrays, stratified by label.

    Split sizes are ``round(fraction * N)`` (halves round up) for val and test, the rest is train. Every
    split's per-class count is the floor or the ceiling of its exact share ``n_class * split_size / N``, so
    each class histogram is the overall one, scaled, up to +-1 sample (for all three splits at once).

    Args:
        labels: [N] class labels (any integers), or ``None`` for an unstratified random split.
        val_fraction: Fraction of the samples in the validation split, in [0, 1).
        test_fraction: Fraction of the samples in the test split, in [0, 1).
        seed: Which samples land where; the same seed always gives the same split.
        num_samples: N when ``labels`` is ``None`` (ignored otherwise).

    Returns:
        ``(train, val, test)``: sorted int64 index arrays that together cover ``range(N)`` exactly once.

    Raises:
        ValueError: If a fraction is outside [0, 1), or they leave no training samples.
    """
    if labels is None:
        if num_samples is None:
            raise ValueError("stratified_split needs num_samples when labels is None")
        labels = np.zeros(num_samples, dtype=np.int64)
    labels = np.asarray(labels)
    n = len(labels)
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    n_val, n_test = _round_half_up(val_fraction * n), _round_half_up(test_fraction * n)
    if n_val + n_test >= n:
        raise ValueError(
            f"val_fraction={val_fraction} + test_fraction={test_fraction} of {n} samples leaves no training "
            "samples; lower them"
        )
    sizes = np.array([n - n_val - n_test, n_val, n_test], dtype=np.int64)
    classes, inverse = np.unique(labels, return_inverse=True)
    class_sizes = np.bincount(inverse, minlength=len(classes)).astype(np.int64)
    counts = _controlled_round(class_sizes, sizes)  # [K, 3] samples of each class in each split

    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for k in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == k))
        bounds = np.cumsum(counts[k])
        for s, chunk in enumerate(np.split(members, bounds[:-1])):
            parts[s].append(chunk)
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def _round_half_up(x: float) -> int:
    # Why not round(): Python rounds halves to even (round(2.5) == 2, round(3.5) == 4).
    return math.floor(x + 0.5)


def _controlled_round(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Integer matrix with row sums ``rows``, column sums ``cols`` and entries floor/ceil of rows*cols/N.

    Such a rounding always exists (Bacharach 1966); it is found as a bipartite b-matching: a greedy pass
    picks which entries round up, then augmenting paths fix any row left short.
    """
    total = int(rows.sum())
    exact = np.outer(rows, cols)  # numerators over `total`: exact integer arithmetic, no float floor errors
    base, remainder = exact // total, exact % total
    need_row = rows - base.sum(1)  # how many entries of each row round up
    col_left = cols - base.sum(0)  # how many entries of each column round up
    up = np.zeros_like(base, dtype=bool)
    for r in range(len(rows)):
        order = np.argsort(-remainder[r], kind="stable")
        for c in order:
            if need_row[r] == 0 or remainder[r, c] == 0:
                break
            if col_left[c] > 0:
                up[r, c] = True
                need_row[r] -= 1
                col_left[c] -= 1
    for r in range(len(rows)):
        while need_row[r] > 0:
            _augment(r, up, remainder > 0, col_left)
            need_row[r] -= 1
    return base + up


def _augment(start: int, up: np.ndarray, allowed: np.ndarray, col_left: np.ndarray) -> None:
    """Round up one more entry of row ``start`` along an alternating path (BFS) ending at a free column."""
    n_rows, n_cols = up.shape
    parent_of_col: dict[int, int] = {}  # column -> row it was reached from
    parent_of_row: dict[int, int] = {start: -1}  # row -> column it was reached from
    queue = deque([start])
    while queue:
        r = queue.popleft()
        for c in range(n_cols):
            if not allowed[r, c] or up[r, c] or c in parent_of_col:
                continue
            parent_of_col[c] = r
            if col_left[c] > 0:
                col_left[c] -= 1
                while c != -1:  # flip the path: (row, col) pairs become up, (col, row) pairs go down
                    r = parent_of_col[c]
                    up[r, c] = True
                    c_prev = parent_of_row[r]
                    if c_prev != -1:
                        up[r, c_prev] = False
                    c = c_prev
                return
            for r2 in range(n_rows):
                if up[r2, c] and r2 not in parent_of_row:
                    parent_of_row[r2] = c
                    queue.append(r2)
    raise RuntimeError("stratified_split: no consistent rounding found (this is a bug)")
