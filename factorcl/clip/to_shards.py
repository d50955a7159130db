"""Converting an image-caption file (CSV/TSV/JSONL/JSON) into webdataset shards (``factorcl clip to-shards``)."""

from __future__ import annotations

import io
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .data import _label_classes, read_records
from .shards import IMAGE_EXTENSIONS, write_shards

__all__ = ["captions_to_shards", "shard_pattern", "write_demo_shards"]


def _image_bytes(path: Path) -> tuple[bytes, str]:
    """The file's bytes and extension; formats a shard reader may not expect (gif, bmp, ...) become PNG."""
    ext = path.suffix.lower().lstrip(".")
    if ext in IMAGE_EXTENSIONS:
        return path.read_bytes(), ext
    from PIL import Image

    with Image.open(path) as img:
        buffer = io.BytesIO()
        img.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def captions_to_shards(
    captions: str | os.PathLike,
    out_dir: str | os.PathLike,
    shard_size: int = 1000,
    overwrite: bool = False,
    skip_missing: bool = False,
    image_column: str = "image",
    caption_column: str = "caption",
    label_column: str | None = "label",
    shuffle: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the pairs of an image-caption file as shards ``OUT/00000.tar, ...`` (``shard_size`` each).

    ``shuffle`` (default) writes the rows in a seeded random order: a file sorted by label would
    otherwise give shards of one class, and a held-out set (the last shards) of one class.

    The rows are checked as :func:`factorcl.clip.read_records` checks them (``skip_missing`` drops
    bad rows). Labels become ``.cls`` class indices, with ``classes.json`` naming them in the
    order :class:`factorcl.clip.ImageCaptionDataset` uses. Returns a summary: the shards, the
    sample count, the classes and the skipped rows.
    """
    records, skipped = read_records(captions, image_column, caption_column, label_column, skip_missing)
    classes: list[str] | None = None
    labels: list[int | None] = [None] * len(records)
    if records[0].label is not None:
        classes, indices = _label_classes([r.label for r in records])
        labels = list(indices)

    order = list(range(len(records)))
    if shuffle:
        random.Random(seed).shuffle(order)

    def samples() -> Iterator[tuple[bytes, str, str, int | None]]:
        for record, label in ((records[i], labels[i]) for i in order):
            data, ext = _image_bytes(record.image)
            yield data, ext, record.caption, label

    shards = write_shards(samples(), out_dir, shard_size=shard_size, classes=classes, overwrite=overwrite)
    return {
        "shards": [str(p) for p in shards],
        "pattern": shard_pattern(shards),
        "samples": len(records),
        "classes": classes,
        "skipped": skipped,
    }


def shard_pattern(shards: list[Path]) -> str:
    """The brace pattern of consecutively numbered shards (``OUT/{00000..00012}.tar``)."""
    if len(shards) == 1:
        return str(shards[0])
    return str(shards[0].parent / f"{{{shards[0].stem}..{shards[-1].stem}}}.tar")


def write_demo_shards(
    out_dir: str | os.PathLike,
    n: int = 400,
    seed: int = 0,
    image_size: int = 64,
    shard_size: int = 100,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The generated demo dataset (:func:`factorcl.clip.write_demo_dataset`) as shards in ``out_dir``.

    Same pairs, captions and labels as the CSV form for the same ``seed``; returns the
    :func:`captions_to_shards` summary.
    """
    from .demo_data import write_demo_dataset

    with tempfile.TemporaryDirectory(prefix="factorcl-demo-") as tmp:
        csv_path = write_demo_dataset(tmp, n=n, seed=seed, image_size=image_size)
        # The demo rows are already in random order: kept, so the shards hold the CSV form's pairs in order.
        return captions_to_shards(csv_path, out_dir, shard_size=shard_size, overwrite=overwrite, shuffle=False)
