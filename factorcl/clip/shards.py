"""Image-caption pairs in webdataset ``.tar`` shards (open_clip's layout), streamed by rank and worker.

A shard holds one sample per key: ``KEY.jpg`` / ``.jpeg`` / ``.png`` / ``.webp`` (the image),
``KEY.txt`` (the caption) and optionally ``KEY.cls`` (the class index, as text). Beside the shards,
``sizes.json`` (``{"00000.tar": n, ...}``, open_clip's convention) gives the sample counts and
``classes.json`` (a list of class names in index order) names the classes. Both are written by
:func:`write_shards` (``factorcl clip to-shards``, ``factorcl clip demo-data --format webdataset``).

How an epoch is split by rank and worker, what is skipped and what a resume guarantees is
:mod:`factorcl.shards`' stream, shared with array shards; here a sample is decoded into
``(image, caption, label)``, and an undecodable image, no image, an empty caption or a bad label is
skipped and counted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..shards import (
    CLASSES_NAME,
    LABEL_EXTENSION,
    SIZES_NAME,
    OnePass,
    ShardStream,
    is_shard_spec,
    read_label,
    read_shard_metadata,
    write_tar_shards,
)
from ..shards import expand_shards as _expand_shards

__all__ = [
    "CLASSES_NAME",
    "IMAGE_EXTENSIONS",
    "SHARD_SKIP_REASONS",
    "SIZES_NAME",
    "ShardDataset",
    "ShardPass",
    "expand_shards",
    "is_shard_spec",
    "make_eval_loader",
    "make_shard_loader",
    "read_shard_metadata",
    "write_shards",
]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSION = "txt"
#: Why a sample is skipped (the keys of ``ShardDataset.skipped``).
SHARD_SKIP_REASONS = ("bad_image", "no_image", "empty_caption", "bad_label", "bad_shard")


def expand_shards(data: str | os.PathLike | Sequence[str]) -> list[str]:
    """The shard paths of a pattern, list or folder (:func:`factorcl.shards.expand_shards`); a missing
    webdataset names the ``clip`` extra."""
    return _expand_shards(data, "clip")


class ShardDataset(ShardStream):
    """Webdataset image-caption shards as a stream of ``(image [3, H, W] in [0, 1], caption, label)``.

    ``transform`` takes a PIL image (e.g. :func:`factorcl.clip.image_transform` of the model's
    preprocessing). ``label`` is -1 without ``classes.json``. The other arguments, how the shards are
    split, what is skipped and what a resume guarantees are :class:`factorcl.shards.ShardStream`'s;
    ``epoch_samples`` is ``--train-num-samples``.
    """

    SKIP_REASONS = SHARD_SKIP_REASONS
    EXTRA = "clip"
    SMALLER_SHARDS = "write smaller shards (factorcl clip to-shards --shard-size)"
    EPOCH_SAMPLES_OPTION = "--train-num-samples"

    def __init__(
        self,
        data: str | os.PathLike | Sequence[str],
        transform: Callable[[Any], Tensor],
        batch_size: int,
        epoch_samples: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 256,
        world_size: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.transform = transform
        super().__init__(data, batch_size, epoch_samples, seed, shuffle, shuffle_buffer, world_size, rank)

    def _decode(self, sample: Mapping[str, Any], worker: int) -> tuple[Tensor, str, int] | None:
        """(image, caption, label) of a raw sample, or None (counted by reason) when it is corrupt."""
        from PIL import Image

        image_bytes = next((sample[e] for e in IMAGE_EXTENSIONS if e in sample), None)
        if image_bytes is None:
            self._count(worker, "no_image")
            return None
        caption = sample.get(CAPTION_EXTENSION, b"")
        caption = caption.decode("utf-8", errors="replace").strip() if isinstance(caption, bytes) else ""
        if not caption:
            self._count(worker, "empty_caption")
            return None
        label = -1
        if self.classes is not None:
            found = read_label(sample, len(self.classes))
            if found is None:
                self._count(worker, "bad_label")
                return None
            label = found
        try:
            with Image.open(io.BytesIO(image_bytes)) as img:
                image = self.transform(img.convert("RGB"))
        except Exception:  # PIL raises OSError, SyntaxError, ValueError, ... for broken bytes
            self._count(worker, "bad_image")
            return None
        return image, caption, label


def make_shard_loader(
    dataset: ShardDataset,
    tokenizer: Callable[[list[str]], Tensor],
    num_workers: int = 0,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader of FactorCL batches (``{"x1", "x2", "y"}``, see :class:`factorcl.clip.CaptionCollate`)
    over a :class:`ShardDataset`, with its ``batch_size``; ``len()`` is the rank's batches per epoch."""
    from .data import CaptionCollate

    dataset.check_workers(num_workers)
    return DataLoader(
        dataset,
        batch_size=dataset.batch_size,
        num_workers=num_workers,
        collate_fn=CaptionCollate(tokenizer),
        drop_last=True,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        # Fresh workers per epoch: they must see the epoch and the resume position set on the dataset.
        persistent_workers=False,
    )


def write_shards(
    samples: Iterable[tuple[bytes, str, str, int | None]],
    out_dir: str | os.PathLike,
    shard_size: int = 1000,
    classes: Sequence[str] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``(image bytes, image extension, caption, class index or None)`` samples as shards
    ``OUT/00000.tar, ...`` of ``shard_size`` samples, with ``sizes.json`` and (given ``classes``)
    ``classes.json`` (:func:`factorcl.shards.write_tar_shards`: no silent overwrite, atomic shards)."""

    def records() -> Iterator[dict[str, bytes]]:
        for index, (image, ext, caption, label) in enumerate(samples):
            ext = ext.lower().lstrip(".")
            if ext not in IMAGE_EXTENSIONS:
                raise ValueError(f"sample {index}: image extension {ext!r} is not one of {IMAGE_EXTENSIONS}")
            record = {ext: image, CAPTION_EXTENSION: caption.encode("utf-8")}
            if label is not None:
                record[LABEL_EXTENSION] = str(int(label)).encode("utf-8")
            yield record

    return write_tar_shards(records(), out_dir, shard_size, classes, overwrite, extra="clip")


class ShardPass(OnePass, ShardDataset):
    """One pass over image-caption shards in order, every sample once (evaluation): the workers split
    the shards, nothing is shuffled or repeated, and ``max_samples`` (if given) stops the pass early.
    Rank-local: under torch.distributed every rank that iterates it reads every shard."""

    def __init__(
        self,
        data: str | os.PathLike | Sequence[str],
        transform: Callable[[Any], Tensor],
        max_samples: int | None = None,
    ) -> None:
        ShardDataset.__init__(self, data, transform, **self._one_pass_init(max_samples))


def make_eval_loader(
    dataset: ShardPass, tokenizer: Callable[[list[str]], Tensor], batch_size: int, num_workers: int = 0
) -> DataLoader:
    """A DataLoader of FactorCL batches over one :class:`ShardPass` (last batch kept)."""
    from .data import CaptionCollate

    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=min(num_workers, len(dataset.urls)),
        collate_fn=CaptionCollate(tokenizer),
        drop_last=False,
    )
