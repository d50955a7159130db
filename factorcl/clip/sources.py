"""Where ``factorcl clip train`` gets its pairs: an image-caption file or webdataset shards.

Both give a :class:`ClipData`: the training loader, the held-out loader (linear probe, zero-shot,
retrieval), a loader of training pairs for fitting the probe, the class names, and the record of
the split that goes into the export and ``results.json``.

- **Caption file** (CSV/TSV/JSONL/JSON): the held-out rows are a stratified, seeded
  ``test_fraction`` of a labelled file (:mod:`factorcl.clip.split`); an unlabelled file trains on
  every row.
- **Shards**: the held-out set is ``val_data`` (other shards) when given, else the last
  ``round(test_fraction * n)`` shards of the list (at least one, when there are two or more). The
  probe fits on at most ``probe_samples`` training pairs, read in shard order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Subset

from .data import ImageCaptionDataset, image_transform, make_loader
from .loading import ClipBundle
from .shards import ShardDataset, ShardPass, expand_shards, is_shard_spec, make_eval_loader, make_shard_loader
from .split import data_summary, held_out_split, split_record

__all__ = ["ClipData", "open_caption_file", "open_clip_data", "open_shards", "shard_split"]


@dataclass
class ClipData:
    """The loaders and records of one training run's data (see the module docstring)."""

    kind: str  # "captions" or "shards"
    train_loader: DataLoader
    classes: list[str] | None
    split: dict[str, Any]
    summary: dict[str, Any]
    probe_train: Callable[[], DataLoader] | None = None
    held_out: Callable[..., DataLoader] | None = None  # held_out(limit=None): at most limit pairs
    no_held_out: str | None = None  # why there is no held-out set
    skipped: Callable[[], dict[str, int]] = field(default=lambda: {})

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or None without labels."""
        return None if self.classes is None else len(self.classes)


def open_clip_data(data: str | os.PathLike, bundle: ClipBundle, **kwargs: Any) -> ClipData:
    """:func:`open_shards` for webdataset shards, else :func:`open_caption_file`."""
    if is_shard_spec(data):
        return open_shards(data, bundle, **kwargs)
    for key in ("val_data", "train_num_samples"):
        if kwargs.pop(key, None) is not None:
            raise ValueError(f"{key.replace('_', '-')} is for webdataset shards; {data} is a caption file")
    kwargs.pop("probe_samples", None)
    return open_caption_file(data, bundle, **kwargs)


def open_caption_file(
    data: str | os.PathLike,
    bundle: ClipBundle,
    batch_size: int,
    seed: int,
    test_fraction: float,
    num_workers: int = 0,
    skip_missing: bool = False,
    image_column: str = "image",
    caption_column: str = "caption",
    label_column: str | None = "label",
) -> ClipData:
    """The pairs of a CSV/TSV/JSONL/JSON file (see the module docstring)."""
    dataset = ImageCaptionDataset(
        data,
        bundle.preprocess_cfg,
        skip_missing=skip_missing,
        image_column=image_column,
        caption_column=caption_column,
        label_column=label_column,
    )
    # The held-out split does not depend on whether a probe runs, so that a run resumed without
    # probing trains on the same rows; test_fraction=0 trains on every row.
    train_idx, test_idx = held_out_split(dataset, test_fraction, seed)
    train_set = Subset(dataset, train_idx)
    loader = make_loader(train_set, bundle.tokenizer, batch_size, shuffle=True, num_workers=num_workers, seed=seed)

    def eval_loader(indices: list[int]) -> Callable[..., DataLoader]:
        def make(limit: int | None = None) -> DataLoader:
            rows = indices if limit is None else indices[:limit]
            return make_loader(
                Subset(dataset, rows), bundle.tokenizer, batch_size, shuffle=False, num_workers=num_workers
            )

        return make

    reason = None
    if not test_idx:
        reason = f"{data} has no {label_column!r} column" if dataset.num_classes is None else "test_fraction is 0"
    return ClipData(
        kind="captions",
        train_loader=loader,
        classes=dataset.classes,
        split=split_record(dataset, test_idx, seed, test_fraction, skip_missing),
        summary=data_summary(data, dataset, train_idx, test_idx),
        probe_train=eval_loader(train_idx) if test_idx else None,
        held_out=eval_loader(test_idx) if test_idx else None,
        no_held_out=reason,
        skipped=lambda: dict(dataset.skipped),
    )


def shard_split(
    urls: list[str], test_fraction: float, val_data: str | os.PathLike | None
) -> tuple[list[str], list[str]]:
    """(training shards, held-out shards): ``val_data``'s shards, or the last ``test_fraction`` of ``urls``."""
    if val_data is not None:
        held = expand_shards(val_data)
        overlap = sorted(set(held) & set(urls))
        if overlap:
            raise ValueError(f"--val-data shares {len(overlap)} shard(s) with --data, e.g. {overlap[0]}")
        return urls, held
    if test_fraction <= 0 or len(urls) < 2:
        return urls, []
    k = min(len(urls) - 1, max(1, round(test_fraction * len(urls))))
    return urls[:-k], urls[-k:]


def open_shards(
    data: str | os.PathLike,
    bundle: ClipBundle,
    batch_size: int,
    seed: int,
    test_fraction: float,
    num_workers: int = 0,
    val_data: str | os.PathLike | None = None,
    train_num_samples: int | None = None,
    probe_samples: int = 10000,
    **ignored: Any,
) -> ClipData:
    """Webdataset shards (see the module docstring and :class:`factorcl.clip.shards.ShardDataset`).

    ``ignored`` takes the caption-file settings (columns, ``skip_missing``), which shards do not use:
    corrupt samples are always skipped and counted.
    """
    urls = expand_shards(data)
    train_urls, held_urls = shard_split(urls, test_fraction, val_data)
    transform = image_transform(bundle.preprocess_cfg)
    # Without train_num_samples the epoch is the training shards' total in sizes.json (ShardDataset reads
    # the counts of the shards it is given only, so the held-out shards are not counted).
    train_set = ShardDataset(train_urls, transform, batch_size, epoch_samples=train_num_samples, seed=seed)
    loader = make_shard_loader(train_set, bundle.tokenizer, num_workers=num_workers)

    def eval_loader(shards: list[str], cap: int | None) -> Callable[..., DataLoader]:
        def make(limit: int | None = None) -> DataLoader:
            most = cap if limit is None else limit if cap is None else min(cap, limit)
            return make_eval_loader(ShardPass(shards, transform, most), bundle.tokenizer, batch_size, num_workers)

        return make

    split = {
        "kind": "shards",
        "seed": int(seed),
        "test_fraction": float(test_fraction) if held_urls and val_data is None else 0.0,
        "val_data": None if val_data is None else str(val_data),
        "train_shards": [Path(u).name for u in train_urls],
        # Resolved: the record must name the same files from any working directory.
        "held_out_shards": [_resolved(u) for u in held_urls],
        "epoch_samples": train_set.epoch_samples,
    }
    summary = {
        "path": str(data),
        "shards": len(urls),
        "train": train_set.epoch_samples,
        "test": None,  # counted when the held-out shards are read
        "classes": train_set.classes,
        "skipped": {},
    }
    reason = None
    if not held_urls:
        reason = "one shard and no --val-data" if len(urls) < 2 else "test_fraction is 0 and no --val-data"
    return ClipData(
        kind="shards",
        train_loader=loader,
        classes=train_set.classes,
        split=split,
        summary=summary,
        probe_train=eval_loader(train_urls, probe_samples) if held_urls else None,
        held_out=eval_loader(held_urls, None) if held_urls else None,
        no_held_out=reason,
        skipped=lambda: dict(train_set.skipped),
    )


def _resolved(url: str) -> str:
    """A local shard's absolute path; a URL as it is."""
    return url if "://" in url or url.startswith("pipe:") else str(Path(url).resolve())
