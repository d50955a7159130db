"""Samples in webdataset ``.tar`` shards, streamed by rank and data-loader worker: the core that
:mod:`factorcl.clip.shards` (image-caption pairs) and :mod:`factorcl.data.shards` (array pairs) share.

A shard holds one sample per key (``KEY.EXT`` members, open_clip's layout); a subclass of
:class:`ShardStream` says in ``_decode`` what a sample's members mean. Beside the shards,
``sizes.json`` (``{"00000.tar": n, ...}``, open_clip's convention) gives the sample counts and
``classes.json`` (a list of class names in index order) names the classes of the ``KEY.cls``
labels. Both are written by :func:`write_tar_shards`.

**How an epoch is streamed** (:class:`ShardStream`). An epoch has a fixed length,
``epoch_samples`` (default: the total of ``sizes.json``), so every rank takes the same number of
batches and the schedule is known in advance.

- The shards are shuffled with ``(seed, epoch)`` and dealt round-robin to the ``world_size *
  num_workers`` global data-loader workers (rank-major). Each worker reads only its own shards, so
  **no sample is read by two ranks or two workers in an epoch**.
- Each worker yields exactly its share of whole batches. When its shards hold fewer samples than
  that (uneven shards, or ``epoch_samples`` above the data), it starts its own shards again in a
  new order, and only then is a sample seen twice. When they hold more, the rest waits for a later
  epoch's order.
- A small shuffle buffer (seeded by seed, epoch and worker) mixes the samples of a shard.
- Decoding and preprocessing happen in the workers.
- A corrupt sample (the subclass's ``SKIP_REASONS``) or a truncated shard (``bad_shard``) is
  skipped and counted (``dataset.skipped``: per reason, summed over the workers through shared
  memory). Nothing is fatal but a worker whose shards hold no usable sample (it would cycle over
  them forever).

**Resume.** ``start_at(batches)`` makes the next epoch iterator skip the batches a stopped run
already trained on. Each worker drops the samples it had served before decoding them. With the
same world size, workers, batch size and seed, the resumed stream is the uninterrupted one. The
one exception is a corrupt sample inside the skipped part, which shifts that worker's stream by
one sample. The global sample count, the epoch and the schedule are exact in every case.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .distributed import get_rank, get_world_size
from .extras import require

__all__ = [
    "CLASSES_NAME",
    "LABEL_EXTENSION",
    "SIZES_NAME",
    "OnePass",
    "ShardStream",
    "expand_shards",
    "is_shard_spec",
    "read_label",
    "read_shard_metadata",
    "write_tar_shards",
]

LABEL_EXTENSION = "cls"
SIZES_NAME, CLASSES_NAME = "sizes.json", "classes.json"
_PASS_END = object()  # marks the end of one pass over a worker's shards
_MAX_WORKERS = 256  # rows of the shared skip counter: one per data-loader worker


def is_shard_spec(data: str | os.PathLike | Sequence[str]) -> bool:
    """Whether ``data`` names webdataset shards: a ``.tar`` pattern or list, or a folder of ``.tar`` files."""
    if isinstance(data, (list, tuple)):
        return bool(data) and all(str(d).endswith(".tar") for d in data)
    text = str(data)
    if text.endswith(".tar") or "::" in text:
        return True
    path = Path(text)
    return path.is_dir() and any(path.glob("*.tar"))


def expand_shards(data: str | os.PathLike | Sequence[str], extra: str = "shards") -> list[str]:
    """The shard paths of a brace pattern (``shards/{00000..00099}.tar``; ``::`` joins patterns), a list,
    or a folder (its ``*.tar`` files, sorted). Local shards must exist: the error names the missing ones.
    ``extra`` is the pip extra named when webdataset is missing."""
    expand_urls = require("webdataset.shardlists", extra, "webdataset shards").expand_urls

    if isinstance(data, (list, tuple)):
        urls = [str(d) for d in data]
    elif Path(str(data)).is_dir():
        urls = sorted(str(p) for p in Path(str(data)).glob("*.tar"))
        if not urls:
            raise FileNotFoundError(f"{data}: the folder has no .tar shards")
    else:
        urls = expand_urls(str(data))
    if not urls:
        raise ValueError(f"{data!r} names no shards")
    local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
    missing = [u for u in local if not Path(u).is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(urls)} shards of {data!r} not found: {', '.join(missing[:3])}{more}"
        )
    return urls


def read_shard_metadata(urls: Sequence[str]) -> tuple[dict[str, int] | None, list[str] | None]:
    """(sample count per shard from ``sizes.json``, class names from ``classes.json``) beside the first shard.

    Either is None when its file is absent; ``sizes.json`` must list every shard it is used for.
    """
    folder = Path(urls[0]).parent
    sizes: dict[str, int] | None = None
    classes: list[str] | None = None
    sizes_path, classes_path = folder / SIZES_NAME, folder / CLASSES_NAME
    if sizes_path.is_file():
        raw = json.loads(sizes_path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError(f"{sizes_path} must hold an object {{shard file name: sample count}}")
        names = [Path(u).name for u in urls]
        absent = [n for n in names if n not in raw]
        if absent:
            warnings.warn(f"{sizes_path} does not list {len(absent)} shard(s), e.g. {absent[0]}", stacklevel=2)
        else:
            sizes = {u: int(raw[Path(u).name]) for u in urls}
    if classes_path.is_file():
        raw = json.loads(classes_path.read_text(encoding="utf-8"))
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            raise ValueError(f"{classes_path} must hold a list of class names (strings), in index order")
        classes = list(raw)
    return sizes, classes


def _truncated(url: str) -> str | None:
    """Why a local shard is cut short (no end-of-archive blocks), or None; remote shards are not checked."""
    path = Path(url)
    if "://" in url or url.startswith("pipe:") or not path.is_file():
        return None
    size = path.stat().st_size
    if size < 1024 or size % 512:
        return f"truncated ({size} bytes, not whole 512-byte tar blocks)"
    with path.open("rb") as f:
        f.seek(size - 1024)
        if f.read(1024).strip(b"\0"):
            return "truncated (no end-of-archive marker)"
    return None


def _batches_of_worker(batches: int, worker: int, num_workers: int) -> int:
    """How many of a rank's first ``batches`` batches come from ``worker``: the DataLoader takes them in turn."""
    return len(range(worker, batches, num_workers))


def read_label(sample: Mapping[str, Any], num_classes: int) -> int | None:
    """The class index in a sample's ``cls`` member, or None when it is absent, not an integer or not in
    ``0..num_classes-1``."""
    try:
        label = int(sample[LABEL_EXTENSION].decode("utf-8").strip())
    except (KeyError, ValueError, UnicodeDecodeError, AttributeError):
        return None
    return label if 0 <= label < num_classes else None


class ShardStream(IterableDataset):
    """Webdataset shards as a stream of decoded samples, split by rank and worker (the module docstring
    says how, what is skipped and what a resume guarantees).

    Subclasses define ``_decode(sample, worker)`` (the decoded item, or None after counting the reason
    with ``_count``) and ``SKIP_REASONS``, which must include ``bad_shard``. ``epoch_samples`` is the
    global number of samples per epoch (default: the total of ``sizes.json``). ``batch_size`` is per
    rank, as the loader's. ``shuffle`` shuffles the shard order per epoch and the samples in a
    ``shuffle_buffer``; without it the shards are read in order. ``len()`` is the number of samples
    this rank takes per epoch.
    """

    #: Why a sample is skipped (the keys of :attr:`skipped`).
    SKIP_REASONS: tuple[str, ...] = ("bad_shard",)
    #: The pip extra that brings webdataset, named when it is missing.
    EXTRA = "shards"
    #: How to make smaller shards, for the error when there are fewer shards than workers.
    SMALLER_SHARDS = "write smaller shards (--shard-size)"
    #: The user's name for ``epoch_samples``, for the errors about the epoch length.
    EPOCH_SAMPLES_OPTION = "epoch_samples"

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
        self.urls = expand_shards(data, self.EXTRA)
        self.data = data
        self.sizes, self.classes = read_shard_metadata(self.urls)
        self.world_size = get_world_size() if world_size is None else int(world_size)
        self.rank = get_rank() if rank is None else int(rank)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        if epoch_samples is None:
            if self.sizes is None:
                raise ValueError(
                    f"{data!r}: the epoch length is unknown: set {self.EPOCH_SAMPLES_OPTION}, "
                    f"or put a {SIZES_NAME} beside the shards (the to-shards commands write one)"
                )
            epoch_samples = sum(self.sizes.values())
        self.epoch_samples = int(epoch_samples)
        self.batches = self.epoch_samples // (self.batch_size * self.world_size)  # per rank and epoch
        if self.batches < 1:
            raise ValueError(
                f"epoch_samples={self.epoch_samples} is less than one global batch "
                f"({self.batch_size} x {self.world_size} ranks): lower the batch size or raise "
                f"{self.EPOCH_SAMPLES_OPTION}"
            )
        if self.sizes is not None and self.epoch_samples > sum(self.sizes.values()):
            warnings.warn(
                f"epoch_samples={self.epoch_samples} exceeds the {sum(self.sizes.values())} samples of {data!r}: "
                "samples repeat within an epoch",
                stacklevel=2,
            )
        self.seed, self.shuffle, self.shuffle_buffer = int(seed), bool(shuffle), max(1, int(shuffle_buffer))
        self.num_workers = 0  # set by the loader factory; checked against the shard count
        self.epoch = 0
        self.start_batches = 0
        # One row per worker: each writes only its own, so no two processes add to the same counter.
        self._skipped = torch.zeros(_MAX_WORKERS, len(self.SKIP_REASONS), dtype=torch.long).share_memory_()

    # ------------------------------------------------------------------ state set by the trainer
    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shard order the next iterator follows."""
        self.epoch = int(epoch)

    def start_at(self, batches: int) -> None:
        """Make the next iterator skip this rank's first ``batches`` batches of the epoch (a resume)."""
        self.start_batches = int(batches)

    @property
    def num_classes(self) -> int | None:
        """Number of classes (from ``classes.json``), or None."""
        return None if self.classes is None else len(self.classes)

    @property
    def skipped(self) -> dict[str, int]:
        """Samples skipped so far, by reason (``SKIP_REASONS``), over every worker of this rank."""
        totals = self._skipped.sum(0).tolist()
        return dict(zip(self.SKIP_REASONS, (int(t) for t in totals)))

    def __len__(self) -> int:
        return self.batches * self.batch_size

    def check_workers(self, num_workers: int) -> None:
        """Every global worker needs a shard of its own: ValueError naming the counts otherwise."""
        workers = self.world_size * max(1, num_workers)
        if len(self.urls) < workers:
            raise ValueError(
                f"{len(self.urls)} shard(s) for {self.world_size} rank(s) x {max(1, num_workers)} worker(s): "
                f"each worker reads whole shards, so at least {workers} are needed; lower the number of "
                f"workers or {self.SMALLER_SHARDS}"
            )
        if max(1, num_workers) > _MAX_WORKERS:
            raise ValueError(f"at most {_MAX_WORKERS} data-loader workers, got {num_workers}")
        self.num_workers = int(num_workers)

    # ----------------------------------------------------------------------------- the stream
    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def __iter__(self) -> Iterator[Any]:
        # The epoch and the resume position are read now, not at the first sample: the trainer
        # resets the position right after making the iterator.
        worker, num_workers = self._worker()
        self.check_workers(num_workers if get_worker_info() is not None else 0)
        start = self.start_batches
        # The DataLoader asks its workers in turn, beginning with worker 0. After skipping `start`
        # batches, worker 0 must serve what worker (start mod n) would have served next, and so on.
        role = (worker + start) % num_workers
        return self._stream(worker, role, num_workers, self.epoch, start)

    def _stream(self, worker: int, role: int, num_workers: int, epoch: int, start: int) -> Iterator:
        global_worker, global_workers = self.rank * num_workers + role, self.world_size * num_workers
        order = list(range(len(self.urls)))
        if self.shuffle:
            random.Random(f"{self.seed}-{epoch}").shuffle(order)
        mine = [self.urls[i] for i in order[global_worker::global_workers]]
        quota = _batches_of_worker(self.batches, role, num_workers) * self.batch_size
        skip = _batches_of_worker(start, role, num_workers) * self.batch_size
        rng = random.Random(f"{self.seed}-{epoch}-{global_worker}")
        served = 0
        usable = 0  # samples of the current pass that counted (decoded, or skipped on resume)
        for sample in self._raw_samples(mine, rng, worker):
            if sample is _PASS_END:
                if usable == 0:
                    # Every sample of these shards was rejected: cycling over them again would never end.
                    raise ValueError(
                        f"the shards of worker {worker} ({', '.join(mine[:3])}{', ...' if len(mine) > 3 else ''}) "
                        f"hold no usable sample: skipped so far {self.skipped}; check the shards (and "
                        f"{CLASSES_NAME}: with it, every sample needs a .{LABEL_EXTENSION} label)"
                    )
                usable = 0
                continue
            if served >= quota:
                break
            if served < skip:
                served += 1  # a sample the stopped run already trained on: not decoded again
                usable += 1
                continue
            item = self._decode(sample, worker)
            if item is None:
                continue
            served += 1
            usable += 1
            yield item

    def _raw_samples(self, shards: list[str], rng: random.Random, worker: int) -> Iterator[Any]:
        """This worker's samples as raw bytes, through the shuffle buffer one pass at a time (a pass
        never mixes with the next, so no sample comes twice before all have come once), each pass
        followed by ``_PASS_END``. The shards are read again, in a new order, whenever they run out."""
        while True:
            got = 0
            for sample in self._buffered((s for url in shards for s in self._read_shard(url, worker)), rng):
                got += 1
                yield sample
            if got == 0:
                raise ValueError(f"the shards of worker {worker} ({', '.join(shards[:3])}, ...) hold no samples")
            yield _PASS_END
            shards = list(shards)
            rng.shuffle(shards)

    def _read_shard(self, url: str, worker: int) -> Iterator[dict[str, Any]]:
        """The samples of one shard; a read error ends the shard, counted as ``bad_shard``."""
        tar = require("webdataset.tariterators", self.EXTRA, "webdataset shards")
        group_by_keys, tar_file_expander, url_opener = tar.group_by_keys, tar.tar_file_expander, tar.url_opener

        problem = _truncated(url)
        if problem is not None:
            # tarfile's stream reader may end quietly at a cut: count the shard, keep its whole samples.
            self._count(worker, "bad_shard")
            warnings.warn(f"shard {url}: {problem}; the samples before the cut are used", stacklevel=2)
        try:
            yield from group_by_keys(tar_file_expander(url_opener([{"url": url}])))
        except Exception as exc:  # an unreadable tar: tarfile, OSError, ValueError
            if problem is None:  # a truncated shard is counted once per read, not twice
                self._count(worker, "bad_shard")
            warnings.warn(f"shard {url}: {type(exc).__name__}: {exc}; the rest of it is skipped", stacklevel=2)

    def _buffered(self, samples: Iterable[dict[str, Any]], rng: random.Random) -> Iterator[dict[str, Any]]:
        """Samples through a seeded shuffle buffer (in order without ``shuffle``)."""
        if not self.shuffle or self.shuffle_buffer <= 1:
            yield from samples
            return
        buffer: list[dict[str, Any]] = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                k = rng.randrange(len(buffer))
                buffer[k], buffer[-1] = buffer[-1], buffer[k]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def _count(self, worker: int, reason: str) -> None:
        self._skipped[worker, self.SKIP_REASONS.index(reason)] += 1

    def _decode(self, sample: Mapping[str, Any], worker: int) -> Any | None:
        """The item of a raw sample (``{extension: bytes}``), or None (counted by reason) when it is corrupt."""
        raise NotImplementedError


class OnePass:
    """Mixin for a :class:`ShardStream` subclass: one pass over its shards in order, every sample once
    (evaluation). The workers split the shards, nothing is shuffled or repeated, and ``max_samples``
    (if given) stops the pass early. Rank-local: under torch.distributed every rank that iterates it
    reads every shard. Put it first: ``class Pass(OnePass, MyStream)``."""

    max_samples: int | None

    def _one_pass_init(self, max_samples: int | None) -> dict[str, Any]:
        """Set ``max_samples``; the stream arguments of a one-pass reader."""
        self.max_samples = None if max_samples is None else int(max_samples)
        return dict(batch_size=1, epoch_samples=1, shuffle=False, world_size=1, rank=0)

    def check_workers(self, num_workers: int) -> None:
        # Workers beyond the shard count simply get none; each reads its own shards once.
        self.num_workers = int(num_workers)

    def __len__(self) -> int:
        if self.sizes is None:  # type: ignore[attr-defined]
            raise TypeError("the number of samples is unknown without sizes.json")
        total = sum(self.sizes.values())  # type: ignore[attr-defined]
        return total if self.max_samples is None else min(total, self.max_samples)

    def __iter__(self) -> Iterator[Any]:
        worker, num_workers = self._worker()  # type: ignore[attr-defined]
        limit = None
        if self.max_samples is not None:
            limit = _batches_of_worker(self.max_samples, worker, num_workers)  # an even share per worker
        return self._one_pass(self.urls[worker::num_workers], worker, limit)  # type: ignore[attr-defined]

    def _one_pass(self, shards: list[str], worker: int, limit: int | None) -> Iterator[Any]:
        served = 0
        for url in shards:
            for sample in self._read_shard(url, worker):  # type: ignore[attr-defined]
                if limit is not None and served >= limit:
                    return
                item = self._decode(sample, worker)  # type: ignore[attr-defined]
                if item is not None:
                    served += 1
                    yield item


def write_tar_shards(
    samples: Iterable[Mapping[str, bytes]],
    out_dir: str | os.PathLike,
    shard_size: int = 1000,
    classes: Sequence[str] | None = None,
    overwrite: bool = False,
    extra: str = "shards",
) -> list[Path]:
    """Write samples (``{extension: bytes}``; ``__key__`` optional, else the sample's index) as shards
    ``OUT/00000.tar, ...`` of ``shard_size`` samples, with ``sizes.json`` and (given ``classes``)
    ``classes.json``. Refuses a folder that already holds shards unless ``overwrite``.

    Every shard is written under a temporary name first; only when all are complete are the old
    shards, ``sizes.json`` and ``classes.json`` replaced. An interrupted write leaves the folder as
    it was (plus ``*.tar.tmp`` files, removed by the next write)."""
    TarWriter = require("webdataset", extra, "webdataset shards").TarWriter  # noqa: N806

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob("*.tar"))
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds {len(existing)} shard(s), e.g. {existing[0].name}; pass --overwrite"
        )
    for stale in out.glob("*.tar.tmp"):  # left by an interrupted write
        stale.unlink()
    staged: list[Path] = []
    sizes: dict[str, int] = {}
    writer: Any = None
    count = 0

    def close() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            sizes[staged[-1].with_suffix("").name] = count
            writer = None

    for index, sample in enumerate(samples):
        if writer is None or count >= shard_size:
            close()
            staged.append(out / f"{len(staged):05d}.tar.tmp")
            writer, count = TarWriter(str(staged[-1])), 0
        writer.write({"__key__": f"{index:09d}", **sample})
        count += 1
    close()
    if not staged:
        raise ValueError("no samples to write")
    # All shards are complete: now replace the old ones. sizes.json goes first, so that a folder
    # caught between the two never lists the old counts for the new shards.
    for name in (SIZES_NAME, CLASSES_NAME):
        (out / name).unlink(missing_ok=True)
    written = [path.with_suffix("") for path in staged]
    for path in existing:
        if path not in written:
            path.unlink()
    for tmp, final in zip(staged, written):
        os.replace(tmp, final)
    write_json_atomic(out / SIZES_NAME, sizes)
    if classes is not None:
        write_json_atomic(out / CLASSES_NAME, list(classes))
    return written


def write_json_atomic(path: Path, value: Any) -> None:
    """``value`` as JSON at ``path``, written to a temporary file first and renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1), encoding="utf-8")
    os.replace(tmp, path)
