"""A run's per-step metrics: ``out_dir/metrics.csv`` (one row per optimizer step) and TensorBoard.

The Trainer writes from rank 0 only (other ranks pass ``out_dir=None``, which makes every method a
no-op). A resumed run keeps the rows up to its checkpoint's step and drops later ones (written after
that checkpoint by the run that stopped), so the file always matches the checkpoint.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .checkpoint import METRICS_NAME, TENSORBOARD_NAME


class MetricsLog:
    """metrics.csv (one row per step; rows past a resumed step are dropped) and TensorBoard.

    ``out_dir=None``: nothing is written. ``resume_step``: keep the rows up to that step (a resume);
    None: start a new file. The CSV columns are the first row's keys. TensorBoard gets every value
    but ``step`` and ``epoch`` at x = ``step``, when ``tensorboard`` is set and installed.
    """

    def __init__(self, out_dir: Path | None, resume_step: int | None, tensorboard: bool) -> None:
        self.path = out_dir / METRICS_NAME if out_dir is not None else None
        self.columns: list[str] | None = None
        self.writer = None
        if self.path is not None and resume_step is not None and self.path.exists():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= resume_step]
            if rows:
                self.columns = list(rows[0].keys())
            with self.path.open("w", newline="") as f:
                if self.columns:
                    w = csv.DictWriter(f, fieldnames=self.columns)
                    w.writeheader()
                    w.writerows(rows)
        elif self.path is not None and self.path.exists():
            self.path.unlink()
        if out_dir is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / TENSORBOARD_NAME))
            except Exception:  # tensorboard not installed: CSV only
                self.writer = None

    def write(self, row: dict[str, float]) -> None:
        if self.path is not None:
            if self.columns is None:
                self.columns = list(row.keys())
                with self.path.open("w", newline="") as f:
                    csv.DictWriter(f, fieldnames=self.columns).writeheader()
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(key, value, int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


__all__ = ["MetricsLog"]
