"""A training run as a figure: every logged quantity over the optimizer steps, as ``training.png``.

:func:`plot_run` reads a run's ``metrics.csv`` (and ``eval.csv``; :mod:`factorcl.metrics_log`) and draws
one panel per quantity group, in this order: the loss; each term's estimate (with its
``bracket/<term>`` diagnostic, when logged, in the same panel); ``critic_loss``; ``lr``; then the
evaluations (the ``eval/`` metrics with values in [0, 1], accuracies and recalls, share one panel;
any other gets its own). Columns without one finite value (``critic_loss`` without critic steps)
are left out. The Trainer calls it at the end of a run; ``factorcl plot RUN_DIR`` calls it on any run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .checkpoint import EVAL_NAME, METRICS_NAME, PLOT_NAME
from .fileio import atomic_write
from .metrics_log import EVAL_PREFIX, read_metrics

#: The figure's file name, beside the run's metrics.csv.

#: Columns that are not curves: the x axis and bookkeeping.
_NOT_PLOTTED = ("step", "epoch", "time_s")

#: The panel of all evaluation metrics whose values are fractions.
_EVAL_FRACTIONS = "evaluation"

#: A series longer than this gets a moving mean over it (per-batch estimates are noisy), but not these.
_SMOOTH_FROM = 100
_NOT_SMOOTHED = ("lr",)

#: A series longer than this is drawn as the mean and range of this many bins: a panel is a few hundred
#: pixels wide, and drawing every one of 10^5 points would make the figure take seconds.
_BINS = 1000


def find_metrics(run_dir: str | os.PathLike) -> Path:
    """The metrics.csv of a run: ``run_dir/metrics.csv``, ``run_dir/train/metrics.csv`` (a ``factorcl clip
    train`` folder), or ``run_dir`` itself when it is that file; FileNotFoundError naming the paths tried."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    tried = [run_dir / METRICS_NAME, run_dir / "train" / METRICS_NAME]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no {METRICS_NAME} in {run_dir}: looked for {' and '.join(map(str, tried))} (is it the out_dir of "
        "'factorcl train' or 'factorcl clip train'?)"
    )


def load_series(metrics: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{column: (steps, values)}`` of a metrics.csv and the eval.csv beside it, finite values only.

    Empty cells and values that are not numbers are dropped; columns left without a value are left out.
    """
    metrics = Path(metrics)
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in (metrics, metrics.parent / EVAL_NAME):
        if not path.is_file():
            continue
        columns, rows = read_metrics(path)
        steps = np.array([float(r["step"]) for r in rows])
        for col in columns:
            if col in _NOT_PLOTTED:
                continue
            values = _column(rows, col)
            keep = np.isfinite(values)
            if keep.any():
                series[col] = (steps[keep], values[keep])
    return series


def _column(rows: list[dict[str, str]], col: str) -> np.ndarray:
    """A column as floats: empty cells and text that is not a number become NaN."""
    cells = [r.get(col) or "nan" for r in rows]
    try:
        return np.array(cells, dtype=float)  # "nan" and "inf" parse; the caller drops them
    except ValueError:
        return np.array([_number(c) for c in cells])


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def panel_groups(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[str]]:
    """``{panel title: [columns]}`` in drawing order (see the module docstring)."""
    groups: dict[str, list[str]] = {}
    for col, (_, values) in series.items():
        if col.startswith(EVAL_PREFIX):
            fraction = bool(((values >= 0) & (values <= 1)).all())
            group = _EVAL_FRACTIONS if fraction else col
        elif "/" in col and col.split("/", 1)[1] in series:
            group = col.split("/", 1)[1]  # bracket/<term> joins <term>'s panel
        else:
            group = col
        groups.setdefault(group, []).append(col)

    def rank(title: str) -> int:
        first = groups[title][0]
        if title == "loss":
            return 0
        if first.startswith(EVAL_PREFIX):
            return 4
        return {"critic_loss": 2, "lr": 3}.get(title, 1)

    return {title: groups[title] for title in sorted(groups, key=rank)}  # sorted is stable: CSV order within


def _moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """The trailing mean over ``window`` values (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def _binned(steps: np.ndarray, values: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """(mean step, min, mean, max) of ``bins`` consecutive chunks of a series."""
    starts = np.linspace(0, len(values), bins, endpoint=False).astype(int)
    counts = np.diff(np.append(starts, len(values)))
    mean = lambda a: np.add.reduceat(a, starts) / counts  # noqa: E731
    return mean(steps), np.minimum.reduceat(values, starts), mean(values), np.maximum.reduceat(values, starts)


def plot_run(
    run_dir: str | os.PathLike, out: str | os.PathLike | None = None, columns: list[str] | None = None
) -> Path:
    """Draw a run's metrics (see the module docstring) into a PNG; returns its path.

    ``run_dir``: as :func:`find_metrics` takes it. ``out``: default ``training.png`` beside the
    metrics.csv (for a ``factorcl clip train`` folder: in its ``train/``). ``columns``: only these
    (ValueError naming the available ones for an unknown one). The file is replaced atomically.
    Raises FileNotFoundError without a metrics.csv and ValueError when it has no rows.
    """
    metrics = find_metrics(run_dir)
    series = load_series(metrics)
    if columns:
        unknown = [c for c in columns if c not in series]
        if unknown:
            raise ValueError(
                f"no values for column(s) {', '.join(unknown)} in {metrics} (or its {EVAL_NAME}); "
                f"columns with values: {', '.join(series) or 'none'}"
            )
        series = {c: series[c] for c in columns}
    if not series:
        raise ValueError(f"{metrics} has no rows with values to plot")
    out = Path(out) if out is not None else metrics.parent / PLOT_NAME
    figure = _figure(panel_groups(series), series, title=str(metrics.parent))
    atomic_write(out, lambda f: figure.savefig(f, format="png", dpi=100))
    return out


def _figure(groups: dict[str, list[str]], series: dict[str, tuple[np.ndarray, np.ndarray]], title: str):
    """The figure: one axis per group, in a grid of up to 3 columns."""
    # Imported here, not at the top: the Trainer imports this module, and matplotlib costs about
    # half a second to import. The Figure is used without pyplot, so the user's backend stays as it is.
    from matplotlib.figure import Figure

    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    figure = Figure(figsize=(5 * ncols, 3.2 * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (group, cols) in zip(axes, groups.items()):
        for col in cols:
            steps, values = series[col]
            evaluation = col.startswith(EVAL_PREFIX)
            marker = "o" if evaluation or len(values) < 20 else None
            if len(values) > 2 * _BINS:
                x, lo, mean, hi = _binned(steps, values, _BINS)
                (line,) = ax.plot(x, mean, label=f"{col} (mean and range of {len(values) // _BINS}-step bins)")
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
            elif len(values) >= _SMOOTH_FROM and not evaluation and col not in _NOT_SMOOTHED:
                (raw,) = ax.plot(steps, values, alpha=0.3, linewidth=0.7)
                window = max(2, len(values) // 50)
                ax.plot(steps, _moving_mean(values, window), color=raw.get_color(), label=f"{col} (mean of {window})")
            else:
                ax.plot(steps, values, marker=marker, markersize=3, label=col)
        ax.set_title(group)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(cols) > 1 or len(ax.get_lines()) > 1:
            ax.legend(fontsize="small")
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    figure.suptitle(title, fontsize="medium")
    return figure


__all__ = ["PLOT_NAME", "find_metrics", "load_series", "panel_groups", "plot_run"]
