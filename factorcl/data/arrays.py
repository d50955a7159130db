"""Paired data from arrays: generic ``.npz`` / ``.pt`` files, and the split helpers every loader uses.

A generic file holds ``x1`` and ``x2`` (same number of rows N), and optionally ``y`` (integer
class labels [N]), ``mask1`` / ``mask2`` (bool [N, T], True = valid step, for sequence inputs
[N, T, d]) and ``split`` ([N] strings ``train`` / ``valid`` (or ``val``) / ``test``). Without
``split`` the rows are split at random with a seed. Each split may instead come from its own file
(``{"train": a.npz, "test": b.npz}``; ``valid`` is then carved out of train when not given).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

# SplitDataset lives in .base; it is also imported from here (factorcl.data.arrays.SplitDataset).
from .base import SPLIT_ALIASES, SPLIT_NAMES, SplitDataset, shape_str
from .files import PathLike, check_file, read_npz, read_torch
from .pairs import PairDataset

ARRAY_KEYS = ("x1", "x2", "y", "mask1", "mask2", "split")


# ------------------------------------------------------------------------------------- helpers
def split_sizes(n: int, fractions: Sequence[float], what: str = "splits") -> tuple[int, int, int]:
    """Row counts (train, valid, test) for ``n`` rows and (train, valid, test) fractions.

    valid and test are ``floor(n * f)`` (so (0.8, 0.1, 0.1) gives MultiBench's ``n // 10`` and
    ``n // 5 - n // 10``); train gets the rest.
    """
    fr = check_fractions(fractions, what)
    n_valid = int(math.floor(n * fr[1] + 1e-9))
    n_test = int(math.floor(n * (fr[1] + fr[2]) + 1e-9)) - n_valid
    return n - n_valid - n_test, n_valid, n_test


def check_fractions(fractions: Sequence[float], what: str = "splits") -> tuple[float, float, float]:
    """Three non-negative (train, valid, test) fractions summing to 1, with a positive train fraction."""
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be three fractions (train, valid, test), got {fractions!r}") from None
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6 or fr[0] <= 0:
        raise ValueError(
            f"{what} must be three non-negative fractions (train, valid, test) summing to 1 "
            f"with train > 0, got {list(fractions)}"
        )
    return fr  # type: ignore[return-value]


def shuffled_split(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Row indices of a seeded random split: ``{"train", "valid", "test"}``.

    The permutation is Python's ``random.Random(seed).shuffle`` of ``range(n)`` and the order of
    the parts is valid, test, train: with seed 10 and fractions (0.8, 0.1, 0.1) this is exactly
    the partition of MultiBench's MIMIC loader (``random.seed(10); random.shuffle(data)``).
    """
    n_train, n_valid, n_test = split_sizes(n, fractions)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    idx = np.asarray(order, dtype=np.int64)
    return {"valid": idx[:n_valid], "test": idx[n_valid : n_valid + n_test], "train": idx[n_valid + n_test :]}


def to_tensor(a: Any, dtype: torch.dtype | None = None) -> Tensor:
    """A tensor sharing memory with a NumPy array where possible (no copy for contiguous arrays)."""
    if isinstance(a, Tensor):
        return a if dtype is None else a.to(dtype)
    arr = np.ascontiguousarray(a)
    if not arr.flags.writeable:  # torch.from_numpy warns on read-only arrays (e.g. memory maps)
        arr = arr.copy()
    t = torch.from_numpy(arr)
    return t if dtype is None else t.to(dtype)


def _preview(values: np.ndarray, k: int = 3) -> str:
    """``('cat', 'dog', ...)``: the first distinct values of an array, for a message."""
    flat = values.ravel()
    first = list(dict.fromkeys(flat[:1000].tolist()))[:k]
    more = ", ..." if len(set(flat.tolist())) > len(first) else ""
    return "(" + ", ".join(repr(v) for v in first) + more + ")"


def check_numeric(a: np.ndarray, what: str, expected: str = "numbers") -> None:
    """ValueError unless ``a`` holds numbers (bool, int or float); strings are quoted in the message.

    ``what`` names the array and its file (``"y in pairs.npz"``), ``expected`` what it should hold.
    """
    kind = a.dtype.kind
    if kind in "biuf":
        return
    strings = kind in "US" or (
        kind == "O" and a.size > 0 and all(isinstance(v, (str, bytes)) for v in a.ravel()[:1000].tolist())
    )
    if strings:
        raise ValueError(f"{what} holds strings {_preview(a)}; expected {expected}")
    raise ValueError(f"{what} must hold {expected}, got dtype {a.dtype}")


def check_finite(
    a: Tensor | np.ndarray, what: str, fix: str = "clean NaN or inf values (e.g. np.nan_to_num) or drop those rows"
) -> None:
    """ValueError naming the first rows of ``a`` ([N, ...]) that hold NaN or inf.

    E.g. ``x1 in pairs.npz contains NaN at rows [3, 17]; ...``: ``what`` names the array and its
    file, ``fix`` says what to do.
    """
    t = a if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return
    bad_rows = ~finite.reshape(t.shape[0], -1).all(dim=1) if t.dim() else ~finite.reshape(1)
    rows = bad_rows.nonzero().flatten()
    nan, inf = bool(torch.isnan(t).any()), bool(torch.isinf(t).any())
    kind = "NaN and inf" if nan and inf else "NaN" if nan else "inf"
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    raise ValueError(f"{what} contains {kind} at rows {rows[:5].tolist()}{more}; {fix}")


def labels_to_long(y: Any, where: str) -> Tensor:
    """Integer class labels ``[N]`` (long) from ``[N]`` or ``[N, 1]`` integer-valued numbers.

    ``where`` names the labels and their file (``"y in pairs.npz"``).
    """
    expected = "integer class ids 0..K-1 (map class names to integers)"
    if not isinstance(y, Tensor):
        y = np.asarray(y)
        check_numeric(y, where, expected)
    t = y if isinstance(y, Tensor) else torch.as_tensor(y)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t.reshape(-1)
    if t.dim() != 1:
        raise ValueError(f"{where} must be [N] class labels, got shape {shape_str(t.shape)}")
    if t.dtype == torch.bool:
        return t.long()
    if t.is_floating_point():
        check_finite(t, where, f"expected {expected}")
        if not bool((t == t.round()).all()):
            raise ValueError(f"{where} must hold integer class labels (0, 1, ...), got non-integer values")
        t = t.long()
    elif t.is_complex() or not t.dtype.is_signed and t.dtype != torch.uint8:
        raise ValueError(f"{where} must hold integer class labels, got dtype {t.dtype}")
    t = t.long()
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{where} must hold class labels >= 0, got min {int(t.min())}")
    return t


def _check_x(x: Any, name: str, where: str) -> Tensor:
    if not isinstance(x, Tensor):
        x = np.asarray(x)
        check_numeric(x, f"{name} in {where}")
    t = to_tensor(x)
    if t.dim() < 2:
        raise ValueError(f"{name} in {where} must be [N, d], [N, T, d] or [N, C, H, W], got shape {shape_str(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    elif t.dtype != torch.float32:
        t = t.float()
    return t


def _check_mask(mask: Any, x: Tensor, name: str, xname: str, where: str) -> Tensor:
    t = to_tensor(mask)
    if x.dim() != 3:
        raise ValueError(
            f"{name} in {where} is only valid for sequences [N, T, d], but {xname} has shape {shape_str(x.shape)}"
        )
    want = tuple(x.shape[:2])
    if tuple(t.shape) != want:
        raise ValueError(
            f"{name} in {where} must be [N, T] = {shape_str(want)} (True = valid step), got shape {shape_str(t.shape)}"
        )
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name} in {where} must be bool or 0/1 (True = valid step)")
        t = t.bool()
    return t


def _read_arrays(path: Path) -> dict[str, Any]:
    """The arrays of a ``.npz`` (no pickles) or ``.pt`` (a dict of tensors / arrays) file."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path)
    if suffix in (".pt", ".pth"):
        obj = read_torch(path)
        if not isinstance(obj, Mapping):
            raise ValueError(
                f"{path} must hold a dict with keys x1, x2 (optional y, mask1, mask2, split), got {type(obj).__name__}"
            )
        return dict(obj)
    raise ValueError(f"unsupported file type {path.suffix!r} for {path}: use .npz or .pt")


def _split_labels(split: Any, n: int, where: str) -> np.ndarray:
    values = np.asarray(split.tolist() if isinstance(split, Tensor) else split)
    if values.shape != (n,):
        raise ValueError(
            f"split in {where} must be [N] = ({n},) strings train/valid/test, got shape {shape_str(values.shape)}"
        )
    names = np.array([SPLIT_ALIASES.get(str(v).strip().lower(), "?") for v in values.tolist()])
    bad = sorted({str(v) for v, m in zip(values.tolist(), names.tolist()) if m == "?"})
    if bad:
        raise ValueError(f"split in {where} must hold 'train', 'valid' (or 'val') or 'test', got {bad[:5]}")
    return names


def pair_fields(arrays: Mapping[str, Any], where: str) -> dict[str, Tensor]:
    """Validated tensors ``x1, x2`` (float32) and optional ``y`` (long), ``mask1``, ``mask2`` (bool)."""
    for key in ("x1", "x2"):
        if key not in arrays:
            raise ValueError(f"missing key {key!r} in {where} (has: {', '.join(sorted(arrays)) or 'nothing'})")
    fields: dict[str, Tensor] = {}
    fields["x1"] = _check_x(arrays["x1"], "x1", where)
    fields["x2"] = _check_x(arrays["x2"], "x2", where)
    n = fields["x1"].shape[0]
    if fields["x2"].shape[0] != n:
        raise ValueError(f"x2 has {fields['x2'].shape[0]} rows but x1 has {n} in {where}")
    if arrays.get("y") is not None:
        y = labels_to_long(arrays["y"], f"y in {where}")
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} rows but x1 has {n} in {where}")
        fields["y"] = y
    for i in (1, 2):
        key = f"mask{i}"
        if arrays.get(key) is not None:
            fields[key] = _check_mask(arrays[key], fields[f"x{i}"], key, f"x{i}", where)
    for key in ("x1", "x2"):
        check_finite(fields[key], f"{key} in {where}")
    return fields


def _subset(fields: Mapping[str, Tensor], idx: Any) -> PairDataset | None:
    idx = torch.as_tensor(idx, dtype=torch.long)
    if idx.numel() == 0:
        return None
    return PairDataset(**{k: v.index_select(0, idx) for k, v in fields.items()})


def _num_classes(*datasets: PairDataset | None) -> int | None:
    ys = [ds.fields["y"] for ds in datasets if ds is not None and "y" in ds.fields]
    if not ys or len(ys) != sum(ds is not None for ds in datasets):
        return None
    return int(max(int(y.max()) for y in ys)) + 1


def load_arrays(
    path: PathLike | Mapping[str, PathLike],
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    name: str | None = None,
) -> SplitDataset:
    """Paired data from a ``.npz`` / ``.pt`` file (or one file per split) as a :class:`SplitDataset`.

    ``splits`` (train, valid, test fractions) and ``seed`` are used only when the data carries no
    ``split`` key: rows are then split at random (see :func:`shuffled_split`). With one file per
    split (``{"train": ..., "valid": ..., "test": ...}``), a missing ``valid`` is carved out of
    train with the valid fraction of ``splits``.
    """
    if isinstance(path, Mapping):
        return _load_split_files(path, splits, seed, name)
    p = check_file(path)
    arrays = _read_arrays(p)
    unknown = sorted(set(arrays) - set(ARRAY_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {p.name}: expected x1, x2 and optional y, mask1, mask2, split")
    fields = pair_fields(arrays, p.name)
    n = fields["x1"].shape[0]
    if n == 0:
        raise ValueError(f"{p.name} is empty (x1 has 0 rows)")
    if arrays.get("split") is not None:
        names = _split_labels(arrays["split"], n, p.name)
        index = {s: np.flatnonzero(names == s) for s in SPLIT_NAMES}
        how = "given"
    else:
        index = shuffled_split(n, splits, seed)
        how = f"random (fractions {list(check_fractions(splits))}, seed {seed})"
    parts = {s: _subset(fields, index[s]) for s in SPLIT_NAMES}
    for s in ("train", "test"):
        if parts[s] is None:
            raise ValueError(f"split {s!r} of {p.name} is empty ({n} rows, split {how}): give it rows")
    return SplitDataset(
        parts["train"],
        parts["valid"],
        parts["test"],
        name=name or p.stem,
        num_classes=_num_classes(*parts.values()),
        info={"source": str(p), "split": how},
    )


def _load_split_files(
    paths: Mapping[str, PathLike], splits: Sequence[float], seed: int, name: str | None
) -> SplitDataset:
    keys = {}
    for k, v in paths.items():
        key = SPLIT_ALIASES.get(str(k).lower())
        if key is None:
            raise ValueError(f"split files must be keyed by train, valid (or val) and test, got {k!r}")
        keys[key] = v
    for need in ("train", "test"):
        if need not in keys:
            raise ValueError(f"split files need a {need!r} file (got: {', '.join(sorted(keys))})")
    parts: dict[str, PairDataset | None] = {}
    for s, v in keys.items():
        p = check_file(v)
        arrays = _read_arrays(p)
        fields = pair_fields({k: a for k, a in arrays.items() if k != "split"}, p.name)
        if fields["x1"].shape[0] == 0:
            raise ValueError(f"{p.name} ({s} split) is empty (x1 has 0 rows)")
        parts[s] = PairDataset(**fields)
    if "valid" not in parts:
        train = parts["train"].fields
        valid_fraction = check_fractions(splits)[1]
        # The valid fraction of the train file's rows, as a seeded split with no test part.
        index = shuffled_split(train["x1"].shape[0], (1.0 - valid_fraction, valid_fraction, 0.0), seed)
        parts["valid"] = _subset(train, index["valid"])
        parts["train"] = _subset(train, index["train"])
        if parts["train"] is None:
            raise ValueError("no rows left in train after holding out the valid split: lower the valid fraction")
    shapes = {
        s: tuple(ds.fields["x1"].shape[1:]) + tuple(ds.fields["x2"].shape[1:])
        for s, ds in parts.items()
        if ds is not None
    }
    if len(set(shapes.values())) > 1:
        raise ValueError(f"every split file must have the same per-sample shapes of x1 and x2, got {shapes}")
    first = Path(keys["train"])
    return SplitDataset(
        parts["train"],
        parts.get("valid"),
        parts["test"],
        name=name or first.stem,
        num_classes=_num_classes(parts["train"], parts.get("valid"), parts["test"]),
        info={"source": {s: str(Path(v)) for s, v in keys.items()}, "split": "files"},
    )


__all__ = ["SplitDataset", "load_arrays", "shuffled_split", "split_sizes", "check_fractions"]
