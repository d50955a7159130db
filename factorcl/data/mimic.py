"""MIMIC-III as packaged by MultiBench (``im.pk``): static patient features and ICU time series.

File format: a pickled dict with

* ``ep_tdata`` ``[N, 24, 12]``: hourly measurements over the first 24 hours (any ``[N, T, d]``);
* ``adm_features_all`` ``[N, 5]``: static admission features (any ``[N, d]``);
* ``adm_labels_all`` ``[N, >=6]``: mortality indicators, used by the mortality tasks;
* ``y_icd9`` ``[N, 20]``: 0/1 membership of 20 ICD-9 code groups, used by the ICD-9 tasks.

Processing (MultiBench's ``datasets/mimic/get_data.py``, with one deliberate change):

* NaN and inf become 0 in both modalities.
* Rows are split with Python's ``random.Random(seed).shuffle``, valid first, then test, then
  train: ``seed=10`` and fractions (0.8, 0.1, 0.1) reproduce MultiBench's partition exactly.
* z-scoring per feature (static: over samples; time series: over samples and time steps) uses
  statistics of the TRAIN split only. MultiBench computes them over all rows before splitting,
  which leaks test statistics into training; the difference is small but this is the clean way.
  Constant features (std 0) are only centred.
* Tasks: ``"mortality"`` (MultiBench's task -1): 6 classes, class ``k`` in 1..5 for the first of
  columns 1..5 of ``adm_labels_all`` that is positive, else 0. ``"mortality-binary"``: 1 when any
  of those columns is positive (a simplification; not a MultiBench task). ``"icd9-k"`` or the
  integer ``k`` in 0..19: binary, ``y_icd9[:, k]``.

X1 is the static vector ``[5]`` and X2 the time series ``[24, 12]`` (``modalities`` swaps them);
the series has no padding, so no masks are attached.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .arrays import check_fractions, check_numeric, shuffled_split, to_tensor
from .base import SplitDataset, shape_str
from .files import PathLike, check_file, read_pickle
from .pairs import PairDataset

FILE_NAME = "im.pk"  # the name MultiBench ships the file under
MIMIC_MODALITIES = ("static", "timeseries")
MORTALITY_CLASSES = 6
ICD9_GROUPS = 20


def parse_task(task: str | int) -> tuple[str, int | None]:
    """``("mortality", None)``, ``("mortality-binary", None)`` or ``("icd9", k)`` for a name or MultiBench number."""
    if isinstance(task, bool):
        raise ValueError(f"task must be 'mortality', 'mortality-binary', 'icd9-K' or an integer -1..19, got {task!r}")
    if isinstance(task, (int, np.integer)):
        k = int(task)
        if k == -1:
            return "mortality", None
        if 0 <= k < ICD9_GROUPS:
            return "icd9", k
        raise ValueError(f"task must be -1 (mortality) or an ICD-9 group 0..{ICD9_GROUPS - 1}, got {k}")
    key = str(task).strip().lower().replace("_", "-")
    if key in ("mortality", "-1"):
        return "mortality", None
    if key in ("mortality-binary", "mortality2", "binary-mortality"):
        return "mortality-binary", None
    m = re.fullmatch(r"(?:icd9[-:]?)?(\d+)", key)
    if m and 0 <= int(m.group(1)) < ICD9_GROUPS:
        return "icd9", int(m.group(1))
    raise ValueError(
        f"task must be 'mortality', 'mortality-binary', 'icd9-K' (K in 0..{ICD9_GROUPS - 1}) or an "
        f"integer -1..{ICD9_GROUPS - 1}, got {task!r}"
    )


def _array(data: Mapping[str, Any], key: str, ndim: int, layout: str, src: str) -> np.ndarray:
    if key not in data:
        raise ValueError(f"missing key {key!r} in {src} (has: {', '.join(str(k) for k in data) or 'nothing'})")
    a = np.asarray(data[key])
    if a.ndim != ndim:
        raise ValueError(f"{key!r} in {src} must be {layout} ({ndim}-D), got shape {shape_str(a.shape)}")
    check_numeric(a, f"{key!r} in {src}")
    return a


def _clean(a: np.ndarray) -> np.ndarray:
    """float32 copy with NaN / inf set to 0 (MultiBench's rule)."""
    out = np.array(a, dtype=np.float32, copy=True)
    out[~np.isfinite(out)] = 0.0
    return out


def mimic_labels(data: Mapping[str, Any], task: str | int, n: int, src: str = "im.pk") -> tuple[np.ndarray, int]:
    """Class labels ``[N]`` and the number of classes for a task (see the module docstring)."""
    kind, k = parse_task(task)
    if kind == "icd9":
        icd = _array(data, "y_icd9", 2, "[N, 20]", src)
        if icd.shape[0] != n:
            raise ValueError(f"'y_icd9' has {icd.shape[0]} rows but 'ep_tdata' has {n} in {src}")
        if icd.shape[1] <= k:
            raise ValueError(
                f"'y_icd9' in {src} must be [N, 20] (one column per ICD-9 group), got shape "
                f"{shape_str(icd.shape)}: no column {k}"
            )
        col = np.nan_to_num(icd[:, k].astype(np.float64))
        return (col > 0).astype(np.int64), 2
    adm = _array(data, "adm_labels_all", 2, "[N, >=6]", src)
    if adm.shape[0] != n:
        raise ValueError(f"'adm_labels_all' has {adm.shape[0]} rows but 'ep_tdata' has {n} in {src}")
    if adm.shape[1] < MORTALITY_CLASSES:
        raise ValueError(
            f"'adm_labels_all' in {src} must be [N, >=6] (mortality columns 1..5), got shape {shape_str(adm.shape)}"
        )
    pos = np.nan_to_num(adm[:, 1:MORTALITY_CLASSES].astype(np.float64)) > 0
    # The first positive column 1..5 is the class (MultiBench's if/elif chain), else 0.
    cls = np.where(pos.any(axis=1), pos.argmax(axis=1) + 1, 0).astype(np.int64)
    if kind == "mortality-binary":
        return (cls > 0).astype(np.int64), 2
    return cls, MORTALITY_CLASSES


def load_mimic(
    path: PathLike | Mapping[str, Any],
    task: str | int = "mortality",
    modalities: Sequence[str] = ("static", "timeseries"),
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 10,
) -> SplitDataset:
    """MultiBench's MIMIC ``im.pk`` as a :class:`SplitDataset` (see the module docstring for the processing).

    ``splits`` are (train, valid, test) fractions; the defaults with ``seed=10`` give MultiBench's
    own partition.
    """
    if isinstance(path, Mapping):
        data, src = path, "data"
    else:
        p = check_file(path)
        data = read_pickle(p)
        src = p.name
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{src} must hold a dict with keys ep_tdata, adm_features_all, adm_labels_all, y_icd9, "
            f"got {type(data).__name__}"
        )
    modalities = tuple(str(m).lower() for m in modalities)
    if sorted(modalities) != sorted(MIMIC_MODALITIES):
        raise ValueError(f"modalities must be {list(MIMIC_MODALITIES)} in either order, got {list(modalities)}")
    fractions = check_fractions(splits)
    ts = _array(data, "ep_tdata", 3, "[N, 24, 12]", src)
    st = _array(data, "adm_features_all", 2, "[N, 5]", src)
    n = ts.shape[0]
    if st.shape[0] != n:
        raise ValueError(f"'adm_features_all' has {st.shape[0]} rows but 'ep_tdata' has {n} in {src}")
    if n == 0:
        raise ValueError(f"{src} is empty ('ep_tdata' has 0 rows)")
    y, num_classes = mimic_labels(data, task, n, src)
    ts, st = _clean(ts), _clean(st)

    index = shuffled_split(n, fractions, seed)
    for s in ("train", "test"):
        if len(index[s]) == 0:
            raise ValueError(f"split {s!r} of {src} is empty ({n} rows, fractions {list(fractions)}): give it rows")
    tr = index["train"]
    # Train-split statistics only (MultiBench uses all rows: test statistics leak into training).
    st_mean, st_std = st[tr].mean(axis=0), st[tr].std(axis=0)
    ts_mean, ts_std = ts[tr].mean(axis=(0, 1)), ts[tr].std(axis=(0, 1))
    st_std[st_std == 0] = 1.0
    ts_std[ts_std == 0] = 1.0
    st -= st_mean
    st /= st_std
    ts -= ts_mean
    ts /= ts_std

    arrays = {"static": st, "timeseries": ts}
    x1, x2 = (to_tensor(arrays[m]) for m in modalities)
    yt = torch.from_numpy(y)
    parts: dict[str, PairDataset | None] = {}
    for s, idx in index.items():
        i = torch.from_numpy(idx)
        parts[s] = (
            PairDataset(x1.index_select(0, i), x2.index_select(0, i), yt.index_select(0, i)) if len(idx) else None
        )
    kind, k = parse_task(task)
    info = {
        "source": str(path) if not isinstance(path, Mapping) else "data",
        "task": kind if k is None else f"icd9-{k}",
        "split_seed": seed,
        "splits": list(fractions),
        "zscore": "train split statistics",
    }
    return SplitDataset(
        parts["train"],
        parts["valid"],
        parts["test"],
        name="mimic",
        modalities=modalities,  # type: ignore[arg-type]
        num_classes=num_classes,
        info=info,
    )


__all__ = ["FILE_NAME", "MIMIC_MODALITIES", "load_mimic", "mimic_labels", "parse_task"]
