"""Checkpoint files: atomic writes, a clear error on a full disk, and loading with ``weights_only=True``.

Every checkpoint the package writes holds tensors and primitives only (dicts, lists, tuples, str,
int, float, bool, None): model and optimizer state dicts, the step, the config as a dict and the RNG
states (numpy's as a tensor). So :func:`load` uses ``torch.load(weights_only=True)``, which cannot
run code from the file. Checkpoints written before this policy kept numpy's RNG state as a numpy
array; :func:`load` allows exactly those numpy types, nothing else.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .fileio import DiskFullError, atomic_write

__all__ = [
    "CheckpointWriteError",
    "ConfigChangedError",
    "RunExistsError",
    "check_writable_dir",
    "clear_run",
    "config_changes",
    "existing_run_files",
    "load",
    "payload_bytes",
    "refuse_existing_run",
    "save_atomic",
    "save_safetensors",
    "state_dict_mismatch",
]


class CheckpointWriteError(DiskFullError):
    """A checkpoint could not be written because its disk is full (the message names the path and sizes)."""


def payload_bytes(obj: Any) -> int:
    """The bytes of the tensors in a (nested) checkpoint payload: about the size of its file."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over it.

    A full disk raises :class:`CheckpointWriteError` (naming the path, the space the checkpoint
    needs and the free space) and leaves the previous file at ``path`` as it was.
    """
    try:
        return atomic_write(path, lambda f: torch.save(obj, f), needed=payload_bytes(obj))
    except CheckpointWriteError:
        raise
    except DiskFullError as exc:
        raise CheckpointWriteError(str(exc), exc.errno) from exc


def _numpy_rng_globals() -> list[Any]:
    """The numpy types of a legacy checkpoint's numpy RNG state (a uint32 array), for weights_only loading."""
    core = getattr(np, "_core", None) or np.core
    found = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found.append(dtypes.UInt32DType)
    return found


def load(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (``weights_only=True``), with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_rng_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch reports both a damaged file and a foreign object as UnpicklingError; the
        # "Unsupported global" line tells them apart.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise ValueError(f"could not read checkpoint {path}: not a complete torch checkpoint (truncated or "
                             "corrupt?)") from exc
        raise ValueError(f"could not read checkpoint {path}: it holds Python objects ({found.group(1)}) other than "
                         "tensors and primitives, which factorcl never writes, so it is not loaded") from exc
    except Exception as exc:  # a truncated or foreign file
        raise ValueError(f"could not read checkpoint {path}: not a complete torch checkpoint (truncated?): "
                         f"{exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"could not read checkpoint {path}: expected a dict, got {type(state).__name__}")
    return state


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write a state dict as safetensors (weights only: no code, loadable without torch.load), atomically."""
    from safetensors.torch import save

    # safetensors refuses tensors that share memory and non-contiguous views: write plain CPU copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    data = save(tensors, metadata=dict(metadata) if metadata else None)
    try:
        return atomic_write(path, lambda f: f.write(data), needed=len(data))
    except DiskFullError as exc:
        raise CheckpointWriteError(str(exc), exc.errno) from exc


# ------------------------------------------------------------------------------ the run folder
class RunExistsError(FileExistsError):
    """``out_dir`` already holds a run and neither resume nor overwrite was asked for."""


class ConfigChangedError(ValueError):
    """A resume whose config differs from the run's in a way that is refused (the message lists the keys)."""


#: Files and folders a run of :func:`factorcl.fit` owns in its out_dir.
RUN_FILES = ("checkpoint.pt", "metrics.csv", "model.safetensors")
RUN_FOLDERS = ("tensorboard",)


def existing_run_files(out_dir: str | os.PathLike, names: tuple[str, ...] = RUN_FILES) -> list[str]:
    """The names of ``names`` present in ``out_dir`` (a run is there when this is non-empty)."""
    out = Path(out_dir)
    return [n for n in names if (out / n).exists()]


def refuse_existing_run(out_dir: str | os.PathLike, found: list[str]) -> None:
    """Raise :class:`RunExistsError` naming the folder, what is in it, and the three ways on."""
    raise RunExistsError(
        f"{out_dir} already holds a run ({', '.join(found)}); nothing was changed. Continue it with --resume "
        "(Python: resume='auto'), replace it with --overwrite (overwrite=True), or choose another --out-dir")


def check_writable_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and check that files can be written in it; a clear error otherwise."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir {out} is a file, not a folder: choose a folder for the run's outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".factorcl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"out_dir {out} is not writable ({exc.strerror or exc}): choose a folder you can "
                              "write to") from exc
    return out


def clear_run(out_dir: str | os.PathLike, names: tuple[str, ...] = RUN_FILES,
              folders: tuple[str, ...] = RUN_FOLDERS) -> None:
    """Remove a run's own files (``overwrite=True``), so that no old file outlives the new run's start."""
    import shutil

    out = Path(out_dir)
    for name in names:
        (out / name).unlink(missing_ok=True)
    for name in folders:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


#: TrainConfig fields that do not change what a run computes: a resume may change them freely.
FREE_TRAIN_KEYS = frozenset({"device", "out_dir", "resume", "progress", "tensorboard", "stop_after",
                             "checkpoint_every", "overwrite", "allow_config_change", "safetensors",
                             "find_unused_parameters"})


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any], free: frozenset[str] = FREE_TRAIN_KEYS,
                   prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for the keys whose values differ (nested mappings by dotted key), minus ``free``."""
    changes: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(old) | set(new), key=str):
        if key in free:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changes.update(config_changes(a, b, free, f"{prefix}{key}."))
        elif _normalise(a) != _normalise(b):
            changes[f"{prefix}{key}"] = (a, b)
    return changes


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def format_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    """``lr: 0.001 -> 0.5, epochs: 4 -> 8``."""
    return ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())


def state_dict_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Lines describing how a saved state dict differs from the model's (missing, unexpected, shapes)."""
    lines = []
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    shapes = [f"{k}: {tuple(saved[k].shape)} in the checkpoint, {tuple(current[k].shape)} in the model"
              for k in current if k in saved and hasattr(saved[k], "shape") and saved[k].shape != current[k].shape]

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")

    if missing:
        lines.append(f"not in the checkpoint: {few(missing)}")
    if unexpected:
        lines.append(f"not in the model: {few(unexpected)}")
    if shapes:
        lines.append(f"shapes differ: {few(shapes)}")
    return lines
