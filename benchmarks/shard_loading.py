"""Data loading for CLIP continued pretraining: webdataset shards against the CSV loader.

1. **Rate.** Images per second through the training loader, decoding and preprocessing included
   (resize and centre crop to ``--image-size``, the model's input; caption tokenizing), for
   ``--workers`` data-loader workers. The same generated pairs are read both ways: a CSV with one
   PNG file per image (:class:`factorcl.clip.ImageCaptionDataset`) and shards of the same PNG
   bytes (:class:`factorcl.clip.ShardDataset`). One warm-up epoch first; the median of
   ``--repeats`` whole epochs is reported.
2. **Memory.** In a fresh process per loader: how much the main process's unique memory (USS, from
   ``/proc/PID/smaps_rollup``) grew from loading the dataset to 20 batches in, and each worker's
   USS then, for datasets of ``--rows`` rows. A CSV dataset holds one Python
   record per row, and each worker's touches of those objects copy the pages they live on; the
   shard dataset holds the list of shard names only. The CSV rows point at a few hundred distinct
   image files, so that a 100,000-row file can be made in seconds; the shards hold every sample.

Linux only for the memory part (it reads /proc). Usage:
``python benchmarks/shard_loading.py [--quick] [--workers 0 1 2] [--rows 10000 100000] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from factorcl.clip import ImageCaptionDataset, make_loader, tiny_config, write_demo_dataset
from factorcl.clip.data import image_transform
from factorcl.clip.loading import load_clip
from factorcl.clip.shards import ShardDataset, make_shard_loader, write_shards


def _smaps_mb(pid: int, fields: tuple[str, ...]) -> float | None:
    """The sum of ``fields`` of ``/proc/PID/smaps_rollup`` in MiB, or None off Linux."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    return sum(int(line.split()[1]) for line in text.splitlines() if line.split(":")[0] in fields) / 1024


def _uss_mb(pid: int) -> float | None:
    """Unique set size of a process in MiB: the pages no other process shares (a worker's own copies)."""
    return _smaps_mb(pid, ("Private_Clean", "Private_Dirty"))


def _rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB (shared pages included: after a fork they stop being private)."""
    return _smaps_mb(pid, ("Rss",))


def _worker_pids(iterator: Any) -> list[int]:
    return [w.pid for w in getattr(iterator, "_workers", [])]


def write_data(folder: Path, n: int, distinct: int, image_size: int) -> tuple[Path, Path]:
    """(CSV of ``n`` rows over ``distinct`` generated PNG files, folder of shards of the same ``n`` samples)."""
    demo = write_demo_dataset(folder / "demo", n=distinct, seed=0, image_size=image_size)
    with demo.open(newline="") as f:
        rows = list(csv.DictReader(f))
    big = folder / "demo" / f"captions_{n}.csv"
    with big.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "caption", "label"])
        w.writeheader()
        for i in range(n):
            r = rows[i % distinct]
            w.writerow({"image": r["image"], "caption": r["caption"], "label": r["label"]})
    images = {r["image"]: (folder / "demo" / r["image"]).read_bytes() for r in rows}
    classes = sorted({r["label"] for r in rows})
    samples = (
        (
            images[rows[i % distinct]["image"]],
            "png",
            rows[i % distinct]["caption"],
            classes.index(rows[i % distinct]["label"]),
        )
        for i in range(n)
    )
    shards = folder / f"shards_{n}"
    write_shards(samples, shards, shard_size=1000, classes=classes, overwrite=True)
    return big, shards


def loaders(csv_path: Path, shards: Path, bundle: Any, batch: int, workers: int, size: int) -> dict[str, Any]:
    cfg = {**bundle.preprocess_cfg, "size": size}
    csv_set = ImageCaptionDataset(csv_path, cfg)
    shard_set = ShardDataset(shards, image_transform(cfg), batch_size=batch, seed=0)
    return {
        "csv": make_loader(csv_set, bundle.tokenizer, batch, shuffle=True, num_workers=workers, pin_memory=False),
        "shards": make_shard_loader(shard_set, bundle.tokenizer, num_workers=workers, pin_memory=False),
    }


def rate(loader: Any, repeats: int) -> float:
    """Images per second over whole epochs (median of ``repeats``, after one warm-up epoch).

    Whole epochs: the shard stream fills its shuffle buffer before the first batch, which a few
    batches would overweight."""
    results = []
    for r in range(repeats + 1):
        start, images = time.perf_counter(), 0
        for batch in loader:
            images += len(batch["x2"])
        if r:  # the first pass starts the workers and fills the page cache
            results.append(images / (time.perf_counter() - start))
    return statistics.median(results)


def memory(loader: Any, batches: int = 20) -> dict[str, Any]:
    """USS of this process and of each worker after ``batches`` batches of ``loader``."""
    iterator = iter(loader)
    for _ in range(batches):
        next(iterator)
    workers = [_uss_mb(pid) for pid in _worker_pids(iterator)]
    out = {"main_rss_mb": _rss_mb(os.getpid()), "worker_uss_mb": workers}
    del iterator
    return out


def _memory_child(kind: str, csv_path: str, shards: str, workers: int, batch: int) -> None:
    """In a fresh process: the one loader's memory, printed as JSON (the parent reads it)."""
    torch.set_num_threads(1)
    bundle = load_clip(config=tiny_config(), name="factorcl-tiny")
    before = _rss_mb(os.getpid())
    cfg = {**bundle.preprocess_cfg, "size": 64}
    if kind == "csv":
        loader = make_loader(ImageCaptionDataset(csv_path, cfg), bundle.tokenizer, batch, num_workers=workers)
    else:
        dataset = ShardDataset(shards, image_transform(cfg), batch_size=batch, seed=0)
        loader = make_shard_loader(dataset, bundle.tokenizer, num_workers=workers, pin_memory=False)
    m = memory(loader)
    print(json.dumps({**m, "main_before_rss_mb": before}))


def measure_memory(kind: str, csv_path: Path, shards: Path, workers: int, batch: int) -> dict[str, Any]:
    code = subprocess.run(
        [sys.executable, __file__, "--memory-child", kind, str(csv_path), str(shards), str(workers), str(batch)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(code.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", type=int, nargs="+", default=[10000, 100000], help="dataset sizes of the memory part")
    p.add_argument("--rate-rows", type=int, default=4000, help="dataset size of the rate part")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224, help="the model's input size (crop)")
    p.add_argument("--source-size", type=int, default=256, help="size of the generated images")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--out", help="write the results JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.workers, args.rows, args.rate_rows, args.repeats = [0, 1], [400, 1600], 256, 1
        args.image_size, args.source_size, args.batch_size = 64, 64, 16
    torch.set_num_threads(args.threads)
    bundle = load_clip(config=tiny_config(), name="factorcl-tiny")
    folder = Path(tempfile.mkdtemp(prefix="factorcl-shard-bench-"))
    results: dict[str, Any] = {"settings": vars(args), "rate": [], "memory": []}
    try:
        csv_path, shards = write_data(folder, args.rate_rows, min(300, args.rate_rows), args.source_size)
        print(f"Loading rate (images/s), {args.rate_rows} pairs of {args.source_size}px PNGs -> {args.image_size}px, "
              f"batch {args.batch_size}, {os.cpu_count()} CPU cores")  # fmt: skip
        print(f"{'workers':>8} {'csv':>10} {'shards':>10} {'shards / csv':>13}")
        for workers in args.workers:
            ld = loaders(csv_path, shards, bundle, args.batch_size, workers, args.image_size)
            r_csv, r_shards = (rate(ld[k], args.repeats) for k in ("csv", "shards"))
            results["rate"].append({"workers": workers, "csv": r_csv, "shards": r_shards})
            print(f"{workers:>8} {r_csv:>10.1f} {r_shards:>10.1f} {r_shards / r_csv:>12.2f}x")
        mem_workers = max(1, max(args.workers))
        print(f"\nUnique memory (MiB) after 20 batches, {mem_workers} worker(s)")
        print(f"{'rows':>8} {'loader':>7} {'main (+data)':>14} {'per worker':>11}")
        for n in args.rows:
            csv_path, shards = write_data(folder / f"m{n}", n, min(300, n), 64)
            for kind in ("csv", "shards"):
                m = measure_memory(kind, csv_path, shards, mem_workers, args.batch_size)
                ws = [w for w in m["worker_uss_mb"] if w is not None]
                per = statistics.mean(ws) if ws else float("nan")
                grown = (m["main_rss_mb"] or float("nan")) - (m["main_before_rss_mb"] or float("nan"))
                results["memory"].append({"rows": n, "loader": kind, **m})
                print(f"{n:>8} {kind:>7} {grown:>14.1f} {per:>11.1f}")
            shutil.rmtree(folder / f"m{n}", ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
