"""``estimate(x1, x2, y, method=...)``: the PID of samples, with bootstrap confidence intervals.

- ``method="cvx"``: discretise each modality (k-means for vectors, equal-width bins for 1-D data),
  take the plug-in joint of (c1, c2, y) and solve it exactly with :func:`~.cvx.pid_discrete`. The
  bootstrap resamples the rows of the discretised triples (the clustering is held fixed) and
  re-solves, so its interval covers the sampling error of the plug-in joint, not the choice of
  clusters.
- ``method="batch"``: the neural estimator of :mod:`.batch`. The bootstrap resamples the rows it
  is evaluated on (the fitted networks are held fixed), so its interval covers the evaluation
  sample, not the training of the networks.

Intervals are basic bootstrap intervals (see :func:`_interval`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .batch import BatchConfig, BatchEstimator
from .cvx import pid_discrete
from .discretize import default_clusters, discretize, joint_counts, plugin_bias_bits
from .pid import PARTS, PID

__all__ = ["METHODS", "check_samples", "estimate"]

METHODS = ("cvx", "batch")


def _batch_config(options: dict[str, Any]) -> BatchConfig:
    known = set(BatchConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown batch option(s) {unknown}; expected some of {sorted(known)}")
    return replace(BatchConfig(), **options)


def _as_array(x: Any, name: str, labels: bool = False) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of samples, got {type(x).__name__}") from exc
    numeric = np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    if not numeric and not (labels and arr.dtype.kind in "US"):  # class names are fine as labels
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have one row per sample, got a scalar")
    return arr


def check_samples(x1: Any, x2: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked float64 x1 [N, d1], x2 [N, d2], labels 0..K-1 [N] and the original class values [K].

    Raises ValueError naming the argument: mismatched row counts, NaN or inf, labels that are not
    integers (a continuous target), or a single class.
    """
    a1, a2, ay = _as_array(x1, "x1"), _as_array(x2, "x2"), _as_array(y, "y", labels=True)
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


def _with_shares(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Columns R, U1, U2, S, total of [n, 5] rows, and the unique / redundancy / synergy shares."""
    total = np.where(rows[:, 4] > 0, rows[:, 4], np.nan)
    columns = {k: rows[:, i] for i, k in enumerate((*PARTS, "total"))}
    columns.update(
        unique_share=(rows[:, 1] + rows[:, 2]) / total,
        redundancy_share=rows[:, 0] / total,
        synergy_share=rows[:, 3] / total,
    )
    return columns


def _interval(point: PID, draws: np.ndarray, confidence: float) -> dict[str, tuple[float, float]]:
    """Basic (reverse-percentile) bootstrap intervals 2 theta - q_(1-a/2), 2 theta - q_(a/2), per part and share.

    Not the plain percentile interval: a plug-in information estimate is biased upwards, and its
    bootstrap draws are biased upwards once more, so percentile intervals sit above the estimate
    (and above the truth); reflecting the quantiles about the estimate removes that first-order shift.
    """
    lo, hi = (1.0 - confidence) / 2.0 * 100.0, (1.0 + confidence) / 2.0 * 100.0
    theta = _with_shares(np.array([[point.R, point.U1, point.U2, point.S, point.total]]))
    out = {}
    for k, v in _with_shares(draws).items():
        t = float(theta[k][0])
        if not np.isfinite(t) or np.all(np.isnan(v)):
            continue
        out[k] = (2.0 * t - float(np.nanpercentile(v, hi)), 2.0 * t - float(np.nanpercentile(v, lo)))
    return out


def estimate(
    x1: Any,
    x2: Any,
    y: Any,
    method: str = "cvx",
    *,
    clusters: int | tuple[int, int] | None = None,
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
    estimator). ``clusters``: k-means clusters per modality for cvx (one int or a pair; default
    :func:`~.discretize.default_clusters`, at most 20 and few enough that k1 k2 |Y| <= N / 10);
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
        cfg = batch if isinstance(batch, BatchConfig) else _batch_config(batch or {})
        est = BatchEstimator(len(classes), cfg, device=device, seed=seed, progress=progress)
        point, draws = est.fit_estimate(a1, a2, labels, n_bootstrap=int(n_bootstrap))
        pid = PID(point.R, point.U1, point.U2, point.S, point.total, method="batch", info={**common, **point.info})
    else:
        if clusters is None:
            clusters = default_clusters(len(labels), len(classes))
        k1, k2 = (clusters, clusters) if isinstance(clusters, int) else tuple(clusters)
        c1, how1 = discretize(a1, int(k1), bins if bins is not None else int(k1), seed, "x1")
        c2, how2 = discretize(a2, int(k2), bins if bins is not None else int(k2), seed + 1, "x2")
        shape = (int(c1.max()) + 1, int(c2.max()) + 1, len(classes))
        p = joint_counts(c1, c2, labels, shape)
        pid = pid_discrete(p / p.sum(), solver=solver)
        pid.info.update(
            common,
            discretization={"x1": how1, "x2": how2, "joint_shape": list(shape)},
            plugin_bias_bits=plugin_bias_bits(p),
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
        pid.ci = _interval(pid, draws, confidence)
        pid.info["bootstrap"] = {"draws": int(n_bootstrap), "confidence": confidence}
    return pid
