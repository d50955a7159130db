"""A run's metrics: ``out_dir/metrics.csv`` (one row per optimizer step), ``out_dir/eval.csv`` (one row per
evaluation), TensorBoard and, when asked for, Weights & Biases.

The Trainer writes from rank 0 only (other ranks pass ``out_dir=None``, which makes every method a
no-op). A resumed run keeps the rows of both files up to its checkpoint's step and drops later ones
(written after that checkpoint by the run that stopped), so the files always match the checkpoint.

Evaluation metrics (``eval/<metric>``, e.g. ``eval/knn_top1``) come at some steps only, so they live in
their own file instead of mostly-empty columns of metrics.csv: metrics.csv stays one row per step,
which its readers count on. Both files take columns that first appear late: the file is rewritten
once (atomically) with the wider header, older rows getting empty cells. Nothing is dropped.
"""

from __future__ import annotations

import csv
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checkpoint import EVAL_NAME, METRICS_NAME, TENSORBOARD_NAME
from .fileio import atomic_write

#: The evaluation metrics' file in a run's out_dir, and the prefix of their names.
EVAL_PREFIX = "eval/"

_tensorboard_warned = False  # one warning per process, however many runs it trains


def read_metrics(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and complete rows of a metrics CSV (metrics.csv or eval.csv), values as written.

    A row with fewer cells than the header (the last line of a run killed while writing it) or an
    unreadable ``step`` is left out.
    """
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = [r for r in reader if None not in r.values() and _step(r) is not None]
    return columns, rows


def _step(row: Mapping[str, Any]) -> int | None:
    try:
        return int(float(row["step"]))
    except (KeyError, TypeError, ValueError):
        return None


def _write_csv(path: Path, columns: list[str], rows: list[Mapping[str, Any]]) -> None:
    """The whole file, atomically (a crash leaves the old file, never a half-written one)."""

    def write(f: Any) -> None:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write, binary=False)


class _CsvLog:
    """One CSV file of rows keyed by ``step``: truncated on resume, widened when a new column appears."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.columns: list[str] = []
        if resume_step is None:
            path.unlink(missing_ok=True)
        elif path.exists():
            self.columns, rows = read_metrics(path)
            _write_csv(path, self.columns, [r for r in rows if _step(r) <= resume_step])

    def append(self, row: Mapping[str, Any]) -> None:
        """Add a row; a key not in the header rewrites the file once with the wider header."""
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            rows = read_metrics(self.path)[1] if self.path.exists() else []
            self.columns += new
            _write_csv(self.path, self.columns, [*rows, row])
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, restval="").writerow(row)

    def merge(self, step: int, values: Mapping[str, Any]) -> None:
        """Add ``values`` to the row of ``step`` (a new row when there is none); rewrites the (small) file."""
        rows = read_metrics(self.path)[1] if self.path.exists() else []
        self.columns += [k for k in ("step", *values) if k not in self.columns]
        for row in rows:
            if _step(row) == step:
                row.update(values)
                break
        else:
            rows.append({"step": step, **values})
        _write_csv(self.path, self.columns, rows)


class MetricsLog:
    """metrics.csv (one row per step), eval.csv (one row per evaluated step), TensorBoard and W&B.

    ``out_dir=None``: nothing is written or logged (the Trainer's ranks other than 0).
    ``resume_step``: keep the rows up to that step (a resume) and continue the same W&B run; None:
    start new files and a new W&B run. TensorBoard gets every value but ``step`` and ``epoch`` at
    x = ``step`` when ``tensorboard`` is set; if the package is missing, a warning (once per process)
    says so and the run logs to the CSV files only. ``wandb_project``: also log every row, the
    evaluations and ``config`` to Weights & Biases (:class:`factorcl.wandb_log.WandbLogger`; needs
    ``pip install "factorcl[wandb]"``), as run ``wandb_name``, in ``wandb_mode`` ("online",
    "offline", "disabled"; None: wandb's default, i.e. the ``WANDB_MODE`` environment variable).

    Example (what the Trainer does, plus an evaluation)::

        log = MetricsLog(Path("run"), resume_step=None, tensorboard=False)
        log.write({"step": 1, "epoch": 0, "lr": 1e-3, "loss": 2.3})
        log.write_eval(1, {"knn_top1": 0.41})  # -> eval.csv column "eval/knn_top1"
        log.close()
    """

    def __init__(
        self,
        out_dir: Path | None,
        resume_step: int | None,
        tensorboard: bool,
        *,
        wandb_project: str | None = None,
        wandb_name: str | None = None,
        wandb_mode: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = out_dir / METRICS_NAME if out_dir is not None else None
        self.eval_path = out_dir / EVAL_NAME if out_dir is not None else None
        self.writer = None
        self.wandb = None
        self._metrics = self._evals = None
        if out_dir is None:
            return
        # The loggers that can fail (wandb missing, a bad mode) first: a refused start leaves the files as they were.
        if wandb_project is not None:
            from .wandb_log import WandbLogger

            self.wandb = WandbLogger(
                out_dir, wandb_project, name=wandb_name, config=config, resume=resume_step is not None, mode=wandb_mode
            )
        if tensorboard:
            self.writer = _summary_writer(out_dir / TENSORBOARD_NAME)
        self._metrics = _CsvLog(self.path, resume_step)
        self._evals = _CsvLog(self.eval_path, resume_step)

    @property
    def columns(self) -> list[str] | None:
        """metrics.csv's columns (None before its first row or when nothing is written)."""
        return (self._metrics.columns or None) if self._metrics is not None else None

    def write(self, row: Mapping[str, float]) -> None:
        """Log one step's row (``step``, ``epoch``, ``lr``, the terms, ...); its ``eval/`` keys go to eval.csv."""
        if self._metrics is None:
            return
        train = {k: v for k, v in row.items() if not k.startswith(EVAL_PREFIX)}
        evals = {k: v for k, v in row.items() if k.startswith(EVAL_PREFIX)}
        step = int(row["step"])
        self._metrics.append(train)
        if self.writer is not None:
            for key, value in train.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in train.items() if k != "step"}, step)
        if evals:
            self.write_eval(step, evals)

    def write_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log evaluation metrics of ``step`` as ``eval/<name>`` (the prefix is added where missing).

        Several calls for one step (say the kNN and the zero-shot evaluation) fill the same eval.csv row.
        """
        if self._evals is None:
            return
        values = {(k if k.startswith(EVAL_PREFIX) else EVAL_PREFIX + k): float(v) for k, v in metrics.items()}
        self._evals.merge(int(step), values)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, int(step))
        if self.wandb is not None:
            self.wandb.log(values, int(step))

    def close(self) -> None:
        """Flush TensorBoard and finish the W&B run (as failed when called while an exception propagates)."""
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            # Called from the Trainer's ``finally``: an exception on its way out means the run failed.
            self.wandb.finish(exit_code=1 if sys.exc_info()[0] is not None else 0)


def _summary_writer(log_dir: Path) -> Any:
    """TensorBoard's SummaryWriter, or None with a warning (once per process) when tensorboard is missing.

    Only a missing package is forgiven, because ``tensorboard=True`` is the default, so most users
    never asked for it: they get one warning per process (not per run: a sweep in one process would
    repeat it), which names both ways to silence it. Any other failure (say, a folder that cannot be
    written) is a real error and raises.
    """
    global _tensorboard_warned
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _tensorboard_warned:
            _tensorboard_warned = True
            warnings.warn(
                "TensorBoard logging is on (tensorboard=True, the default) but the tensorboard package is not "
                "installed, so this run logs to metrics.csv only. Install it with `pip install tensorboard` "
                '(or `pip install "factorcl[tensorboard]"`), or turn it off with tensorboard=False '
                "(YAML: train.tensorboard: false).",
                UserWarning,
                stacklevel=3,
            )
        return None
    return SummaryWriter(str(log_dir))


__all__ = ["EVAL_NAME", "EVAL_PREFIX", "MetricsLog", "read_metrics"]
