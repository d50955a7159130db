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
import warnings
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
_LAYOUT_TRIES = 100  # samples tried for the layout before the first one's problem is raised
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
    EPOCH_SAMPLES_OPTION = "data.train_num_samples"

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
        """{field: per-sample shape} of the first sample with a valid layout (the layout all must share).

        A corrupt first sample or an unreadable first shard does not decide it: up to
        ``_LAYOUT_TRIES`` samples are tried, in shard order, and the first one's problem is raised
        when none fits."""
        first_problem: str | None = None
        tried = 0
        for url in self.urls:
            for sample in self._read_shard(url, 0):
                tried += 1
                try:
                    shapes = self._layout(sample, f"{url} (sample {sample.get('__key__', '?')})")
                except ValueError as exc:
                    first_problem = first_problem or str(exc)
                    if tried >= _LAYOUT_TRIES:
                        break
                    continue
                self._skipped.zero_()  # reading the layout is not part of any epoch
                return shapes
            if tried >= _LAYOUT_TRIES:
                break
        self._skipped.zero_()
        if first_problem is None:
            raise ValueError(f"the shards of {self.data!r} hold no samples")
        more = f" (and the {tried - 1} sample(s) after it too)" if tried > 1 else ""
        raise ValueError(first_problem + more)

    @staticmethod
    def _layout(sample: Mapping[str, Any], where: str) -> dict[str, tuple[int, ...]]:
        """{field: shape} of one raw sample; ValueError saying what is wrong with it."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name in _ARRAYS + _MASKS:
            member = f"{name}.npy"
            if member not in sample:
                if name in _ARRAYS:
                    members = ", ".join(sorted(k for k in sample if not k.startswith("__"))) or "none"
                    raise ValueError(
                        f"{where} has no {member} (members: {members}): array shards hold KEY.x1.npy and "
                        "KEY.x2.npy (write them with factorcl to-shards)"
                    )
                continue
            try:
                array = _npy(sample[member])
            except (ValueError, OSError, EOFError):
                raise ValueError(f"{where}: {member} is not a readable .npy array of numbers") from None
            if array.dtype.kind not in "biuf":
                raise ValueError(f"{where}: {member} holds {array.dtype} values; expected numbers (or bool masks)")
            shapes[name] = tuple(array.shape)
        for name in _ARRAYS:
            if not 1 <= len(shapes[name]) <= 3:
                raise ValueError(
                    f"{where}: {name}.npy has shape {shape_str(shapes[name])}: one row is [d], [T, d] or [C, H, W]"
                )
        for i, name in ((1, "mask1"), (2, "mask2")):
            x = shapes[f"x{i}"]
            if name in shapes and (len(x) != 2 or shapes[name] != x[:1]):
                raise ValueError(
                    f"{where}: {name}.npy has shape {shape_str(shapes[name])}: a mask is [T] for a sequence "
                    f"x{i} [T, d], and x{i} is {shape_str(x)}"
                )
        return shapes

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
                if array.dtype != np.bool_ and not bool(((array == 0) | (array == 1)).all()):
                    self._count(worker, "bad_array")  # a mask is bool or 0/1, as data.kind arrays requires
                    return None
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

    def to_pairs(self) -> PairDataset:
        """The pass read into memory as a :class:`PairDataset`: the first ``max_samples`` usable rows in
        shard order (read in this process, so that the rows do not depend on a worker count)."""
        batches = list(DataLoader(self, batch_size=256, num_workers=0))
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
        specs = {}
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            name = SPLIT_ALIASES.get(sub.name.lower())
            if name is not None:
                if name in specs:
                    raise ValueError(f"data.path {str(path)!r} holds two {name} folders: {specs[name]} and {sub}")
                specs[name] = str(sub)
        return specs
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
    stream.check_workers(num_workers)  # before the probe rows are read: a wrong worker count fails fast
    parts: dict[str, PairDataset | None] = {}
    totals: dict[str, int | None] = {}
    for split in SPLIT_NAMES:
        if split not in specs:
            parts[split] = None
            continue
        reader = ArrayShardPass(specs[split], max_samples=cap)
        totals[split] = None if reader.sizes is None else sum(reader.sizes.values())
        if reader.shapes != stream.shapes:
            raise ValueError(
                f"the {split} shards ({specs[split]!r}) hold fields {_layout_text(reader.shapes)} but the train shards "
                f"hold {_layout_text(stream.shapes)}: every split needs the same arrays"
            )
        if (reader.classes is None) != (stream.classes is None):
            raise ValueError(f"the {split} and train shards disagree on labels: only one has a classes.json")
        parts[split] = reader.to_pairs()
    for split in ("valid", "test"):
        total = totals.get(split)
        rows = 0 if parts[split] is None else len(parts[split])
        if parts[split] is not None and (total > rows if total is not None else rows == cap):
            warnings.warn(
                f"the {split} shards hold {total or 'more'} samples; the probe uses their first {rows} "
                "(data.probe_samples)",
                stacklevel=2,
            )
    return ShardSplitDataset(
        parts["train"],  # type: ignore[arg-type]
        parts["valid"],
        parts["test"],  # type: ignore[arg-type]  # None without test shards: the probe refuses it, naming the split
        name=name or _data_name(path, stream.urls[0]),
        num_classes=stream.num_classes,
        info={
            "source": {k: str(v) for k, v in specs.items()},
            "probe_samples": cap,
            "probe_rows": "the first probe_samples usable rows of each split, in shard order",
            "split_samples": totals,
        },
        stream=stream,
    )


def _data_name(path: Any, first_shard: str) -> str:
    """A name for messages: the folder of the splits, else the shards' folder (its parent when that is a split)."""
    if not isinstance(path, Mapping) and Path(str(path)).is_dir() and (Path(str(path)) / "train").is_dir():
        return Path(str(path)).resolve().name
    folder = Path(first_shard).parent
    return (folder.parent.name if folder.name.lower() in SPLIT_ALIASES else folder.name) or "shards"


def _layout_text(shapes: Mapping[str, tuple[int, ...]]) -> str:
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
    class. Returns {split: shard paths}. Refuses a folder that already holds shards unless
    ``overwrite``; then each split's folder is replaced only once its new shards are complete."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    splits = {s: data.split(s) for s in SPLIT_NAMES if data.split(s) is not None}
    for s in SPLIT_NAMES:  # every split is checked before any is written
        existing = sorted((out / s).glob("*.tar"))
        if existing and not overwrite:
            raise FileExistsError(
                f"{out / s} already holds {len(existing)} shard(s), e.g. {existing[0].name}; pass --overwrite"
            )
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
    for s in SPLIT_NAMES:  # replaced data without this split: its old shards must not stay
        if s not in splits:
            for path in [*(out / s).glob("*.tar"), out / s / SIZES_NAME, out / s / CLASSES_NAME]:
                path.unlink(missing_ok=True)
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
