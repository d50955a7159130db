"""Paired arrays in webdataset ``.tar`` shards, streamed into ``factorcl train`` (``data.kind: shards``).

A shard holds one sample per key: ``KEY.x1.npy`` and ``KEY.x2.npy`` (NumPy ``.npy`` bytes, one row
each: ``[d]``, ``[T, d]`` or ``[C, H, W]``), optionally ``KEY.mask1.npy`` / ``KEY.mask2.npy`` (bool
``[T]``, True = valid step) and ``KEY.cls`` (the class index, as text). Beside the shards,
``sizes.json`` counts the samples and ``classes.json`` names the classes; with it every sample needs
a label. :func:`arrays_to_shards` (``factorcl to-shards pairs.npz OUT/``) writes one folder of
shards per split (``OUT/train``, ``OUT/valid``, ``OUT/test``).

Training streams the train shards (:class:`ArrayShardDataset`, split by rank and worker as
:mod:`factorcl.shards` says, resumable at the same global sample count). The linear probe and the
model's input shapes need rows in memory: :func:`load_array_shards` reads at most
``probe_samples`` rows of each split, in shard order, into the :class:`ShardSplitDataset` it
returns (the train split is a sample of the stream; ``summary()`` says how big).

A sample is skipped and counted (``skipped``) when an array is missing (``no_array``), cannot be
read, is not finite or has another shape than the first sample's (``bad_array``), or its label is
missing or out of range (``bad_label``); a truncated shard counts as ``bad_shard``.

Reading and writing shards needs webdataset: ``pip install "factorcl[shards]"`` (``[clip]`` and
``[all]`` bring it too).
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
    write_tar_shards,
)
from .base import SPLIT_ALIASES, SPLIT_NAMES, SplitDataset, shape_str
from .pairs import PairDataset

__all__ = [
    "ARRAY_SKIP_REASONS",
    "ArrayShardDataset",
    "ArrayShardPass",
    "ShardSplitDataset",
    "arrays_to_shards",
    "load_array_shards",
    "make_array_shard_loader",
    "shard_split_specs",
]

#: Why a sample is skipped (the keys of ``ArrayShardDataset.skipped``).
ARRAY_SKIP_REASONS = ("no_array", "bad_array", "bad_label", "bad_shard")
#: Rows of each split read into memory for the probe when ``data.probe_samples`` is not set.
DEFAULT_PROBE_SAMPLES = 10000
_ARRAYS = ("x1", "x2")
_MASKS = ("mask1", "mask2")


def _npy(value: bytes) -> np.ndarray:
    return np.load(io.BytesIO(value), allow_pickle=False)


class ArrayShardDataset(ShardStream):
    """Array-pair shards as a stream of items ``{"x1", "x2"}`` (float32) plus ``"y"`` (long, with
    ``classes.json``) and ``"mask1"`` / ``"mask2"`` (bool) when the samples carry them.

    The fields and the shapes every sample must have are those of the first sample of the first
    shard. The other arguments, the split by rank and worker and what a resume guarantees are
    :class:`factorcl.shards.ShardStream`'s; ``epoch_samples`` is ``data.train_num_samples``.
    """

    SKIP_REASONS = ARRAY_SKIP_REASONS
    SMALLER_SHARDS = "write smaller shards (factorcl to-shards --shard-size)"

    def __init__(
        self,
        data: str | os.PathLike | Sequence[str],
        batch_size: int,
        epoch_samples: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 256,
        world_size: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(data, batch_size, epoch_samples, seed, shuffle, shuffle_buffer, world_size, rank)
        self.shapes = self._first_shapes()

    def _first_shapes(self) -> dict[str, tuple[int, ...]]:
        """{field: per-sample shape} of the first sample of the first shard (the layout all must share)."""
        for sample in self._read_shard(self.urls[0], 0):
            shapes: dict[str, tuple[int, ...]] = {}
            for name in _ARRAYS + _MASKS:
                member = f"{name}.npy"
                if member not in sample:
                    if name in _ARRAYS:
                        raise ValueError(
                            f"the first sample of {self.urls[0]} has no {member} (members: "
                            f"{', '.join(sorted(k for k in sample if not k.startswith('__')))}): array shards hold "
                            f"KEY.x1.npy and KEY.x2.npy (write them with factorcl to-shards)"
                        )
                    continue
                try:
                    shapes[name] = tuple(_npy(sample[member]).shape)
                except ValueError as exc:
                    raise ValueError(
                        f"the first sample of {self.urls[0]}: {member} is not a .npy array ({exc})"
                    ) from None
            self._check_layout(shapes)
            self._skipped.zero_()  # reading the layout is not part of any epoch
            return shapes
        raise ValueError(f"{self.urls[0]} holds no samples")

    def _check_layout(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        for name in _ARRAYS:
            if not 1 <= len(shapes[name]) <= 3:
                raise ValueError(
                    f"{name}.npy of {self.urls[0]}'s first sample has shape {shape_str(shapes[name])}: one row is "
                    "[d], [T, d] or [C, H, W]"
                )
        for i, name in ((1, "mask1"), (2, "mask2")):
            x = shapes[f"x{i}"]
            if name in shapes and (len(x) != 2 or shapes[name] != x[:1]):
                raise ValueError(
                    f"{name}.npy of {self.urls[0]}'s first sample has shape {shape_str(shapes[name])}: a mask is [T] "
                    f"for a sequence x{i} [T, d], and x{i} is {shape_str(x)}"
                )

    @property
    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per-sample shapes of X1 and X2."""
        return self.shapes["x1"], self.shapes["x2"]

    def _decode(self, sample: Mapping[str, Any], worker: int) -> dict[str, Tensor] | None:
        """The item of a raw sample, or None (counted by reason) when it is corrupt."""
        item: dict[str, Tensor] = {}
        for name, shape in self.shapes.items():
            member = f"{name}.npy"
            if member not in sample:
                self._count(worker, "no_array")
                return None
            try:
                array = _npy(sample[member])
            except (ValueError, OSError, EOFError):
                self._count(worker, "bad_array")
                return None
            if array.shape != shape or array.dtype.kind not in "biuf":
                self._count(worker, "bad_array")
                return None
            if name in _MASKS:
                item[name] = torch.from_numpy(array.astype(bool))
                continue
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            if not bool(torch.isfinite(tensor).all()):
                self._count(worker, "bad_array")
                return None
            item[name] = tensor
        if self.classes is not None:
            label = read_label(sample, len(self.classes))
            if label is None:
                self._count(worker, "bad_label")
                return None
            item["y"] = torch.tensor(label, dtype=torch.long)
        return item


class ArrayShardPass(OnePass, ArrayShardDataset):
    """One pass over array shards in order, every sample once (the probe's rows): the workers split
    the shards, nothing is shuffled or repeated, and ``max_samples`` (if given) stops the pass early."""

    def __init__(self, data: str | os.PathLike | Sequence[str], max_samples: int | None = None) -> None:
        ArrayShardDataset.__init__(self, data, **self._one_pass_init(max_samples))

    def to_pairs(self, num_workers: int = 0) -> PairDataset:
        """The pass read into memory as a :class:`PairDataset`."""
        loader = DataLoader(self, batch_size=256, num_workers=min(num_workers, len(self.urls)))
        batches = list(loader)
        if not batches:
            raise ValueError(f"{self.data!r} holds no usable sample (skipped: {self.skipped})")
        return PairDataset(**{k: torch.cat([b[k] for b in batches]) for k in batches[0]})


def make_array_shard_loader(
    dataset: ArrayShardDataset, num_workers: int = 0, pin_memory: bool | None = None
) -> DataLoader:
    """A DataLoader of training batches (``{"x1", "x2", ...}``) over an :class:`ArrayShardDataset`,
    with its ``batch_size``; ``len()`` is the rank's batches per epoch."""
    dataset.check_workers(num_workers)
    return DataLoader(
        dataset,
        batch_size=dataset.batch_size,
        num_workers=num_workers,
        drop_last=True,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        # Fresh workers per epoch: they must see the epoch and the resume position set on the dataset.
        persistent_workers=False,
    )


@dataclass
class ShardSplitDataset(SplitDataset):
    """A :class:`SplitDataset` whose training rows stream from shards (``stream``); ``train`` is the
    first ``probe_samples`` of them, read into memory for the probe, and ``valid`` / ``test`` are
    capped alike."""

    stream: ArrayShardDataset | None = None

    def summary(self) -> dict[str, Any]:
        """:meth:`SplitDataset.summary`, plus the stream (shards, samples per epoch, skipped samples)."""
        out = super().summary()
        if self.stream is not None:
            out["stream"] = {
                "shards": len(self.stream.urls),
                "epoch_samples": self.stream.epoch_samples,
                "total_samples": None if self.stream.sizes is None else sum(self.stream.sizes.values()),
                "skipped": self.stream.skipped,
            }
        return out


def shard_split_specs(path: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """{split: shard spec} of ``data.path``: a mapping of splits, a folder with ``train/`` (and
    ``valid/``, ``test/``) subfolders of shards, or one shard spec (train only)."""
    if isinstance(path, Mapping):
        specs: dict[str, Any] = {}
        for key, spec in path.items():
            name = SPLIT_ALIASES.get(str(key).lower())
            if name is None:
                raise ValueError(
                    f"data.path: split shards must be keyed by train, valid (or val) and test, got {key!r}"
                )
            specs[name] = spec
        if "train" not in specs:
            raise ValueError(f"data.path: the split shards need a 'train' entry (got: {', '.join(sorted(specs))})")
        return specs
    folder = Path(str(path))
    if folder.is_dir() and (folder / "train").is_dir():
        return {name: str(folder / name) for name in SPLIT_NAMES if (folder / name).is_dir()}
    if not is_shard_spec(path):
        raise ValueError(
            f"data.path {str(path)!r} names no shards: give a folder with train/ (valid/, test/) shard folders, "
            "a .tar pattern such as 'shards/{00000..00009}.tar', or a mapping {train: ..., test: ...}"
        )
    return {"train": path}


def load_array_shards(
    path: str | os.PathLike | Mapping[str, Any],
    batch_size: int,
    train_num_samples: int | None = None,
    probe_samples: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    name: str | None = None,
) -> ShardSplitDataset:
    """Array shards (see the module docstring) as a :class:`ShardSplitDataset`: the train stream of
    ``train_num_samples`` per epoch (default: all) in per-rank batches of ``batch_size``, and at most
    ``probe_samples`` (default 10000) rows of each split in memory. A split that is absent is None."""
    specs = shard_split_specs(path)
    cap = DEFAULT_PROBE_SAMPLES if probe_samples is None else int(probe_samples)
    if cap < 2:
        raise ValueError(f"data.probe_samples must be >= 2, got {cap}")
    stream = ArrayShardDataset(specs["train"], batch_size, epoch_samples=train_num_samples, seed=seed)
    parts: dict[str, PairDataset | None] = {}
    for split in SPLIT_NAMES:
        if split not in specs:
            parts[split] = None
            continue
        reader = ArrayShardPass(specs[split], max_samples=cap)
        if reader.shapes != stream.shapes:
            raise ValueError(
                f"the {split} shards ({specs[split]!r}) hold fields {_layout(reader.shapes)} but the train shards "
                f"hold {_layout(stream.shapes)}: every split needs the same arrays"
            )
        if (reader.classes is None) != (stream.classes is None):
            raise ValueError(f"the {split} and train shards disagree on labels: only one has a classes.json")
        parts[split] = reader.to_pairs(num_workers)
    return ShardSplitDataset(
        parts["train"],  # type: ignore[arg-type]
        parts["valid"],
        parts["test"],  # type: ignore[arg-type]  # None without test shards: the probe refuses it, naming the split
        name=name or Path(str(specs["train"]).split("::")[0]).parent.name or "shards",
        num_classes=stream.num_classes,
        info={
            "source": {k: str(v) for k, v in specs.items()},
            "probe_samples": cap,
            "probe_rows": "the first probe_samples rows of each split, in shard order",
        },
        stream=stream,
    )


def _layout(shapes: Mapping[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {shape_str(v)}" for k, v in shapes.items())


def arrays_to_shards(
    data: SplitDataset,
    out_dir: str | os.PathLike,
    shard_size: int = 1000,
    shuffle: bool = True,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, list[Path]]:
    """Write each split of ``data`` as array shards ``OUT/{train,valid,test}/00000.tar, ...`` with
    ``sizes.json`` and, for labelled data, ``classes.json`` (class names ``"0"``, ``"1"``, ...). The
    rows of a split are shuffled (seeded) unless ``shuffle`` is off, so that a shard is not one
    class. Returns {split: shard paths}; refuses a folder that already holds shards unless
    ``overwrite``."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    splits = {s: data.split(s) for s in SPLIT_NAMES if data.split(s) is not None}
    for s in SPLIT_NAMES:  # every split is checked before any is written, so nothing is half replaced
        existing = sorted((out / s).glob("*.tar"))
        if existing and not overwrite:
            raise FileExistsError(
                f"{out / s} already holds {len(existing)} shard(s), e.g. {existing[0].name}; pass --overwrite"
            )
        if existing and s not in splits:  # replaced data without this split: its old shards must not stay
            for path in [*existing, out / s / SIZES_NAME, out / s / CLASSES_NAME]:
                path.unlink(missing_ok=True)
    classes = [str(k) for k in range(data.num_classes)] if data.has_labels and data.num_classes else None
    written: dict[str, list[Path]] = {}
    for split, ds in splits.items():
        fields = ds.tensors()
        order = list(range(len(ds)))
        if shuffle:
            random.Random(f"{seed}-{split}").shuffle(order)
        written[split] = write_tar_shards(
            (_record(fields, i) for i in order), out / split, shard_size, classes, overwrite=True
        )
    return written


def _record(fields: Mapping[str, Tensor], index: int) -> dict[str, bytes]:
    record: dict[str, bytes] = {}
    for name, tensor in fields.items():
        if name == "y":
            record[LABEL_EXTENSION] = str(int(tensor[index])).encode("utf-8")
            continue
        buffer = io.BytesIO()
        np.save(buffer, tensor[index].numpy(), allow_pickle=False)
        record[f"{name}.npy"] = buffer.getvalue()
    return record
