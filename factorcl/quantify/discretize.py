"""Discretising samples for the CVX estimator: k-means clusters for vectors, fixed-width bins for 1-D data.

The CVX estimator needs discrete X1, X2; the thesis's route for high-dimensional features is to
cluster each modality and use the cluster ids. The plug-in joint of (cluster1, cluster2, y) then
stands in for p. Its I(X1, X2; Y) is biased upwards by about (k1 k2 - 1)(|Y| - 1) / (2 N ln 2)
bits (Miller-Madow, with k the occupied cells), which :func:`plugin_bias_bits` reports so that a
reader can judge it; :func:`default_clusters` keeps it small by keeping k1 k2 |Y| <= N / 10.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bin_1d", "default_clusters", "discretize", "joint_counts", "kmeans", "plugin_bias_bits"]

#: The most clusters :func:`default_clusters` picks per modality.
MAX_DEFAULT_CLUSTERS = 20


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 100, n_init: int = 3, name: str = "x") -> np.ndarray:
    """Cluster ids [N] of the rows of ``x`` [N, d]: Lloyd's k-means from k-means++ seeds, best of ``n_init``.

    Features are standardised first (per column), so that no single large-scale feature decides
    the clusters. Raises ValueError when there are fewer distinct rows than clusters.
    """
    if k < 1:
        raise ValueError(f"clusters must be >= 1, got {k}")
    n = x.shape[0]
    if n < k:
        raise ValueError(f"clusters={k} needs at least {k} samples of {name}, got {n}")
    x = np.asarray(x, dtype=np.float64).reshape(n, -1)
    scale = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    distinct = len(np.unique(x, axis=0)) if n <= 200_000 else n
    if distinct < k:
        raise ValueError(f"clusters={k} needs at least {k} distinct rows of {name}, got {distinct}")
    rng = np.random.default_rng(seed)
    sq = np.einsum("ij,ij->i", x, x)
    best, best_inertia = None, math.inf
    for _ in range(n_init):
        centres = _plusplus(x, sq, k, rng)
        labels = np.zeros(n, dtype=np.int64)
        for it in range(iters):
            dist = sq[:, None] - 2.0 * x @ centres.T + np.einsum("ij,ij->i", centres, centres)[None]
            new = dist.argmin(axis=1)
            if it > 0 and np.array_equal(new, labels):
                break
            labels = new
            counts = np.bincount(labels, minlength=k)
            sums = np.zeros_like(centres)
            np.add.at(sums, labels, x)
            empty = counts == 0
            centres = np.where(empty[:, None], centres, sums / np.maximum(counts, 1)[:, None])
            if empty.any():  # re-seed an empty cluster at the point farthest from its centre
                far = np.argsort(dist[np.arange(n), labels])[::-1][: int(empty.sum())]
                centres[empty] = x[far]
        inertia = float(np.sum(dist[np.arange(n), labels]))
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return _relabel(best)


def _plusplus(x: np.ndarray, sq: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = x.shape[0]
    centres = [x[rng.integers(n)]]
    closest = sq - 2.0 * x @ centres[0] + centres[0] @ centres[0]
    for _ in range(1, k):
        weights = np.clip(closest, 0.0, None)
        total = weights.sum()
        idx = rng.choice(n, p=weights / total) if total > 0 else rng.integers(n)
        centres.append(x[idx])
        closest = np.minimum(closest, sq - 2.0 * x @ x[idx] + x[idx] @ x[idx])
    return np.stack(centres)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Ids 0..k'-1 in order of first appearance (k' <= k when a cluster stayed empty)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def bin_1d(x: np.ndarray, bins: int, name: str = "x") -> np.ndarray:
    """Bin ids [N] of 1-D values: ``bins`` equal-width bins over [min, max]."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size < bins:
        raise ValueError(f"bins={bins} needs at least {bins} samples of {name}, got {x.size}")
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return np.zeros(x.size, dtype=np.int64)
    ids = np.floor((x - lo) / (hi - lo) * bins).astype(np.int64)
    return np.clip(ids, 0, bins - 1)


def discretize(x: np.ndarray, clusters: int, bins: int | None, seed: int, name: str) -> tuple[np.ndarray, str]:
    """Discrete ids of one modality and how they were made: bins for 1-D data, else k-means."""
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] == 1 and bins is not None:
        return bin_1d(flat[:, 0], bins, name=name), f"{bins} equal-width bins"
    return kmeans(flat, clusters, seed=seed, name=name), f"k-means, {clusters} clusters"


def joint_counts(c1: np.ndarray, c2: np.ndarray, y: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Counts [|C1|, |C2|, |Y|] of the triples (c1, c2, y)."""
    counts = np.zeros(shape, dtype=np.float64)
    np.add.at(counts, (c1, c2, y), 1.0)
    return counts


def default_clusters(n: int, num_classes: int) -> int:
    """Clusters per modality: at most 20, and few enough that k^2 |Y| <= N / 10 (at least 2)."""
    return int(max(2, min(MAX_DEFAULT_CLUSTERS, math.floor(math.sqrt(n / (10.0 * num_classes))))))


def plugin_bias_bits(counts: np.ndarray) -> float:
    """Miller-Madow first-order upward bias of the plug-in I(X1, X2; Y) of a count table [k1, k2, |Y|], bits.

    I = H(X) + H(Y) - H(X, Y) with X = (X1, X2); each plug-in entropy of m occupied cells is low by
    (m - 1) / (2 N) nats, so I is high by (m_XY - m_X - m_Y + 1) / (2 N).
    """
    n = float(counts.sum())
    flat = counts.reshape(-1, counts.shape[2])
    m_xy = int((flat > 0).sum())
    m_x = int((flat.sum(axis=1) > 0).sum())
    m_y = int((flat.sum(axis=0) > 0).sum())
    return max(m_xy - m_x - m_y + 1, 0) / (2.0 * n * math.log(2.0))
