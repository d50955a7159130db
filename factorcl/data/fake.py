"""Small generated files in exactly the formats of the real data, for tests and ``--quick`` runs.

Every writer makes data with a learnable label (a shared latent drives both modalities and the
label) and the quirks the loaders must handle: front padding of variable length, rows whose text
is all zeros, ``-inf`` in audio, sentiment labels exactly 0, NaN in MIMIC. Nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .multibench import DATASETS, FILE_NAMES, canonical_dataset

#: Feature sizes of the real files (MOSI/MOSEI: FACET/COVAREP/GloVe; humor/sarcasm: OpenFace/COVAREP/GloVe).
REAL_DIMS = {"mosi": (35, 74, 300), "mosei": (35, 74, 300), "humor": (371, 81, 300), "sarcasm": (371, 81, 300)}


def _affect_split(
    rng: np.random.Generator,
    n: int,
    t: int,
    directions: dict[str, np.ndarray],
    kind: str,
    binary_values: tuple[int, int],
) -> dict[str, np.ndarray]:
    latent = rng.standard_normal(n)
    lengths = rng.integers(max(1, t // 3), t + 1, size=n)
    valid = np.arange(t)[None, :] >= (t - lengths)[:, None]  # front padding: valid steps are a suffix
    out = {}
    for key, direction in directions.items():
        d = direction.shape[0]
        x = 0.5 * rng.standard_normal((n, t, d)) + latent[:, None, None] * direction[None, None, :]
        out[key] = np.where(valid[:, :, None], x, 0.0).astype(np.float32)
    # Vision/audio sometimes carry values before the first word (MultiBench's files do): the loader
    # must treat those steps as padding because the text is zero there.
    out["vision"][:, 0, :] += np.where(valid[:, 0], 0.0, 1.0)[:, None].astype(np.float32)
    # -inf in audio (COVAREP's log features), at valid steps.
    rows = rng.choice(n, size=max(1, n // 5), replace=False)
    out["audio"][rows, t - 1, 0] = -np.inf
    # One row with all-zero text: dropped by the loader.
    out["text"][n - 1] = 0.0
    score = latent + 0.3 * rng.standard_normal(n)
    if kind == "sentiment":
        labels = np.clip(np.round(score * 1.5, 1), -3.0, 3.0)
        labels[: max(1, n // 10)] = 0.0  # exact zeros: their class depends on zero_label
        labels = labels.reshape(n, 1, 1).astype(np.float32)
    else:
        lo, hi = binary_values
        labels = np.where(score > 0, hi, lo).reshape(n, 1).astype(np.float32)
    out["labels"] = labels
    out["id"] = np.array([f"video{i}" for i in range(n)])
    return out


def write_fake_affect(
    path: str | os.PathLike,
    dataset: str = "mosi",
    sizes: tuple[int, int, int] = (48, 16, 16),
    seq_len: int = 8,
    dims: tuple[int, int, int] | None = (6, 5, 7),
    seed: int = 0,
) -> Path:
    """Write a MultiBench affect pickle ``{"train", "valid", "test"}``, each split with ``vision``,
    ``audio``, ``text``, ``labels`` and ``id``.

    ``sizes`` are rows per split (each includes one all-zero-text row), ``dims`` the (vision,
    audio, text) feature sizes (None: the real ones, e.g. 35/74/300 for MOSI). Labels are
    sentiment scores ``[N, 1, 1]`` in [-3, 3] (some exactly 0) for MOSI/MOSEI, ``[N, 1]`` 0/1 for
    humor and -1/1 for sarcasm.
    """
    name = canonical_dataset(dataset)
    kind = DATASETS[name]
    dims = dims or REAL_DIMS[name]
    rng = np.random.default_rng(seed)
    binary = (-1, 1) if name == "sarcasm" else (0, 1)
    # One direction per modality for the whole file: the latent means the same in every split.
    directions = {key: rng.standard_normal(d) for key, d in zip(("vision", "audio", "text"), dims)}
    data = {
        s: _affect_split(rng, n, seq_len, directions, kind, binary) for s, n in zip(("train", "valid", "test"), sizes)
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=4)
    return path


def write_fake_mimic(
    path: str | os.PathLike, n: int = 120, seq_len: int = 24, ts_dim: int = 12, static_dim: int = 5, seed: int = 0
) -> Path:
    """Write a MultiBench MIMIC ``im.pk``: ``ep_tdata [n, 24, 12]``, ``adm_features_all [n, 5]``,
    ``adm_labels_all [n, 6]``, ``y_icd9 [n, 20]`` (float64 with a few NaN / inf, as in the real file)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal(n)
    static = 3.0 + 2.0 * rng.standard_normal((n, static_dim)) + latent[:, None] * rng.standard_normal(static_dim)
    ts = 10.0 + rng.standard_normal((n, seq_len, ts_dim)) + 2.0 * latent[:, None, None] * rng.standard_normal(ts_dim)
    ts[0, 0, 0], ts[1, 2, 3], static[2, 1] = np.nan, np.inf, np.nan
    adm = np.zeros((n, 6))
    death = latent + 0.3 * rng.standard_normal(n) > 0.6
    horizon = rng.integers(1, 6, size=n)
    adm[np.flatnonzero(death), horizon[death]] = 1.0
    # Later columns can also be set; the class is the first positive one.
    adm[np.flatnonzero(death), 5] = 1.0
    icd = (latent[:, None] + rng.standard_normal((n, 20)) > 0.5).astype(np.float64)
    data = {"ep_tdata": ts, "adm_features_all": static, "adm_labels_all": adm, "y_icd9": icd}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=4)
    return path


def write_fake_pairs(
    path: str | os.PathLike,
    n: int = 80,
    shape1: tuple[int, ...] = (6,),
    shape2: tuple[int, ...] = (5, 4),
    labels: bool = True,
    masks: bool = True,
    split: bool = False,
    seed: int = 0,
) -> Path:
    """Write a generic ``.npz`` or ``.pt`` pair file with ``x1``, ``x2`` and optional ``y``, ``mask2``, ``split``."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal(n)
    arrays: dict[str, np.ndarray] = {}
    for key, shape in (("x1", shape1), ("x2", shape2)):
        arrays[key] = (rng.standard_normal((n, *shape)) + latent.reshape(n, *([1] * len(shape)))).astype(np.float32)
    if masks and len(shape2) == 2:
        t = shape2[0]
        lengths = rng.integers(1, t + 1, size=n)
        arrays["mask2"] = np.arange(t)[None, :] < lengths[:, None]  # end padding: valid steps first
        arrays["x2"][~arrays["mask2"]] = 0.0
    if labels:
        arrays["y"] = (latent > 0).astype(np.int64)
    if split:
        arrays["split"] = np.array(["train"] * (n - 2 * (n // 5)) + ["valid"] * (n // 5) + ["test"] * (n // 5))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        torch.save({k: (torch.from_numpy(v) if v.dtype.kind != "U" else v.tolist()) for k, v in arrays.items()}, path)
    return path


def write_fake_multibench_folder(
    folder: str | os.PathLike, seed: int = 0, sizes: tuple[int, int, int] = (48, 16, 16), mimic_rows: int = 120
) -> dict[str, Path]:
    """Write every Table 4.2 dataset under its MultiBench file name into ``folder``; returns {dataset: path}."""
    folder = Path(folder)
    out = {"mimic": write_fake_mimic(folder / "im.pk", n=mimic_rows, seed=seed)}
    for i, name in enumerate(("mosei", "mosi", "humor", "sarcasm")):
        out[name] = write_fake_affect(folder / FILE_NAMES[name][0], name, sizes=sizes, seed=seed + 1 + i)
    return out


__all__ = ["write_fake_affect", "write_fake_mimic", "write_fake_multibench_folder", "write_fake_pairs"]
