"""``factorcl probe --run DIR`` (or ``--checkpoint FILE``): re-run the linear-probe evaluation of a trained run."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``probe`` subcommand."""
    p = subparsers.add_parser(
        "probe",
        help="re-evaluate a run of 'factorcl train' (linear probe on the test split)",
        description="Rebuild the model from the config.yaml beside a checkpoint written by 'factorcl train', load "
        "its weights and re-run the linear probe (train features, L2 chosen on valid, accuracy on test; "
        "also S/U1/U2). Writes probe_results.json into the run folder (or --out).",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--checkpoint", help="checkpoint.pt of a run (config.yaml must be beside it)")
    where.add_argument("--run", help="run folder (holds config.yaml and checkpoint.pt)")
    p.add_argument("--device", help="device for feature extraction: auto, cpu, cuda, ...")
    p.add_argument("--out", help="write the results JSON here instead of RUN/probe_results.json")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the saved config, e.g. data.path=/new/place/mosi_raw.pkl or probe.ablation=false",
    )
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..run import format_probe, probe_run

    try:
        results = probe_run(args.checkpoint or args.run, device=args.device, out=args.out, overrides=args.overrides)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"factorcl probe: error: {exc}", file=sys.stderr)
        return 2
    print(f"{results['method']} on {results['dataset']} ({results['checkpoint']}): {results['protocol']}")
    print(format_probe(results["probe"]))
    return 0
