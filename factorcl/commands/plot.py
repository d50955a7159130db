"""``factorcl plot RUN_DIR``: draw a training run's metrics (every term's estimate, the losses, lr, evaluations)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plot`` subcommand."""
    p = subparsers.add_parser(
        "plot",
        help="draw a run's metrics.csv (and eval.csv) as a PNG",
        description="Draw the per-step metrics of a run of 'factorcl train' or 'factorcl clip train' (its "
        "metrics.csv, and eval.csv when there is one): the loss, each term's estimate with its bracket "
        "diagnostic, critic_loss, lr, and the evaluation metrics, one panel per quantity. Writes "
        "training.png beside metrics.csv (or --out), replacing an earlier one.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder (holds metrics.csv, or train/metrics.csv)")
    p.add_argument("--out", metavar="FILE.png", help="write the figure here instead of beside metrics.csv")
    p.add_argument(
        "--columns",
        nargs="+",
        metavar="COLUMN",
        help="plot only these columns, e.g. loss shared_keep eval/knn_top1",
    )
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ..plot import plot_run

    try:
        path = plot_run(args.run_dir, out=args.out, columns=args.columns)
    except (ValueError, OSError) as exc:
        print(f"factorcl plot: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
