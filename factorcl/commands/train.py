"""``factorcl train --config run.yaml``: pretrain from a run config, then linear-probe on the test split."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train",
        help="pretrain on real or generated data from a run config, then linear-probe",
        description="Pretrain FactorCL (or a baseline) as a run config says (data, encoders, method, critic, "
        "trainer), then fit a linear probe on the train split's features (L2 chosen on valid) and score "
        "it on the test split, also on the S/U1/U2 parts. Writes config.yaml, checkpoint.pt, "
        "metrics.csv and results.json into out_dir. See the README section 'Real multimodal data'.",
    )
    p.add_argument("--config", required=True, help="run config (YAML or JSON)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=5 --set model.method=simclr (repeatable)",
    )
    p.add_argument("--out-dir", help="output folder (overrides out_dir)")
    p.add_argument("--device", help="training device (overrides train.device): auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--epochs", type=int, help="overrides train.epochs")
    p.add_argument("--resume", action="store_true", help="resume from out_dir/checkpoint.pt when it exists")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in out_dir (without it, train refuses to touch one)",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept a changed schedule (lr, epochs, batch size, seed, ...); the change is "
        "recorded in results.json and config.resumed-N.yaml, config.yaml is kept",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="every N steps: a k-NN probe of the representation on the valid split (out_dir/eval.csv)",
    )
    p.add_argument("--eval-samples", type=int, default=1000, help="rows of each --eval-every evaluation")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (train.compile: true)")
    p.add_argument("--wandb-project", help="also log to this Weights & Biases project (train.wandb_project)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..run import format_probe, run_config
    from ..train import NonFiniteLossError

    overrides = list(args.overrides)
    if args.out_dir:
        overrides.append(f"out_dir={args.out_dir}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.resume:
        overrides.append("train.resume=auto")
    if args.overwrite:
        overrides.append("train.overwrite=true")
    if args.allow_config_change:
        overrides.append("train.allow_config_change=true")
    if args.quiet:
        overrides.append("train.progress=false")
    if args.compile:
        overrides.append("train.compile=true")
    if args.wandb_project:
        overrides.append(f"train.wandb_project={args.wandb_project}")
    from ..distributed import distributed_session, is_main_process

    with distributed_session():  # under torchrun: every rank trains, rank 0 evaluates and writes
        try:
            results = run_config(
                args.config,
                overrides,
                verbose=is_main_process(),
                eval_every=args.eval_every,
                eval_samples=args.eval_samples,
            )
        except (ConfigError, ValueError, OSError, NonFiniteLossError) as exc:
            print(f"factorcl train: error: {exc}", file=sys.stderr)
            return 2
    if not is_main_process() or results is None:
        return 0
    if results["probe"]:
        print(format_probe(results["probe"]))
    elif results.get("note"):
        print(results["note"])
    from pathlib import Path

    print(f"results: {Path(results['config']).parent / 'results.json'}  checkpoint: {results['checkpoint']}")
    return 0
