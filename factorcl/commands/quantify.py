"""``factorcl quantify``: how much of a task's information is shared, unique or synergistic, before training."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quantify`` subcommand."""
    p = subparsers.add_parser(
        "quantify",
        help="measure redundant, unique and synergistic task information (PID) of a dataset",
        description="Estimate the partial information decomposition of I(X1, X2; Y) on one split of a "
        "dataset: redundancy R, information unique to X1 (U1) and to X2 (U2), and synergy S, in bits and as "
        "shares, next to the FactorCL chapter's S = I(X1;X2;Y), U1 = I(X1;Y|X2), U2. Writes quantify.json "
        "and quantify.png and ends with a recommendation. See the README section 'Before training: factorcl "
        "quantify'.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="run config whose data: section names the data (any kind)")
    src.add_argument("--data", help="an .npz / .pt file with x1, x2, y (and optional split, mask1, mask2)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set data.synthetic.unique_ratio=1.0 (repeatable)",
    )
    p.add_argument(
        "--split",
        default="train",
        choices=["train", "valid", "test", "all"],
        help="split to measure (train; a file without a split column is split 80/10/10 at random "
        "first, so train is 80%% of its rows; all: every split together)",
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=["auto", "batch", "cvx"],
        help="estimator: cvx (discretise, exact solver), batch (neural), auto: cvx when both "
        "modalities are 1-D, else batch (default)",
    )
    p.add_argument(
        "--clusters",
        type=int,
        help="cvx: k-means clusters per vector modality (default: at most 20, "
        "and few enough that clusters^2 x classes <= rows / 10)",
    )
    p.add_argument("--bins", type=int, help="cvx: equal-width bins per 1-D modality (default: --clusters)")
    p.add_argument("--bootstrap", type=int, default=20, help="bootstrap draws for the intervals (20; 0: none)")
    p.add_argument(
        "--no-chapter-terms",
        action="store_true",
        help="skip the chapter's S, U1, U2 from I_NCE label critics (saves their training)",
    )
    p.add_argument(
        "--batch-option",
        dest="batch_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="batch: a BatchConfig setting, e.g. --batch-option batch_size=128 --batch-option "
        "align_epochs=20 (repeatable; keys: hidden, layers, embed, batch_size, sinkhorn_iters, "
        "classifier_epochs, patience, align_epochs, lr, weight_decay, eval_fraction)",
    )
    p.add_argument("--max-samples", type=int, help="measure a seeded random subset of this many rows")
    p.add_argument("--out-dir", help="output folder (default: quantify-<data name>)")
    p.add_argument("--overwrite", action="store_true", help="replace quantify.json / .png already in out-dir")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ..config import ConfigError

    try:
        return _run(args)
    except (ConfigError, ValueError, OSError, ImportError, RuntimeError) as exc:
        print(f"factorcl quantify: error: {exc}", file=sys.stderr)
        return 2


def _batch_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings -> BatchConfig keywords (ints, floats as written)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--batch-option must be KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            raise ValueError(f"--batch-option {key}: expected a number, got {value!r}") from None
    return out


def _load(args: argparse.Namespace):
    if args.config:
        from ..config import load_config
        from ..run import build_data

        return build_data(load_config(args.config, args.overrides))
    if args.overrides:
        raise ValueError("--set needs --config (it overrides keys of a run config)")
    from ..data.arrays import load_arrays

    return load_arrays(args.data)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..quantify import estimate
    from ..quantify.coinformation import coinformation_terms
    from ..quantify.estimate import check_samples
    from ..quantify.inputs import split_arrays
    from ..quantify.recommend import recommend
    from ..quantify.report import format_table, write_report

    for name in ("clusters", "bootstrap", "max_samples"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "bootstrap" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be >= {0 if name == 'bootstrap' else 1}, got {value}")
    batch_options = _batch_options(args.batch_options)
    data = _load(args)
    names = ["train", "valid", "test"] if args.split == "all" else [args.split]
    pieces = [split_arrays(data.split(s), s) for s in names if data.split(s) is not None]
    if not pieces:
        raise ValueError(f"the data has no {args.split!r} split; pick another with --split")
    x1, x2, y = (np.concatenate([piece[i] for piece in pieces]) for i in range(3))
    how = pieces[0][3]
    if args.max_samples is not None and args.max_samples < len(y):
        take = np.sort(np.random.default_rng(args.seed).choice(len(y), size=args.max_samples, replace=False))
        x1, x2, y = x1[take], x2[take], y[take]
    a1, a2, labels, _ = check_samples(x1, x2, y)
    method = args.method
    if method == "auto":
        method = "cvx" if a1.shape[1] == 1 and a2.shape[1] == 1 else "batch"
    out_dir = Path(args.out_dir or f"quantify-{data.name}")
    existing = [p for p in (out_dir / "quantify.json", out_dir / "quantify.png") if p.exists()]
    if existing and not args.overwrite:
        raise ValueError(f"{existing[0]} already exists; pass --overwrite to replace it or pick another --out-dir")
    start = time.perf_counter()
    if not args.quiet:
        print(f"factorcl quantify: {data.name}, {args.split} split, {len(labels)} rows; {how}; method {method}")
    pid = estimate(
        a1,
        a2,
        labels,
        method=method,
        clusters=args.clusters,
        bins=args.bins,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
        batch=batch_options,
    )
    paper = None
    if not args.no_chapter_terms:
        paper = coinformation_terms(a1, a2, labels, device=args.device, seed=args.seed, progress=not args.quiet)
    advice = recommend(pid)
    print(format_table(pid, paper))
    print()
    print(advice)
    record = {
        "data": data.name,
        "modalities": list(data.modalities),
        "split": args.split,
        "rows": int(len(labels)),
        "inputs": how,
        "method": method,
        "pid": pid.to_dict(),
        "chapter_terms": paper,
        "recommendation": advice,
        "seconds": time.perf_counter() - start,
        "title": f"{data.name} ({args.split}): PID of I(X1,X2;Y) = {pid.total:.3f} bits ({method.upper()})",
    }
    paths = write_report(out_dir, record, pid, paper)
    print(f"wrote {paths['json']} and {paths['png']}")
    return 0
