"""The held-out split of a CLIP run: made once when training, recorded in the export, re-used by the probe.

A linear probe of a trained model is only meaningful on rows the model did not train on (and, for
supervised methods, whose labels it did not see). :func:`pretrain_clip` records how it split the
data (``seed``, ``test_fraction``, ``skip_missing``), a SHA-256 of the data file and one of the
held-out rows; ``factorcl clip probe --export`` re-makes that split when it probes the same file and
refuses settings that would make another one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .data import ImageCaptionDataset, train_test_split

__all__ = [
    "SPLIT_DEFAULTS",
    "check_same_held_out",
    "data_summary",
    "held_out_split",
    "probe_split_settings",
    "split_record",
]

# What the split uses when nothing is given and nothing is recorded.
SPLIT_DEFAULTS: dict[str, Any] = {"seed": 0, "test_fraction": 0.2, "skip_missing": False}
_FLAGS = {"seed": "--seed", "test_fraction": "--test-fraction", "skip_missing": "--skip-missing"}


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rows_sha256(dataset: ImageCaptionDataset, indices: Sequence[int]) -> str:
    # File row number, image file name and caption: the row's identity, independent of where the
    # data folder is mounted.
    h = hashlib.sha256()
    for i in indices:
        rec = dataset.records[i]
        h.update(f"{rec.row}\t{rec.image.name}\t{rec.caption}\n".encode())
    return h.hexdigest()


def held_out_split(dataset: ImageCaptionDataset, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices: stratified and seeded.

    Every row trains when there are no labels or ``test_fraction`` is 0.
    """
    if dataset.num_classes is None or test_fraction <= 0:
        return list(range(len(dataset))), []
    return train_test_split(dataset.labels, test_fraction, seed)


def data_summary(
    data: str | os.PathLike, dataset: ImageCaptionDataset, train_idx: Sequence[int], test_idx: Sequence[int]
) -> dict[str, Any]:
    """The ``data`` entry of a results JSON: the file, its pairs, the skipped rows, the split sizes, the classes."""
    return {
        "path": str(data),
        "pairs": len(dataset),
        "skipped": dataset.skipped,
        "train": len(train_idx),
        "test": len(test_idx),
        "classes": dataset.classes,
    }


def split_record(
    dataset: ImageCaptionDataset, test_idx: Sequence[int], seed: int, test_fraction: float, skip_missing: bool
) -> dict[str, Any]:
    """What identifies a split: its settings, the data file's SHA-256 and the held-out rows' SHA-256.

    ``skipped`` (the rows ``skip_missing`` dropped, by reason) says why a re-made split may differ
    on the same file: an image that went missing or became unreadable since.
    """
    return {
        "seed": int(seed),
        "test_fraction": float(test_fraction) if test_idx else 0.0,
        "skip_missing": bool(skip_missing),
        "skipped": dict(dataset.skipped),
        "data_sha256": _file_sha256(dataset.path),
        "test_rows": len(test_idx),
        "test_rows_sha256": _rows_sha256(dataset, test_idx),
    }


def probe_split_settings(
    recorded: Mapping[str, Any] | None,
    data: str | os.PathLike,
    seed: int | None = None,
    test_fraction: float | None = None,
    skip_missing: bool | None = None,
) -> tuple[dict[str, Any], bool]:
    """The split settings to probe ``data`` with, and whether ``data`` is the file the model trained on.

    ``None`` means "not given". On the training file the recorded settings are the defaults, and a
    given setting that differs from the recorded one is a ValueError (its held-out rows would
    include training rows). On another file (or without a record) the given settings apply, the
    rest come from :data:`SPLIT_DEFAULTS`.
    """
    given = {"seed": seed, "test_fraction": test_fraction, "skip_missing": skip_missing}
    if recorded is None or _file_sha256(Path(data)) != recorded.get("data_sha256"):
        return {k: SPLIT_DEFAULTS[k] if v is None else v for k, v in given.items()}, False
    if not recorded["test_rows"]:
        raise ValueError(
            f"the model was trained on every row of {data} (test_fraction 0 or no labels): "
            "a linear probe on it would be scored on training rows; probe it on other data"
        )
    for key, value in given.items():
        if value is not None and value != recorded[key]:
            raise ValueError(
                f"{key}={value!r} ({_FLAGS[key]}) differs from the split the model was trained with "
                f"({key}={recorded[key]!r}): its held-out rows would include rows the model trained on; "
                f"leave {_FLAGS[key]} out to use the recorded split"
            )
    return {k: recorded[k] for k in given}, True


def check_same_held_out(recorded: Mapping[str, Any], record: Mapping[str, Any], data: str | os.PathLike) -> None:
    """The re-made split must hold out exactly the recorded rows."""
    if record["test_rows_sha256"] != recorded["test_rows_sha256"]:
        skipped = ""
        if "skipped" in recorded and record.get("skipped") != recorded["skipped"]:
            skipped = f"; rows skipped now {record.get('skipped')}, at training {recorded['skipped']}"
        raise ValueError(
            f"the held-out rows of {data} differ from the ones recorded at training "
            f"({record['test_rows']} vs {recorded['test_rows']} rows{skipped}): the split cannot be re-made"
        )
