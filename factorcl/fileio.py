"""Atomic file writes with one permission policy: every file the package writes follows the user's umask.

``tempfile.mkstemp`` creates files with mode 0600 whatever the umask, so files renamed into place
from it (checkpoints, results, exports) came out 0600 while those opened normally (config.yaml,
metrics.csv) came out 0644. :func:`atomic_write` gives every file the mode that ``open()`` would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

#: errno values that mean "the disk (or the quota) is full".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """Writing a file failed because its disk or quota is full; the message names the path and the space."""

    def __init__(self, message: str, code: int = errno.ENOSPC) -> None:
        super().__init__(message)  # one argument: str() is the message alone, without "[Errno 28]"
        self.errno = code


def file_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask (0644 under umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free space on the file system that holds ``path`` (or its nearest existing parent); None if unknown."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def disk_full_message(path: str | os.PathLike, needed: int | None = None) -> str:
    """``no space left ... writing PATH (needs about N MiB, M MiB free on ...)``."""
    path = Path(path)
    parts = []
    if needed is not None:
        parts.append(f"needs about {_mb(needed)}")
    free = free_bytes(path.parent)
    if free is not None:
        parts.append(f"{_mb(free)} free in {path.parent}")
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"no space left on the disk (or quota) while writing {path}{detail}"


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[Any]], None], *, binary: bool = True, needed: int | None = None
) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, flushed, then renamed over it.

    A crash (or a full disk) never leaves a half-written ``path``: the old file stays until the new
    one is complete. The file gets the umask's mode (:func:`file_mode`). A full disk raises
    :class:`DiskFullError` naming the path, the space ``needed`` (when given) and the free space.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        full = _disk_full(exc)
        if full is not None:
            raise DiskFullError(disk_full_message(path, needed), full.errno) from exc
        raise
    return path


def _disk_full(exc: BaseException) -> OSError | None:
    """The disk-full OSError in ``exc`` or its causes (torch wraps write errors in RuntimeError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc
        if isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("No space left", "Disk quota exceeded")):
            return OSError(errno.ENOSPC, str(exc))
        exc = exc.__cause__ or exc.__context__
    return None


__all__ = ["DiskFullError", "atomic_write", "disk_full_message", "file_mode", "free_bytes"]
