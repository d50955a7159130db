"""``estimate(x1, x2, y, method=...)``: the PID of samples, with bootstrap confidence intervals.

- ``method="cvx"``: discretise each modality (k-means for vectors, equal-width bins for 1-D data),
  take the plug-in joint of (c1, c2, y) and solve it exactly with :func:`~.cvx.pid_discrete`. The
  bootstrap resamples the rows of the discretised triples (the clustering is held fixed) and
  re-solves, so its interval covers the sampling error of the plug-in joint, not the choice of
  clusters.
- ``method="batch"``: the neural estimator of :mod:`.batch`. The bootstrap resamples the rows it
  is evaluated on (the fitted networks are held fixed), so its interval covers the evaluation
  sample, not the training of the networks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .batch import BatchConfig, BatchEstimator
from .cvx import pid_discrete
from .discretize import discretize, joint_counts, plugin_bias_bits
from .pid import PARTS, PID

__all__ = ["METHODS", "check_samples", "estimate"]

METHODS = ("cvx", "batch")


def _as_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of samples, got {type(x).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have one row per sample, got a scalar")
    return arr


def check_samples(x1: Any, x2: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked float64 x1 [N, d1], x2 [N, d2], labels 0..K-1 [N] and the original class values [K].

    Raises ValueError naming the argument: mismatched row counts, NaN or inf, labels that are not
    integers (a continuous target), or a single class.
    """
    a1, a2, ay = _as_array(x1, "x1"), _as_array(x2, "x2"), _as_array(y, "y")
    if not (len(a1) == len(a2) == len(ay)):
        raise ValueError(f"x1, x2 and y must have the same number of rows, got {len(a1)}, {len(a2)} and {len(ay)}")
    for name, arr in (("x1", a1), ("x2", a2)):
        if not np.all(np.isfinite(arr)):
            rows = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
            raise ValueError(f"{name} contains NaN or inf at rows {rows[:5].tolist()}; drop or impute them first")
    if ay.ndim == 2 and ay.shape[1] == 1:
        ay = ay[:, 0]
    if ay.ndim != 1:
        raise ValueError(f"y must be [N] class labels, got shape {ay.shape}")
    if np.issubdtype(ay.dtype, np.floating):
        if not np.all(np.isfinite(ay)):
            raise ValueError("y contains NaN or inf; a classification PID needs a finite class label per row")
        if not np.all(ay == np.round(ay)):
            bad = ay[ay != np.round(ay)][:3].tolist()
            raise ValueError(
                f"y must hold integer class labels for a classification PID, got continuous values such as {bad}; "
                "bin a continuous target into classes first (e.g. its sign or quantiles)"
            )
    classes, labels = np.unique(ay, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"y must hold at least two classes, got only {classes.tolist()}: I(X1, X2; Y) is zero with one class"
        )
    return (
        a1.reshape(len(a1), -1).astype(np.float64),
        a2.reshape(len(a2), -1).astype(np.float64),
        labels.astype(np.int64),
        classes,
    )


def _interval(draws: np.ndarray, confidence: float) -> dict[str, tuple[float, float]]:
    """Percentile intervals of bootstrap draws [n, 5] (R, U1, U2, S, total) and of the shares."""
    lo, hi = (1.0 - confidence) / 2.0 * 100.0, (1.0 + confidence) / 2.0 * 100.0
    total = np.where(draws[:, 4] > 0, draws[:, 4], np.nan)
    columns = {k: draws[:, i] for i, k in enumerate((*PARTS, "total"))}
    columns.update(
        unique_share=(draws[:, 1] + draws[:, 2]) / total,
        redundancy_share=draws[:, 0] / total,
        synergy_share=draws[:, 3] / total,
    )
    return {k: (float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))) for k, v in columns.items()}


def estimate(
    x1: Any,
    x2: Any,
    y: Any,
    method: str = "cvx",
    *,
    clusters: int | tuple[int, int] = 20,
    bins: int | None = None,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
    batch: BatchConfig | dict[str, Any] | None = None,
    solver: str | None = None,
) -> PID:
    """The PID (bits) of I(X1, X2; Y) from samples x1 [N, ...], x2 [N, ...] and class labels y [N].

    ``method``: ``"cvx"`` (discretise, then the exact solver) or ``"batch"`` (the neural
    estimator). ``clusters``: k-means clusters per modality for cvx (one int or a pair);
    ``bins``: equal-width bins for a 1-D modality (default: as many as ``clusters``).
    ``n_bootstrap`` > 0 adds percentile intervals at ``confidence`` to ``PID.ci``. ``batch``:
    :class:`~.batch.BatchConfig` fields for the neural estimator; ``device``, ``seed`` and
    ``progress`` as in training.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if int(n_bootstrap) < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a1, a2, labels, classes = check_samples(x1, x2, y)
    freq = np.bincount(labels) / len(labels)
    h_y = float(-np.sum(freq[freq > 0] * np.log2(freq[freq > 0])))
    common = {"samples": int(len(labels)), "classes": classes.tolist(), "seed": seed, "H(Y)": h_y}
    if method == "batch":
        cfg = batch if isinstance(batch, BatchConfig) else replace(BatchConfig(), **(batch or {}))
        est = BatchEstimator(len(classes), cfg, device=device, seed=seed, progress=progress)
        point, draws = est.fit_estimate(a1, a2, labels, n_bootstrap=int(n_bootstrap))
        pid = PID(point.R, point.U1, point.U2, point.S, point.total, method="batch", info={**common, **point.info})
    else:
        k1, k2 = (clusters, clusters) if isinstance(clusters, int) else tuple(clusters)
        c1, how1 = discretize(a1, int(k1), bins if bins is not None else int(k1), seed, "x1")
        c2, how2 = discretize(a2, int(k2), bins if bins is not None else int(k2), seed + 1, "x2")
        shape = (int(c1.max()) + 1, int(c2.max()) + 1, len(classes))
        p = joint_counts(c1, c2, labels, shape)
        pid = pid_discrete(p / p.sum(), solver=solver)
        pid.info.update(
            common,
            discretization={"x1": how1, "x2": how2, "joint_shape": list(shape)},
            plugin_bias_bits=plugin_bias_bits(shape[0], shape[1], shape[2], len(labels)),
        )
        draws = None
        if n_bootstrap > 0:
            rng = np.random.default_rng(seed + 1)
            rows = []
            for _ in range(int(n_bootstrap)):
                take = rng.integers(0, len(labels), size=len(labels))
                pb = joint_counts(c1[take], c2[take], labels[take], shape)
                r = pid_discrete(pb / pb.sum(), solver=solver)
                rows.append([r.R, r.U1, r.U2, r.S, r.total])
            draws = np.array(rows)
    if draws is not None:
        pid.ci = _interval(draws, confidence)
        pid.info["bootstrap"] = {"draws": int(n_bootstrap), "confidence": confidence}
    return pid
