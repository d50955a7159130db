"""MultiBench affect datasets (MOSI, MOSEI, UR-FUNNY humor, MUStARD sarcasm) from their pickles.

File format (MultiBench's pre-extracted features): a pickled dict ``{"train": {...}, "valid":
{...}, "test": {...}}``; each split is a dict of arrays ``vision [N, T, dv]``, ``audio [N, T, da]``,
``text [N, T, dt]`` (GloVe: dt = 300), ``labels`` ([N], [N, 1] or [N, 1, 1]: one value per sample)
and optionally ``id``. Sequences are aligned to the words and FRONT-padded with zeros.

Processing (as MultiBench's ``datasets/affect/get_data.py`` with ``aligned=True``):

1. ``-inf`` in audio becomes 0 (MultiBench's rule). Any other NaN / inf in a modality used here
   also becomes 0 (MultiBench leaves them; they would poison every batch they are in). Both are
   counted in ``info``.
2. Rows whose text is all zeros are dropped (MultiBench's ``drop_entry``; "all zeros" is tested
   as no non-zero entry, not as a zero sum).
3. Per sample, the steps before the first step with non-zero text are padding: the valid steps
   are the suffix from that step on, for every modality. MultiBench cuts them off and end-pads
   per batch; here sequences keep their length T and carry a bool mask ``[N, T]`` (True = valid
   step), so batches stay tensors. Padded steps are set to 0 in every modality.
4. Labels for classification:

   * MOSI / MOSEI (sentiment in [-3, 3]): ``zero_label="negative"`` (default) gives
     ``y = 1 if sentiment > 0 else 0``, MultiBench's classification label (``get_class``);
     ``"positive"`` gives ``y = 1 if sentiment >= 0``, the published FactorCL code's
     ``mosi_label``; ``"drop"`` removes samples with sentiment exactly 0 from *every* split,
     train and valid included. That differs from MultiBench, which trains on all rows and only
     excludes them when scoring (binary accuracy ``eval_affect(exclude_zero=True)``): with
     ``"drop"`` the test numbers match that evaluation, but the model (and the linear probe)
     also never trains on zero-sentiment rows.
   * humor (labels 0/1) and sarcasm (labels -1/1 in MultiBench's file): ``y = 1 if label > 0
     else 0``, which covers both encodings.

Pickles can run code when loaded: only load files you trust.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .arrays import check_finite, check_numeric, to_tensor
from .base import SplitDataset, shape_str
from .files import PathLike, check_file, read_pickle
from .pairs import PairDataset

MODALITIES = ("vision", "audio", "text")
AFFECT_SPLITS = ("train", "valid", "test")

#: Dataset name -> label kind ("sentiment": continuous in [-3, 3]; "binary": already two classes).
DATASETS: dict[str, str] = {"mosi": "sentiment", "mosei": "sentiment", "humor": "binary", "sarcasm": "binary"}
ALIASES: dict[str, str] = {
    "mosi": "mosi",
    "cmu-mosi": "mosi",
    "mosei": "mosei",
    "cmu-mosei": "mosei",
    "humor": "humor",
    "ur-funny": "humor",
    "urfunny": "humor",
    "ur_funny": "humor",
    "sarcasm": "sarcasm",
    "mustard": "sarcasm",
}
ZERO_LABEL_RULES = ("negative", "positive", "drop")

#: File names MultiBench distributes, per dataset (the first that exists is used).
FILE_NAMES: dict[str, tuple[str, ...]] = {
    "mosi": ("mosi_raw.pkl", "mosi_data.pkl"),
    "mosei": ("mosei_raw.pkl", "mosei_senti_data.pkl"),
    "humor": ("humor.pkl",),
    "sarcasm": ("sarcasm.pkl",),
}

_CHUNK = 2048  # rows per pass when scanning text for non-zero steps (bounds temporary memory)


def canonical_dataset(name: str) -> str:
    """The canonical affect dataset name (``mosi``, ``mosei``, ``humor``, ``sarcasm``) for a name or alias."""
    key = str(name).strip().lower()
    if key not in ALIASES:
        raise ValueError(f"dataset must be one of {list(DATASETS)} (or ur-funny, mustard), got {name!r}")
    return ALIASES[key]


def infer_dataset(path: PathLike) -> str | None:
    """The affect dataset a file name points to (``mosei_raw.pkl`` -> ``mosei``), or None."""
    stem = Path(path).name.lower()
    for key in ("mosei", "mosi", "humor", "funny", "sarcasm", "mustard"):
        if key in stem:
            return canonical_dataset({"funny": "ur-funny"}.get(key, key))
    return None


def _nonzero_steps(text: np.ndarray) -> np.ndarray:
    """``[N, T]`` bool: whether each step of ``text [N, T, d]`` has a non-zero entry (chunked over rows)."""
    out = np.empty(text.shape[:2], dtype=bool)
    for s in range(0, text.shape[0], _CHUNK):
        np.any(text[s : s + _CHUNK] != 0, axis=2, out=out[s : s + _CHUNK])
    return out


def _float32(a: np.ndarray, owned: bool) -> np.ndarray:
    """float32 C-contiguous array we may write into (copies only when needed)."""
    if owned and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=np.float32, order="C", copy=True)


def _sanitize(a: np.ndarray, audio: bool) -> tuple[int, int]:
    """Replace -inf in audio, then any NaN / inf, by 0 in place; returns (neg_inf_audio, other_nonfinite)."""
    neg = 0
    if audio:
        bad = np.isneginf(a)
        neg = int(bad.sum())
        if neg:
            a[bad] = 0.0
    bad = ~np.isfinite(a)
    other = int(bad.sum())
    if other:
        a[bad] = 0.0
    return neg, other


def _labels(raw: Any, n: int, s: str, src: str) -> np.ndarray:
    lab = np.asarray(raw)
    check_numeric(lab, f"{s}['labels'] in {src}", "numbers (sentiment scores, or 0/1 or -1/1 classes)")
    if lab.ndim == 0 or lab.shape[0] != n:
        rows = "a scalar" if lab.ndim == 0 else f"{lab.shape[0]} rows"
        raise ValueError(f"{s}['labels'] in {src} has {rows} but {s}['text'] has {n}")
    if lab.size != n:
        raise ValueError(
            f"{s}['labels'] in {src} must be [N], [N, 1] or [N, 1, 1] (one value per sample), got shape "
            f"{shape_str(lab.shape)}"
        )
    lab = lab.reshape(n).astype(np.float64)
    check_finite(lab, f"{s}['labels'] in {src}", "every sample needs a label")
    return lab


def _process_split(
    split: Mapping[str, Any], s: str, src: str, kind: str, modalities: tuple[str, str], zero_label: str, owned: bool
) -> tuple[PairDataset, dict[str, Any]]:
    need = list(dict.fromkeys([*modalities, "text", "labels"]))
    for key in need:
        if key not in split:
            has = ", ".join(str(k) for k in split) or "nothing"
            raise ValueError(f"missing key {key!r} in split {s!r} of {src} (has: {has})")
    seqs: dict[str, np.ndarray] = {}
    for key in dict.fromkeys(["text", *modalities]):
        a = split[key]
        if not isinstance(a, np.ndarray):
            a = np.asarray(a)
        if a.ndim != 3:
            raise ValueError(f"{s}[{key!r}] in {src} must be [N, T, d] (3-D), got shape {shape_str(a.shape)}")
        check_numeric(a, f"{s}[{key!r}] in {src}")
        seqs[key] = a
    n, t = seqs["text"].shape[:2]
    for key, a in seqs.items():
        if a.shape[0] != n:
            raise ValueError(f"{s}[{key!r}] in {src} has {a.shape[0]} rows but {s}['text'] has {n}")
        if a.shape[1] != t:
            raise ValueError(
                f"{s}[{key!r}] in {src} has {a.shape[1]} time steps but {s}['text'] has {t}: "
                "aligned modalities must share T"
            )
    labels = _labels(split["labels"], n, s, src)
    info: dict[str, Any] = {"rows": n}

    neg_inf, other = 0, 0
    for key in seqs:
        seqs[key] = _float32(seqs[key], owned)
        a, b = _sanitize(seqs[key], audio=(key == "audio"))
        neg_inf, other = neg_inf + a, other + b
    info["audio_neg_inf_replaced"] = neg_inf
    info["nonfinite_replaced"] = other

    steps = _nonzero_steps(seqs["text"])
    keep = steps.any(axis=1)
    info["dropped_all_zero_text"] = int(n - keep.sum())
    if zero_label == "drop" and kind == "sentiment":
        zero = labels == 0
        info["dropped_zero_label"] = int((keep & zero).sum())
        keep &= ~zero
    if not keep.any():
        raise ValueError(
            f"split {s!r} of {src} is empty after filtering: all {n} rows were dropped "
            f"({info['dropped_all_zero_text']} with all-zero text)"
        )
    x = [seqs[m] for m in modalities]
    if not keep.all():
        steps, labels = steps[keep], labels[keep]
        x = [a[keep] for a in x]  # boolean indexing copies: the originals are released with the dict
    start = steps.argmax(axis=1)  # first step with non-zero text
    mask = np.arange(t)[None, :] >= start[:, None]
    for a in x:
        a[~mask] = 0.0  # padding carries no values (vision/audio can be non-zero before the first word)

    if kind == "sentiment":
        y = (labels >= 0) if zero_label == "positive" else (labels > 0)
    else:
        values = set(np.unique(labels).tolist())
        if not values <= {-1.0, 0.0, 1.0}:
            raise ValueError(
                f"{s}['labels'] in {src} (a binary dataset) must be 0/1 or -1/1, got values {sorted(values)[:6]}"
            )
        y = labels > 0
    info["kept"] = int(len(labels))
    info["zero_labels"] = int((labels == 0).sum()) if kind == "sentiment" else None
    m = to_tensor(mask)
    ds = PairDataset(to_tensor(x[0]), to_tensor(x[1]), torch.from_numpy(y.astype(np.int64)), m, m.clone())
    return ds, info


def load_multibench(
    path: PathLike | Mapping[str, Any],
    dataset: str | None = None,
    modalities: Sequence[str] = ("vision", "text"),
    zero_label: str = "negative",
) -> SplitDataset:
    """A MultiBench affect pickle as a :class:`SplitDataset` of (X1, X2) = ``modalities``.

    ``dataset`` (``mosi``, ``mosei``, ``humor``/``ur-funny``, ``sarcasm``/``mustard``) picks the
    label rule; it is inferred from the file name when omitted. Items are ``{"x1", "x2" [T, d]
    float32, "y" long, "mask1", "mask2" [T] bool}`` (the two masks are equal: the modalities are
    aligned). ``zero_label`` says what sentiment exactly 0 becomes (see the module docstring).
    The default ``("vision", "text")`` follows the published FactorCL notebook (modalities 0, 2).
    """
    if isinstance(path, Mapping):
        data, src, owned = path, "data", False
    else:
        p = check_file(path)
        data = read_pickle(p)
        src, owned = p.name, True
        if dataset is None:
            dataset = infer_dataset(p)
    if dataset is None:
        raise ValueError(f"cannot tell which dataset {src} is from its name: pass dataset= one of {list(DATASETS)}")
    name = canonical_dataset(dataset)
    kind = DATASETS[name]
    modalities = tuple(str(m).lower() for m in modalities)
    if len(modalities) != 2 or any(m not in MODALITIES for m in modalities):
        raise ValueError(f"modalities must be two of {list(MODALITIES)}, got {list(modalities)}")
    if modalities[0] == modalities[1]:
        raise ValueError(f"modalities must be two different modalities, got {list(modalities)}")
    if zero_label not in ZERO_LABEL_RULES:
        raise ValueError(f"zero_label must be one of {list(ZERO_LABEL_RULES)}, got {zero_label!r}")
    if not isinstance(data, Mapping):
        raise ValueError(f"{src} must hold a dict with keys 'train', 'valid', 'test', got {type(data).__name__}")
    parts: dict[str, PairDataset] = {}
    info: dict[str, Any] = {
        "source": str(path) if not isinstance(path, Mapping) else "data",
        "dataset": name,
        "label_rule": _rule_text(kind, zero_label),
    }
    for s in AFFECT_SPLITS:
        if s not in data:
            raise ValueError(f"missing key {s!r} in {src} (has: {', '.join(str(k) for k in data) or 'nothing'})")
        if not isinstance(data[s], Mapping):
            raise ValueError(
                f"{src}[{s!r}] must be a dict of arrays (vision, audio, text, labels), got {type(data[s]).__name__}"
            )
        parts[s], info[s] = _process_split(data[s], s, src, kind, modalities, zero_label, owned)
    shapes = {s: (tuple(ds.fields["x1"].shape[1:]), tuple(ds.fields["x2"].shape[1:])) for s, ds in parts.items()}
    if len({(a[-1], b[-1]) for a, b in shapes.values()}) > 1:
        raise ValueError(f"feature sizes differ between the splits of {src}: {shapes}")
    if len({a[0] for a, _ in shapes.values()}) > 1:
        # Sequences of different lengths across splits: end-pad is wrong for front-padded data,
        # so front-pad the shorter splits to the longest T (mask False there).
        t_max = max(a[0] for a, _ in shapes.values())
        parts = {s: _front_pad(ds, t_max) for s, ds in parts.items()}
    return SplitDataset(
        parts["train"],
        parts["valid"],
        parts["test"],
        name=name,
        modalities=modalities,  # type: ignore[arg-type]
        num_classes=2,
        info=info,
    )


def _front_pad(ds: PairDataset, t: int) -> PairDataset:
    f = ds.fields
    extra = t - f["x1"].shape[1]
    if extra == 0:
        return ds
    pad = lambda a: torch.nn.functional.pad(a, (0, 0, extra, 0))  # noqa: E731
    m = torch.nn.functional.pad(f["mask1"], (extra, 0), value=False)
    return PairDataset(pad(f["x1"]), pad(f["x2"]), f["y"], m, m.clone())


def _rule_text(kind: str, zero_label: str) -> str:
    if kind == "binary":
        return "y = 1 if label > 0 else 0"
    return {
        "negative": "y = 1 if sentiment > 0 else 0",
        "positive": "y = 1 if sentiment >= 0 else 0",
        "drop": "sentiment == 0 dropped; y = 1 if sentiment > 0 else 0",
    }[zero_label]


__all__ = ["DATASETS", "FILE_NAMES", "MODALITIES", "canonical_dataset", "infer_dataset", "load_multibench"]
