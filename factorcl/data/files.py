"""Reading data files, with errors that name the file and say what is wrong with it.

Every loader reads its files through these helpers, so a missing file, a truncated or corrupt
``.npz`` / ``.pt`` / pickle and text that is not UTF-8 each give one message a user can act on
(``could not read pairs.npz: not a valid .npz file (truncated or corrupt?) ...``) instead of the
parser's own traceback. The errors are :class:`FileNotFoundError` (no such file) and
:class:`ValueError` (a file that cannot be read), the two that ``factorcl`` commands print as an
``error:`` line. Permission and other operating-system errors pass through unchanged.
"""

from __future__ import annotations

import codecs
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["check_file", "read_npz", "read_pickle", "read_torch", "read_utf8", "unreadable"]

PathLike = str | os.PathLike

# Errors of the file system itself: reported as they are, never as "corrupt file".
_IO_ERRORS = (PermissionError, FileNotFoundError, IsADirectoryError)
_REASON_CHARS = 160


def check_file(path: PathLike) -> Path:
    """The path as a Path; FileNotFoundError naming it when it is not a file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"data file not found: {p}")
    return p


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, shortened, after its type."""
    text = str(exc).strip().split("\n", 1)[0].split(". ", 1)[0]  # the first sentence
    if len(text) > _REASON_CHARS:
        text = text[: _REASON_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unreadable(path: PathLike, kind: str, exc: BaseException | str | None = None) -> ValueError:
    """``could not read PATH: not a valid KIND file (truncated or corrupt?)``, plus the parser's reason."""
    reason = "" if exc is None else f"; {exc if isinstance(exc, str) else _reason(exc)}"
    return ValueError(f"could not read {path}: not a valid {kind} file (truncated or corrupt?){reason}")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file, loaded without pickle (object arrays are refused, naming the key)."""
    with path.open("rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(
            f"{path} holds a single .npy array, not named arrays: save it with np.savez(path, x1=..., x2=...)"
        )
    if not magic.startswith(b"PK"):  # every zip archive (and so every .npz) starts with "PK"
        raise unreadable(path, ".npz", "it is not a zip archive" if magic else "the file is empty")
    try:
        archive = np.load(path, allow_pickle=False)
    except _IO_ERRORS:
        raise
    except Exception as exc:  # zipfile, zlib and numpy format errors alike: the file is damaged
        raise unreadable(path, ".npz", exc) from exc
    out: dict[str, np.ndarray] = {}
    with archive:
        for key in archive.files:
            try:
                out[key] = archive[key]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise unreadable(path, ".npz", f"array {key!r}: {_reason(exc)}") from exc
                raise ValueError(
                    f"array {key!r} in {path} holds Python objects (loading it would need pickle): "
                    "store strings as fixed-width unicode (np.array(values, dtype=str))"
                ) from None
            except _IO_ERRORS:
                raise
            except Exception as exc:
                raise unreadable(path, ".npz", f"array {key!r}: {_reason(exc)}") from exc
    return out


def read_torch(path: Path) -> Any:
    """What a ``.pt`` file holds, loaded with ``weights_only=True`` (tensors, arrays, numbers, strings, containers)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except _IO_ERRORS:
        raise
    except pickle.UnpicklingError as exc:
        # torch words every failure of its restricted unpickler as "Weights only load failed ...":
        # its "WeightsUnpickler error:" line says whether the file is damaged or holds other objects.
        text = str(exc)
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().split("\n", 1)[0]
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            raise ValueError(
                f"could not read {path}: it holds Python objects ({found.group(1)}) other than tensors, "
                "arrays, numbers and strings, which are not loaded; save a dict of tensors or "
                "arrays"
            ) from None
        raise unreadable(path, ".pt", f"UnpicklingError: {detail[:_REASON_CHARS]}") from exc
    except Exception as exc:  # zip, pickle and storage errors alike: the file is damaged
        raise unreadable(path, ".pt", exc) from exc


def read_pickle(path: Path) -> Any:
    """What a pickle file holds (pickles can run code: only load files you trust)."""
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except _IO_ERRORS:
        raise
    except ImportError as exc:
        raise ValueError(
            f"could not read {path}: unpickling it needs the module {exc.name!r}, which is not installed"
        ) from exc
    except Exception as exc:  # truncated or not a pickle: pickle raises many types
        raise unreadable(path, "pickle", exc) from exc


def read_utf8(path: Path) -> str:
    """A text file's content as UTF-8 (a leading byte-order mark is dropped); ValueError naming the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise ValueError(
            f"{path} is not UTF-8 (byte 0x{data[offset]:02x} at offset {offset}, line {line}); re-save it as UTF-8"
        ) from None
