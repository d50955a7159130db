"""Writing results as JSON: one converter and one atomic writer for the package, the CLI and the benchmarks."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fileio import atomic_write

__all__ = ["to_jsonable", "write_json"]


def to_jsonable(obj: Any) -> Any:
    """``obj`` with JSON types only: non-finite floats -> None, tensors/arrays -> lists, paths -> str.

    JSON has no NaN/inf (``json.dumps`` would write the non-standard ``NaN`` token that strict
    readers reject), so they become null. Mappings get string keys; tuples become lists.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        return to_jsonable(obj.tolist())
    return obj


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, creating parent folders; returns the path.

    Atomic: written to a temporary file in the same folder, then moved over ``path``, so a crash
    never leaves a half-written file; the file follows the umask. Values are converted with
    :func:`to_jsonable`; any other object is written as its ``str``.
    """
    text = json.dumps(to_jsonable(data), indent=2, allow_nan=False, default=str) + "\n"
    return atomic_write(path, lambda f: f.write(text), binary=False)
