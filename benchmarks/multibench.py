"""Table 4.2 protocol: every method on MultiBench's real datasets, test accuracy of a linear probe.

For each dataset x method x seed this runs :func:`factorcl.run.run_config`: pretrain on the train
split, freeze, fit a linear probe on the train split's features (L2 chosen on the valid split),
score it on the test split. Factorised methods are also probed on S, U1 and U2 alone (Table 4.4).
Printed: a methods x datasets table of test accuracy (mean ± std over seeds, %), the S/U1/U2
ablation, and the paper's numbers beside them; ``--out`` writes everything as JSON.

Data (``--data-dir``), under MultiBench's file names (``--file NAME=PATH`` overrides one):

=========  ======================================  ========================================
dataset    file                                    X1, X2 (encoders)
=========  ======================================  ========================================
mimic      ``im.pk``                               static [5] (MLP), time series [24, 12] (GRU);
                                                   6-class mortality (MultiBench task -1)
mosei      ``mosei_raw.pkl`` / ``mosei_senti_data.pkl``  vision, text (Transformers, padding mask)
mosi       ``mosi_raw.pkl`` / ``mosi_data.pkl``    vision, text
humor      ``humor.pkl`` (UR-FUNNY)                vision, text
sarcasm    ``sarcasm.pkl`` (MUStARD)               vision, text
=========  ======================================  ========================================

Datasets whose file is missing are skipped with a line saying so. Settings follow the published
code: Transformers with d_model 40, 5 heads, 5 layers (MultiBench's), 40-d heads, the concat
critic with 512 hidden units, lr 1e-4, batch 128, 100 epochs, one critic step per step. The
conditional terms use the library's default conditioning unless ``--conditioning`` says otherwise
(``concat`` is what the published code does).
``--quick`` runs the whole protocol in seconds on small generated files in exactly these formats
(tiny models, one epoch): a smoke test, not a result.

Usage::

    python benchmarks/multibench.py --data-dir data/multibench --seeds 0 1 2 --out multibench.json
    python benchmarks/multibench.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factorcl.data import mimic, multibench

if __package__:  # imported as benchmarks.multibench (see benchmarks/__init__.py)
    from . import _common
else:  # run as python benchmarks/multibench.py: this folder is sys.path[0]
    import _common

DATASETS = ("mimic", "mosei", "mosi", "humor", "sarcasm")  # the table's column order
COLUMN = {"mimic": "MIMIC", "mosei": "MOSEI", "mosi": "MOSI", "humor": "UR-FUNNY", "sarcasm": "MUSTARD"}
METHODS = (
    "simclr",
    "cross+self",
    "cross+self+fact",
    "ourcl-ssl",
    "factorcl-ssl",
    "supcon",
    "ourcl-sup",
    "factorcl-sup",
)
# The file names MultiBench ships each dataset under (first match in --data-dir wins).
FILE_NAMES = {"mimic": (mimic.FILE_NAME,), **multibench.FILE_NAMES}

#: Table 4.2 of the paper (test accuracy, %).
PAPER: dict[str, dict[str, float]] = {
    "simclr": {"mimic": 66.67, "mosei": 71.03, "mosi": 46.21, "humor": 50.09, "sarcasm": 53.48},
    "cross+self": {"mimic": 65.20, "mosei": 71.04, "mosi": 46.92, "humor": 56.52, "sarcasm": 53.91},
    "cross+self+fact": {"mimic": 65.49, "mosei": 71.07, "mosi": 52.37, "humor": 59.91, "sarcasm": 53.91},
    "ourcl-ssl": {"mimic": 65.22, "mosei": 71.16, "mosi": 48.98, "humor": 58.79, "sarcasm": 53.98},
    "factorcl-ssl": {"mimic": 67.34, "mosei": 74.88, "mosi": 52.91, "humor": 60.50, "sarcasm": 55.80},
    "supcon": {"mimic": 67.37, "mosei": 72.71, "mosi": 47.23, "humor": 50.98, "sarcasm": 52.75},
    "ourcl-sup": {"mimic": 68.16, "mosei": 71.15, "mosi": 65.32, "humor": 58.32, "sarcasm": 65.05},
    "factorcl-sup": {"mimic": 76.79, "mosei": 77.34, "mosi": 70.69, "humor": 63.52, "sarcasm": 69.86},
}
#: Table 4.4 (FactorCL-SUP probed on parts of its representation, %).
PAPER_ABLATION: dict[str, dict[str, float]] = {
    "S": {"mimic": 63.77, "mosei": 77.17, "mosi": 70.12, "humor": 63.42, "sarcasm": 57.25},
    "U1": {"mimic": 55.90, "mosei": 77.06, "mosi": 70.11, "humor": 62.00, "sarcasm": 59.42},
    "U2": {"mimic": 69.08, "mosei": 71.01, "mosi": 52.33, "humor": 54.35, "sarcasm": 53.62},
}
FACTORISED = ("cross+self+fact", "factorcl-ssl", "factorcl-sup")


def find_file(folder: Path, dataset: str) -> Path | None:
    """The first of the dataset's MultiBench file names present in ``folder``."""
    for name in FILE_NAMES[dataset]:
        if (folder / name).is_file():
            return folder / name
    return None


def protocol_config(
    dataset: str,
    method: str,
    path: Path,
    seed: int,
    epochs: int,
    device: str,
    out_dir: Path,
    quick: bool = False,
    progress: bool = False,
    conditioning: str | None = None,
) -> dict[str, Any]:
    """The run config of one cell of Table 4.2 (``quick``: tiny models for smoke tests)."""
    if quick:
        seq = {"type": "transformer", "d_model": 8, "heads": 2, "layers": 1, "ff_dim": 16, "out_dim": 8}
        width, hidden, lr, batch, grid = 8, 32, 1e-3, 16, [1e-2]
    else:
        seq = {"type": "transformer", "d_model": 40, "heads": 5, "layers": 5, "ff_dim": 2048, "out_dim": 40}
        width, hidden, lr, batch, grid = 40, 512, 1e-4, 128, [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 0.0]
    if dataset == "mimic":
        data = {"kind": "mimic", "path": str(path), "task": "mortality"}
        encoders = {
            "x1": {"type": "mlp", "hidden": 2 * width, "layers": 1, "out_dim": width},
            "x2": {"type": "gru", "hidden": width, "out_dim": width},
        }
    else:
        data = {"kind": "multibench", "path": str(path), "dataset": dataset, "modalities": ["vision", "text"]}
        encoders = {"x1": dict(seq), "x2": dict(seq)}
    return {
        "data": data,
        "encoders": encoders,
        "model": {
            "method": method,
            "critic": "concat",
            "embed_dim": width,
            "critic_hidden": hidden,
            "augment1": "auto",
            "conditioning": _conditioning(method, conditioning),
        },
        "train": {
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch,
            "critic_steps": 1,
            "seed": seed,
            "device": device,
            "progress": progress,
            "tensorboard": False,
        },
        "probe": {"select": "valid", "l2_grid": grid, "ablation": method in FACTORISED},
        "out_dir": str(out_dir),
    }


def _conditioning(method: str, choice: str | None) -> str | None:
    """``--conditioning`` applies to the methods whose conditional terms take that kind of condition."""
    from factorcl.objectives import get_objective

    obj = get_objective(method)
    if choice is None or not (obj.terms & {"shared_remove", "unique_cond_keep"}):
        return None
    allowed = ("grouped", "concat", "chain") if obj.supervised else ("concat", "chain")
    return choice if choice in allowed else None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(values: Sequence[float], n_seeds: int) -> str:
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n_seeds > 1 else "")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, help="folder with MultiBench's files (im.pk, mosi_raw.pkl, ...)")
    p.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="DATASET=PATH",
        help="use PATH for DATASET instead of its file in --data-dir (repeatable)",
    )
    p.add_argument(
        "--methods", nargs="+", default=list(METHODS), help=f"methods (default: the table's rows {list(METHODS)})"
    )
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), help=f"datasets (default: {list(DATASETS)})")
    p.add_argument("--epochs", type=int, help="pretraining epochs (default 100; 1 with --quick)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument(
        "--work-dir", type=Path, help="run folders go here (default runs/multibench; a temporary folder with --quick)"
    )
    p.add_argument("--out", type=Path, help="write all results as JSON here")
    p.add_argument(
        "--quick", action="store_true", help="small generated files in the real formats, tiny models, 1 epoch"
    )
    p.add_argument(
        "--conditioning",
        choices=("chain", "concat", "grouped"),
        help="how conditional terms condition on C (default: the library's; 'concat' is the published "
        "code's; 'grouped' applies to SUP methods only)",
    )
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    args = p.parse_args(argv)
    from factorcl.data.multibench import ALIASES
    from factorcl.objectives import get_objective

    try:
        args.methods = [get_objective(m).name for m in args.methods]
    except ValueError as exc:
        p.error(f"--methods: {exc}")
    datasets = []
    for d in args.datasets:
        key = "mimic" if d.lower() == "mimic" else ALIASES.get(d.lower())
        if key is None:
            p.error(f"--datasets: unknown dataset {d!r}; choose from {list(DATASETS)} (or ur-funny, mustard)")
        datasets.append(key)
    args.datasets = datasets
    files = {}
    for item in args.file:
        name, sep, path = item.partition("=")
        key = "mimic" if name.lower() == "mimic" else ALIASES.get(name.lower())
        if not sep or key is None:
            p.error(f"--file must be DATASET=PATH with DATASET in {list(DATASETS)}, got {item!r}")
        files[key] = Path(path)
    args.files = files
    if not args.quick and args.data_dir is None and not files:
        p.error("give --data-dir (a folder with MultiBench's files), --file DATASET=PATH, or --quick")
    if args.epochs is None:
        args.epochs = 1 if args.quick else 100
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the protocol; prints the tables, writes ``--out``; returns 0 (1 when a run failed)."""
    args = parse_args(argv)
    from factorcl.run import run_config

    tmp = None
    if args.work_dir is None:
        if args.quick:
            tmp = tempfile.TemporaryDirectory(prefix="factorcl-multibench-")
            args.work_dir = Path(tmp.name)
        else:
            args.work_dir = Path("runs/multibench")
    try:
        if args.quick:
            from factorcl.data.fake import write_fake_multibench_folder

            data_dir = args.work_dir / "fake_data"
            write_fake_multibench_folder(data_dir, sizes=(40, 12, 12), mimic_rows=80)
        else:
            data_dir = args.data_dir
        paths: dict[str, Path] = {}
        skipped: dict[str, str] = {}
        for d in args.datasets:
            path = args.files.get(d) or (find_file(data_dir, d) if data_dir is not None else None)
            if path is None or not Path(path).is_file():
                where = str(path) if path else f"{' or '.join(FILE_NAMES[d])} in {data_dir}"
                skipped[d] = f"file not found: {where}"
                print(f"{COLUMN[d]}: skipped ({skipped[d]})")
                continue
            paths[d] = Path(path)

        records: list[dict[str, Any]] = []
        failed = 0
        start = time.perf_counter()
        for d, path in paths.items():
            for method in args.methods:
                for seed in args.seeds:
                    out_dir = args.work_dir / d / method.replace("+", "_") / f"seed{seed}"
                    cfg = protocol_config(
                        d,
                        method,
                        path,
                        seed,
                        args.epochs,
                        args.device,
                        out_dir,
                        args.quick,
                        args.progress,
                        args.conditioning,
                    )
                    t0 = time.perf_counter()
                    rec: dict[str, Any] = {"dataset": d, "method": method, "seed": seed}
                    try:
                        res = run_config(cfg)
                        rec.update(accuracy=res["accuracy"], probe=res["probe"], steps=res["train"]["steps"])
                        status = f"{100 * res['accuracy']:.2f}%"
                    except Exception as exc:  # one diverged run must not lose the others
                        failed += 1
                        rec["error"] = f"{type(exc).__name__}: {exc}"
                        rec["traceback"] = traceback.format_exc()
                        status = f"FAILED ({rec['error']})"
                    rec["seconds"] = time.perf_counter() - t0
                    records.append(rec)
                    print(f"{COLUMN[d]:>8}  {method:<16} seed {seed}: {status}  [{rec['seconds']:.1f} s]", flush=True)

        summary: dict[str, dict[str, Any]] = {}
        for method in args.methods:
            summary[method] = {}
            for d in paths:
                accs = [
                    r["accuracy"] for r in records if r["method"] == method and r["dataset"] == d and "accuracy" in r
                ]
                mean, std = _mean_std(accs)
                summary[method][d] = {"mean": mean, "std": std, "n": len(accs)}
                if method in FACTORISED:
                    for part in ("S", "U1", "U2"):
                        vals = [
                            r["probe"][part]["accuracy"]
                            for r in records
                            if r["method"] == method and r["dataset"] == d and r.get("probe") and part in r["probe"]
                        ]
                        m, s = _mean_std(vals)
                        summary[method][d][part] = {"mean": m, "std": s, "n": len(vals)}

        cols = list(paths)
        if cols:
            print(
                "\nTest accuracy (%) of a linear probe on the frozen representation"
                + (f", mean ± std over seeds {args.seeds}" if len(args.seeds) > 1 else f", seed {args.seeds[0]}")
                + (" [--quick: generated data, not a result]" if args.quick else "")
            )
            rows = []
            for method in args.methods:
                accs = {
                    d: [
                        r["accuracy"]
                        for r in records
                        if r["method"] == method and r["dataset"] == d and "accuracy" in r
                    ]
                    for d in cols
                }
                rows.append([method, *(_cell(accs[d], len(args.seeds)) for d in cols)])
            print(_common.format_table(["method", *(COLUMN[d] for d in cols)], rows))
            print("\nPaper (Table 4.2)")
            print(
                _common.format_table(
                    ["method", *(COLUMN[d] for d in cols)],
                    [[m, *(f"{PAPER[m][d]:.2f}" for d in cols)] for m in args.methods if m in PAPER],
                )
            )
            fact = [m for m in args.methods if m in FACTORISED]
            if fact:
                print(
                    "\nAblation: probe on one part of the factorised representation "
                    "(%; paper Table 4.4 is factorcl-sup)"
                )
                rows = []
                for m in fact:
                    for part in ("S", "U1", "U2"):
                        vals = {
                            d: [
                                r["probe"][part]["accuracy"]
                                for r in records
                                if r["method"] == m and r["dataset"] == d and r.get("probe") and part in r["probe"]
                            ]
                            for d in cols
                        }
                        paper = (
                            "  (" + ", ".join(f"{PAPER_ABLATION[part][d]:.1f}" for d in cols) + ")"
                            if m == "factorcl-sup"
                            else ""
                        )
                        rows.append([f"{m} {part}", *(_cell(vals[d], len(args.seeds)) for d in cols), paper.strip()])
                print(_common.format_table(["representation", *(COLUMN[d] for d in cols), "paper"], rows))
        print(
            f"\n{len(records)} runs in {time.perf_counter() - start:.1f} s" + (f", {failed} FAILED" if failed else "")
        )

        if args.out is not None:
            _common.write_json(
                args.out,
                {
                    "config": {
                        "methods": args.methods,
                        "datasets": args.datasets,
                        "seeds": args.seeds,
                        "epochs": args.epochs,
                        "device": args.device,
                        "quick": args.quick,
                        "conditioning": args.conditioning,
                        "files": {d: str(p) for d, p in paths.items()},
                    },
                    "environment": _common.environment(),
                    "skipped": skipped,
                    "summary": summary,
                    "runs": [{k: v for k, v in r.items() if k != "traceback"} for r in records],
                    "paper": PAPER,
                    "paper_ablation": PAPER_ABLATION,
                },
            )
            print(f"wrote {args.out}")
        return 1 if failed else 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
