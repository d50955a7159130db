"""The helpers every benchmark script shares: device choice, timing, tables, JSON.

Depends only on torch and the installed factorcl package. Device choice is
:func:`factorcl.device.select_device`, JSON goes through :func:`factorcl.jsonio.write_json` (atomic,
NaN -> null). How the scripts import this module: see ``benchmarks/__init__.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from factorcl.device import select_device
from factorcl.jsonio import write_json

__all__ = [
    "apply_preset",
    "check_line",
    "measuring",
    "trainer_step",
    "environment",
    "format_table",
    "pick_device",
    "synchronize",
    "time_fn",
    "write_json",
]


def apply_preset(args: argparse.Namespace, quick: Mapping[str, Any], full: Mapping[str, Any]) -> argparse.Namespace:
    """Fill every option left at None from the ``--quick`` preset (``args.quick``) or the full one.

    Options given on the command line win over the preset. Values are copied, so later edits of
    ``args`` (e.g. sorting a list) never change the preset.
    """
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, copy.deepcopy(value))
    return args


def pick_device(name: str | None = "auto") -> torch.device:
    """The ``--device`` flag as a device, chosen by :func:`factorcl.device.select_device`.

    ``"auto"`` (or None): CUDA, then MPS, then CPU; anything else is passed to torch.device. A device
    this machine lacks ends the script with a one-line message instead of a traceback.
    """
    try:
        return select_device(name or "auto")
    except ValueError as exc:
        raise SystemExit(f"--device {name}: {exc}") from None


@contextlib.contextmanager
def measuring(threads: int | None = None) -> Iterator[None]:
    """Timing conditions for a training step: ``threads`` torch CPU threads (None: torch's own) and
    the estimators' value checks off, as :func:`factorcl.fit` runs them (no device sync per term).
    Both are restored afterwards (benchmarks also run inside the test process)."""
    import bounds

    old_threads, checks = torch.get_num_threads(), bounds.value_checks_enabled()
    if threads:
        torch.set_num_threads(threads)
    bounds.set_value_checks(False)
    try:
        yield
    finally:
        bounds.set_value_checks(checks)
        torch.set_num_threads(old_threads)


def trainer_step(model: Any, batch: Any, critic_steps: int, lr: float = 1e-3) -> Callable[[], None]:
    """One training step as :class:`factorcl.train.Trainer` takes it, as a closure: the main loss,
    backward and AdamW step, then up to ``critic_steps`` critic steps on the cached features (AdamW at
    ``CRITIC_LR_FACTOR`` x ``lr``), stopping where nothing is left to train, as the trainer does."""
    from factorcl.train import CRITIC_LR_FACTOR, TrainConfig, adamw

    wd = TrainConfig.weight_decay
    main_opt = adamw(model.main_parameters(), lr=lr, weight_decay=wd)
    critic_params = model.critic_parameters()
    critic_opt = adamw(critic_params, lr=CRITIC_LR_FACTOR * lr, weight_decay=wd) if critic_params else None

    def step() -> None:
        loss, _ = model.loss(batch)
        loss.backward()
        main_opt.step()
        main_opt.zero_grad(set_to_none=True)
        if critic_opt is None:
            return
        for _ in range(critic_steps):
            loss = model.critic_loss()
            if not loss.requires_grad:
                break
            loss.backward()
            critic_opt.step()
            critic_opt.zero_grad(set_to_none=True)

    return step


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels, so wall-clock times cover the work and not just its launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_fn(fn: Callable[[], Any], device: torch.device | str, warmup: int = 1, repeats: int = 5) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` timed times; return ms statistics.

    The median is the headline number: on a shared machine single runs are hit by other processes,
    and the median ignores those outliers where a mean would not.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(max(0, warmup)):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "times_ms": times}


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """What the numbers were measured on (recorded in every JSON file)."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device is not None:
        device = torch.device(device)
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, floatfmt)
    return "" if value is None else str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".2f") -> str:
    """A plain-text table with right-aligned columns (floats formatted with ``floatfmt``)."""
    cells = [[_cell(v, floatfmt) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(text.rstrip() for text in [line, sep, *body])


def check_line(ok: bool, claim: str) -> str:
    """``PASS: claim`` or ``FAIL: claim``: one greppable line per claim."""
    return f"{'PASS' if ok else 'FAIL'}: {claim}"
