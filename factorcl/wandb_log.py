"""Weights & Biases logging of a run (optional: ``pip install "factorcl[wandb]"``).

:class:`factorcl.metrics_log.MetricsLog` makes a :class:`WandbLogger` when ``wandb_project`` is given,
on rank 0 only, like its files. The W&B run's id is kept in ``out_dir/wandb_run_id``, so a resumed
training run continues the same W&B run (``resume="allow"``) and a new (or overwritten) one starts a
new W&B run.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checkpoint import WANDB_ID_NAME
from .extras import require
from .fileio import atomic_write

#: The file in a run's out_dir that holds its W&B run id.

WANDB_MODES = ("online", "offline", "disabled")

_ID_CHARS = string.ascii_lowercase + string.digits


def import_wandb() -> Any:
    """The ``wandb`` module, or an ImportError (:class:`factorcl.extras.MissingExtraError`) that names the extra."""
    return require("wandb", "wandb", "Weights & Biases logging (wandb_project)")


class WandbLogger:
    """One training run as one W&B run: every metrics row at its ``step``, and the run's config.

    ``dir=out_dir`` (W&B's files go to ``out_dir/wandb``). ``resume``: reuse the id stored in out_dir
    (when there is one). W&B's history only grows, so rows of steps it already has (logged by the run
    that stopped after the checkpoint a resume starts from) are skipped rather than rejected by W&B
    with a warning per row; an exact resume recomputes the same values for them anyway.
    """

    def __init__(
        self,
        out_dir: str | Path,
        project: str,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        resume: bool = False,
        mode: str | None = None,
    ) -> None:
        if mode is not None and mode not in WANDB_MODES:
            raise ValueError(f"wandb_mode={mode!r} is not valid: one of {', '.join(WANDB_MODES)}, or None")
        wandb = import_wandb()
        out_dir = Path(out_dir)
        id_file = out_dir / WANDB_ID_NAME
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else ""
        if not run_id:
            run_id = "".join(secrets.choice(_ID_CHARS) for _ in range(8))  # W&B's own id format
            atomic_write(id_file, lambda f: f.write(run_id + "\n"), binary=False)
        self.run = wandb.init(project=project, name=name, id=run_id, resume="allow", dir=str(out_dir), mode=mode)
        if config:
            # A resume may change free keys (device, stop_after, ...) or, allowed, the schedule.
            self.run.config.update(dict(config), allow_val_change=True)
        self.id = run_id
        self._first_step = int(getattr(self.run, "starting_step", 0) or 0)

    def log(self, values: Mapping[str, float], step: int) -> None:
        """Log ``values`` at ``step`` (several calls at one step are merged by W&B)."""
        if step >= self._first_step:
            self.run.log({k: float(v) for k, v in values.items()}, step=int(step))

    def finish(self, exit_code: int = 0) -> None:
        """End the W&B run (``exit_code`` 1: marked failed)."""
        self.run.finish(exit_code=exit_code)


__all__ = ["WANDB_ID_NAME", "WANDB_MODES", "WandbLogger", "import_wandb"]
