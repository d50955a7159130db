"""``factorcl synthetic``: the shared/unique benchmark on built-in data (the README quickstart).

Launched by ``torchrun`` it trains every model with DDP across the processes and rank 0 probes,
prints and writes the results (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synthetic",
        help="FactorCL vs standard contrastive learning on synthetic shared/unique data",
        description="Train FactorCL and baselines on synthetic data whose labels mix shared and unique "
        "information, linear-probe them across unique_ratio, and probe their MI with the latents. With no "
        "flags: a reduced sweep (a few minutes on a laptop CPU); --full runs the whole benchmark.",
    )
    p.add_argument(
        "--full", action="store_true", help="the full sweep: 6 ratios, 3 seeds, all methods incl. the concat critic"
    )
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (each one a new dataset and initialisation)")
    p.add_argument("--ratios", type=float, nargs="+", help="unique_ratio values in [0, 1]")
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD[:concat]",
        help="methods, e.g. factorcl-ssl factorcl-ssl:concat simclr cross+self factorcl-sup supcon",
    )
    p.add_argument("--ourcl", action="store_true", help="add the OurCL-SSL / OurCL-SUP ablations (no factorisation)")
    p.add_argument("--epochs", type=int, help="training epochs per model")
    p.add_argument("--samples", type=int, help="dataset size (70/10/20 train/val/test)")
    p.add_argument(
        "--label",
        choices=["linear", "nonlinear", "synergy"],
        help="label function (default linear; synergy: XOR of w_1 and w_2 directions, ignores the ratio)",
    )
    p.add_argument("--transform", choices=["linear", "nonlinear"], help="latent-to-input transform (default linear)")
    p.add_argument(
        "--ssl-conditioning",
        choices=["sampled", "chain", "concat"],
        help="how SSL methods condition on the views: sampled (default; negatives from a learned "
        "q(z2 | views)), chain or concat (the paper's critic)",
    )
    p.add_argument("--no-mi-probe", action="store_true", help="skip the MI probing table")
    p.add_argument("--mi-steps", type=int, help="training steps of each MI-probing critic")
    p.add_argument("--batch-size", type=int, help="batch size (per process under torchrun; default 256)")
    p.add_argument(
        "--concat-critic-hidden",
        type=int,
        help="width of the concat critics (default 64, to keep a CPU sweep short; 256 is much "
        "more accurate and about 12x slower)",
    )
    p.add_argument(
        "--set",
        dest="model_settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a FactorCL setting of every model (repeatable), e.g. --set aux_critic_hidden=null "
        "--set critic_hidden=512",
    )
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--work-dir", help="keep each model's checkpoint in WORK_DIR/<seed>/<method>[/<ratio>]")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the runs found in --work-dir (finished runs are loaded, not retrained)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the runs found in --work-dir")
    # Stops the sweep after N steps of a run, as if interrupted (for testing --resume).
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", default="factorcl_synthetic/results.json", help="JSON results path")
    p.add_argument("--plot", default=None, help="PNG path (default: accuracy.png beside --out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorcl import distributed

    if args.resume and not args.work_dir:
        print("factorcl synthetic: error: --resume needs --work-dir (where the runs' checkpoints are)", file=sys.stderr)
        return 2
    # Under torchrun: join the process group. Rank 0 probes each model while the other ranks wait
    # in the next run's first collective, hence a timeout longer than the default.
    with distributed.distributed_session(timeout=datetime.timedelta(hours=2)):
        try:
            return _run(args)
        except ValueError as exc:  # e.g. resuming with another number of processes
            print(f"factorcl synthetic: error: {exc}", file=sys.stderr)
            return 2


#: Settings each method spec of the sweep sets itself.
_PER_SPEC = {
    "method": "the methods come from --methods",
    "critic": "the critic comes from each method spec (METHOD:concat for the concat critic)",
    "conditioning": "the conditioning comes from --ssl-conditioning (SSL) and the benchmark's default (SUP)",
}


def _model_settings(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as FactorCL settings (YAML values: 128, null, true, concat)."""
    from factorcl.model_config import FactorCLConfig

    names = FactorCLConfig.field_names()
    out: dict[str, Any] = {}
    for text in items:
        key, sep, raw = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set {text!r} must look like KEY=VALUE (e.g. --set aux_critic_hidden=null)")
        if key in _PER_SPEC:
            raise ValueError(f"--set {key}: {_PER_SPEC[key]}")
        if key not in names:
            raise ValueError(f"--set {key!r} is not a FactorCL setting; the settings are {list(names)}")
        out[key] = yaml.safe_load(raw) if raw.strip() else None
    return out


def _run(args: argparse.Namespace) -> int:
    from factorcl import distributed
    from factorcl.experiments import synthetic as syn

    main = distributed.is_main_process()
    settings = _model_settings(args.model_settings)
    methods = tuple(args.methods) if args.methods else None
    if args.ourcl:
        base = methods or (syn.FULL_METHODS if args.full else syn.QUICK["methods"])
        methods = tuple(base) + syn.OURCL_METHODS
    cfg = syn.config_from(
        quick=not args.full,
        seeds=tuple(args.seeds) if args.seeds else None,
        ratios=tuple(args.ratios) if args.ratios else None,
        methods=methods,
        epochs=args.epochs,
        num_samples=args.samples,
        label=args.label,
        transform=args.transform,
        mi_probe=False if args.no_mi_probe else None,
        mi_steps=args.mi_steps,
        ssl_conditioning=args.ssl_conditioning,
        device=args.device,
        batch_size=args.batch_size,
        concat_critic_hidden=args.concat_critic_hidden,
        work_dir=args.work_dir,
        resume=args.resume or None,
        overwrite=args.overwrite,
        stop_after=args.stop_after,
    )
    if settings:
        cfg = replace(cfg, model=cfg.model.replace(**settings))
    mode = "full sweep" if args.full else "quick sweep (--full for the whole benchmark)"
    world = distributed.get_world_size()
    if main:
        procs = f"; {world} processes, global batch {world} x {cfg.batch_size}" if world > 1 else ""
        print(
            f"factorcl synthetic: {mode}; methods {', '.join(syn.display_name(m) for m in cfg.methods)}; "
            f"ratios {', '.join(f'{r:g}' for r in cfg.ratios)}; seeds {', '.join(map(str, cfg.seeds))}{procs}"
        )
    results = syn.run_synthetic_benchmark(cfg)
    if main:
        _report(args, cfg, results)
    # Every rank leaves the process group together: a rank that tears its group down while rank 0
    # still probes and writes can abort in gloo's teardown ("terminate called without an active
    # exception").
    distributed.barrier()
    return 0


def _report(args: argparse.Namespace, cfg: Any, results: Any) -> None:
    """Rank 0: the tables, the claims, the JSON and the plot (or where an interrupted sweep stopped)."""
    from factorcl.experiments import synthetic as syn
    from factorcl.jsonio import write_json

    if results.interrupted:
        print(
            f"stopped after {cfg.stop_after} steps of a run (--stop-after); continue with --resume "
            f"--work-dir {cfg.work_dir}"
        )
        return
    print()
    print(syn.format_accuracy_table(results))
    print()
    print(syn.format_mi_table(results))
    print()
    print(syn.format_r2_table(results))
    print()
    print(syn.format_claims(results))
    out = write_json(args.out, results.to_json())
    plot = syn.plot_accuracy(results, args.plot or Path(args.out).with_name("accuracy.png"))
    print(f"\nfinished in {results.wall_seconds:.0f} s on {results.config['device']}")
    print(f"results: {out.resolve()}\nplot:    {plot.resolve()}")
