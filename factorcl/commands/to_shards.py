"""``factorcl to-shards DATA OUT_DIR``: write paired arrays as webdataset shards for ``data.kind: shards``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``to-shards`` subcommand."""
    p = subparsers.add_parser(
        "to-shards",
        help="convert paired arrays (.npz/.pt, or a run config's data) into webdataset shards",
        description="Write each split of paired data as webdataset shards OUT_DIR/{train,valid,test}/00000.tar, "
        "... (KEY.x1.npy + KEY.x2.npy [+ KEY.mask1.npy, KEY.mask2.npy] [+ KEY.cls]), with sizes.json and, for "
        "labelled data, classes.json. DATA is a .npz/.pt file (split by its 'split' array, else at random with "
        "--splits and --split-seed, as data.kind arrays does) or a run config whose data section says what to "
        "load (any data.kind). Train on them with data: {kind: shards, path: OUT_DIR}.",
    )
    p.add_argument("data", metavar="DATA", help="a .npz/.pt file of x1, x2 (y, mask1, mask2, split), or a run config")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder for the train/, valid/, test/ shard folders")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--overwrite", action="store_true", help="replace shards already in OUT_DIR")
    p.add_argument(
        "--no-shuffle",
        action="store_true",
        help="keep each split's row order (default: shuffle the rows, seeded, so that no shard is one class)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the row shuffle (default 0)")
    p.add_argument(
        "--splits",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VALID", "TEST"),
        help="fractions of a .npz/.pt file without a 'split' array (default 0.8 0.1 0.1)",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of that random split (default 0)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ..config import ConfigError

    try:
        data = _load(args)
        from ..data.shards import arrays_to_shards

        written = arrays_to_shards(
            data,
            args.out_dir,
            shard_size=args.shard_size,
            shuffle=not args.no_shuffle,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except (ConfigError, ValueError, OSError) as exc:
        print(f"factorcl to-shards: error: {exc}", file=sys.stderr)
        return 2
    for split, paths in written.items():
        rows = len(data.split(split))
        print(f"{split}: {rows} rows in {len(paths)} shard(s) under {Path(args.out_dir) / split}")
    print(f"train on them with: data: {{kind: shards, path: {args.out_dir}}}")
    return 0


def _load(args: argparse.Namespace):  # noqa: ANN202 (a SplitDataset)
    path = Path(args.data)
    if path.suffix.lower() in CONFIG_SUFFIXES:
        from ..config import load_config
        from ..run import build_data

        config = load_config(path)
        if config.data.kind == "shards":
            raise ValueError(f"{path}: its data is shards already (data.kind: shards)")
        return build_data(config)
    from ..data.arrays import load_arrays

    return load_arrays(path, splits=args.splits, seed=args.split_seed)
