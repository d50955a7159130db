"""Verification tables of ``factorcl quantify`` (the PID estimators), each part a table and a JSON file.

Parts (``--parts``, default all):

- ``dit``: :func:`factorcl.quantify.pid_discrete` against dit's BROJA PID (``dit.pid.PID_BROJA``,
  its exact ``method="cone"`` solver) on XOR, AND, OR, COPY, a unique bit, a redundant bit and 20
  random joints up to 6 x 6 x 4; ``--dit-default N`` also compares dit's default solver on N of them.
- ``truth``: the exact PID of the synthetic labels at the latent level. The label reads three
  scalar projections s = w_s v_s, a = w_1 v_1, c = w_2 v_2, so the PID of (X1, X2; Y) is that of
  ((s, a), (s, c); Y) (the rest of each input is independent of the label); each is cut into 12
  equal-probability bins and the joint tallied from 2,000,000 draws, then solved by CVX. Fine
  bins lose a little information, so these read slightly low.
- ``sweep``: the synthetic generator over 5 unique_ratios x seeds, BATCH and CVX, for the labels
  ``two_bits`` (one bit per modality at ratio 1) and ``linear`` (the FactorCL benchmark's label),
  measured on the train split.
- ``synergy``: the XOR-like ``synergy`` label, BATCH and CVX, per seed.
- ``gmm``: the thesis's Gaussian mixture (x1, x2 in R, y = +-1, means +-mu at an angle), CVX on
  equal-width histograms and BATCH, and whether they name the same dominant part.
- ``speed``: CVX on a random 50 x 50 x 10 joint, BATCH on 20,000 pairs of 100-d inputs.

    python benchmarks/quantify.py [--parts dit truth sweep synergy gmm speed] [--seeds 0 1 2] [--quick]
        [--out-dir benchmarks/figures] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__:  # imported as benchmarks.quantify
    from . import _common
else:  # run as python benchmarks/quantify.py
    import _common

from factorcl.data import make_synthetic
from factorcl.quantify import BatchConfig, estimate, pid_discrete
from factorcl.quantify.examples import DISCRETE_CASES, discrete_case, gaussian_mixture
from factorcl.quantify.pid import PARTS

PARTS_ALL = ("dit", "truth", "sweep", "synergy", "gmm", "speed")
RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _dit_pid(p: np.ndarray, method: str) -> dict[str, float]:
    import dit
    from dit.pid import PID_BROJA

    outcomes = [idx for idx in np.ndindex(p.shape) if p[idx] > 0]
    r = PID_BROJA(dit.Distribution(outcomes, [p[idx] for idx in outcomes]), [[0], [1]], [2], method=method)
    return {"R": r.get_pi(((0,), (1,))), "U1": r.get_pi(((0,),)), "U2": r.get_pi(((1,),)), "S": r.get_pi(((0, 1),))}


def random_joints(n: int = 20, seed: int = 0) -> list[np.ndarray]:
    """Random joints up to 6 x 6 x 4 (Dirichlet(0.5)), every other one with cells zeroed (the tests' set)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = (int(rng.integers(2, 7)), int(rng.integers(2, 7)), int(rng.integers(2, 5)))
        p = rng.dirichlet(np.full(int(np.prod(shape)), 0.5)).reshape(shape)
        if i % 2:
            p = p * (rng.random(shape) > 0.4)
            p = p / p.sum()
        out.append(p)
    return out


def part_dit(args: argparse.Namespace) -> dict[str, Any]:
    cases = [(name, discrete_case(name)) for name in sorted(DISCRETE_CASES)]
    cases += [(f"random {i} {'x'.join(map(str, p.shape))}", p) for i, p in enumerate(random_joints())]
    rows, worst = [], 0.0
    for i, (name, p) in enumerate(cases):
        ours = pid_discrete(p).parts()
        ref = _dit_pid(p, "cone")
        diff = max(abs(ours[k] - ref[k]) for k in PARTS)
        worst = max(worst, diff)
        row = [name, *(ours[k] for k in PARTS), diff]
        if i >= len(DISCRETE_CASES) and i - len(DISCRETE_CASES) < args.dit_default:
            default = _dit_pid(p, "auto")
            row.append(max(abs(ours[k] - default[k]) for k in PARTS))
        elif args.dit_default:
            row.append(None)
        rows.append(row)
    headers = ["case", *(f"{k} (bits)" for k in PARTS), "max |ours - dit cone|"]
    if args.dit_default:
        headers.append("max |ours - dit default|")
    print(_common.format_table(headers, rows, floatfmt=".4f"))
    print(
        _common.check_line(
            worst <= 1e-3, f"pid_discrete matches dit's BROJA (cone) within 1e-3 bits: worst {worst:.2e}"
        )
    )
    return {"headers": headers, "rows": rows, "worst": worst}


def latent_joint(label: str, ratio: float, grid: int = 12, n: int = 2_000_000, seed: int = 0) -> np.ndarray:
    """The joint of ((s, a), (s, c), y) on a grid of equal-probability bins (see the module docstring)."""
    rng = np.random.default_rng(seed)
    s, a, c = rng.standard_normal((3, n))  # unit-variance stand-ins: the labels only read signs of sums
    if label == "two_bits":
        y = 2 * (((1 - ratio) * s + ratio * a) > 0) + (((1 - ratio) * s + ratio * c) > 0)
    elif label == "linear":
        y = (((1 - ratio) * s + ratio * (a + c) / math.sqrt(2.0)) > 0).astype(np.int64)
    else:
        raise ValueError(f"latent truth is for labels two_bits and linear, got {label!r}")
    edges = np.quantile(rng.standard_normal(200_000), np.linspace(0.0, 1.0, grid + 1)[1:-1])
    bs, ba, bc = (np.searchsorted(edges, v) for v in (s, a, c))
    p = np.zeros((grid * grid, grid * grid, int(y.max()) + 1))
    np.add.at(p, (bs * grid + ba, bs * grid + bc, y), 1.0)
    return p / p.sum()


def part_truth(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label in args.labels:
        rows, runs = [], {}
        for ratio in RATIOS:
            pid = pid_discrete(latent_joint(label, ratio, n=200_000 if args.quick else 2_000_000))
            runs[str(ratio)] = {**pid.parts(), "total": pid.total}
            rows.append([ratio, pid.R, pid.U1 + pid.U2, pid.S, pid.total])
        out[label] = runs
        print(f"\nlabel {label}: exact PID at the latent level (12 bins per projection), bits")
        print(_common.format_table(["unique_ratio", "R", "U1 + U2", "S", "I(X1,X2;Y)"], rows, floatfmt=".3f"))
    return out


def _batch_config(args: argparse.Namespace) -> BatchConfig:
    return BatchConfig(hidden=64, classifier_epochs=30, patience=4, align_epochs=4) if args.quick else BatchConfig()


def _run_pid(x1: Any, x2: Any, y: Any, method: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    pid = estimate(x1, x2, y, method, seed=seed, device=args.device, batch=_batch_config(args), clusters=args.clusters)
    return {**pid.parts(), "total": pid.total, "dominant": pid.dominant(), "seconds": time.perf_counter() - start}


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def part_sweep(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label in args.labels:
        for method in args.methods:
            by_ratio = {}
            for ratio in RATIOS:
                runs = []
                for seed in args.seeds:
                    d = make_synthetic(num_samples=args.samples, unique_ratio=ratio, label=label, seed=seed)
                    tr = d.split("train")
                    runs.append(_run_pid(tr.fields["x1"], tr.fields["x2"], tr.fields["y"], method, args, seed))
                by_ratio[str(ratio)] = runs
            results[f"{label}/{method}"] = by_ratio
            rows = []
            for ratio, runs in by_ratio.items():
                unique = [r["U1"] + r["U2"] for r in runs]
                rows.append(
                    [
                        ratio,
                        *(_mean_sd([r[k] for r in runs]) for k in ("R",)),
                        _mean_sd(unique),
                        _mean_sd([r["S"] for r in runs]),
                        _mean_sd([r["total"] for r in runs]),
                    ]
                )
            print(f"\nlabel {label}, {method.upper()}: PID in bits, mean +- sd over seeds {list(args.seeds)}")
            print(_common.format_table(["unique_ratio", "R", "U1 + U2", "S", "I(X1,X2;Y)"], rows))
            mono = _monotone(by_ratio)
            results[f"{label}/{method}"] = {"runs": by_ratio, "monotone": mono}
            print(
                _common.check_line(
                    mono["all"],
                    f"{label}/{method}: R falls and U1+U2 rises over the 5 ratios, every seed ({mono['per_seed']})",
                )
            )
    return results


def _monotone(by_ratio: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    ratios = list(by_ratio)
    per_seed = []
    for s in range(len(by_ratio[ratios[0]])):
        r = [by_ratio[k][s]["R"] for k in ratios]
        u = [by_ratio[k][s]["U1"] + by_ratio[k][s]["U2"] for k in ratios]
        per_seed.append(all(a > b for a, b in zip(r, r[1:])) and all(a < b for a, b in zip(u, u[1:])))
    return {"per_seed": per_seed, "all": all(per_seed)}


def part_synergy(args: argparse.Namespace) -> dict[str, Any]:
    rows, out = [], {}
    for method in args.methods:
        runs = []
        for seed in args.seeds:
            tr = make_synthetic(num_samples=args.samples, label="synergy", seed=seed).split("train")
            runs.append(_run_pid(tr.fields["x1"], tr.fields["x2"], tr.fields["y"], method, args, seed))
        out[method] = runs
        share = [r["S"] / r["total"] if r["total"] > 0 else 0.0 for r in runs]
        rows.append(
            [
                method.upper(),
                *(_mean_sd([r[k] for r in runs]) for k in (*PARTS, "total")),
                _mean_sd(share),
                ", ".join(r["dominant"] for r in runs),
            ]
        )
    print("\nlabel synergy (XOR of signs of w_1, w_2): PID in bits, mean +- sd over seeds")
    print(_common.format_table(["method", *PARTS, "I(X1,X2;Y)", "S share", "dominant"], rows))
    ok = all(r["dominant"] == "S" for runs in out.values() for r in runs)
    print(_common.check_line(ok, "synergy dominates on the synergy label, every method and seed"))
    return out


def part_gmm(args: argparse.Namespace) -> dict[str, Any]:
    rows, out = [], []
    for norm in (1.0, 2.0):
        for k in range(5):
            angle = k * math.pi / 8
            x1, x2, y = gaussian_mixture(args.samples, angle, norm=norm, seed=0)
            cvx = _run_pid(x1, x2, y, "cvx", args, 0)
            batch = _run_pid(x1, x2, y, "batch", args, 0)
            agree = cvx["dominant"] == batch["dominant"]
            out.append({"norm": norm, "angle": angle, "cvx": cvx, "batch": batch, "agree": agree})
            rows.append(
                [
                    norm,
                    f"{k}pi/8",
                    *(f"{cvx[p]:.3f}/{batch[p]:.3f}" for p in PARTS),
                    f"{cvx['dominant']}/{batch['dominant']}",
                    "yes" if agree else "NO",
                ]
            )
    print(
        f"\nGaussian mixture, {args.samples} samples: CVX ({args.clusters or 'default'} equal-width bins) / BATCH, bits"
    )
    print(_common.format_table(["|mu|", "angle", *PARTS, "dominant", "agree"], rows))
    ok = all(r["agree"] for r in out)
    print(_common.check_line(ok, "CVX on histograms and BATCH name the same dominant part at every angle"))
    return {"rows": out}


def part_speed(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(50 * 50 * 10)).reshape(50, 50, 10)
    start = time.perf_counter()
    pid = pid_discrete(p)
    cvx_s = time.perf_counter() - start
    d = make_synthetic(num_samples=20_000, unique_ratio=0.5, seed=0)
    start = time.perf_counter()
    estimate(d.x1, d.x2, d.y, "batch", device=args.device, batch=_batch_config(args))
    batch_s = time.perf_counter() - start
    rows = [
        ["CVX, random 50 x 50 x 10 joint", f"{pid.info['solver']['variables']} variables", cvx_s, 30.0],
        ["BATCH, 20,000 pairs of 100-d", args.device, batch_s, 300.0],
    ]
    print(f"\nSpeed ({torch.get_num_threads()} CPU threads)")
    print(_common.format_table(["estimator", "size / device", "seconds", "target (s)"], rows, floatfmt=".1f"))
    print(_common.check_line(cvx_s < 30.0, f"CVX 50 x 50 x 10 under 30 s: {cvx_s:.1f} s"))
    print(_common.check_line(batch_s < 300.0, f"BATCH 20,000 x 100-d under 5 minutes: {batch_s:.1f} s"))
    return {"cvx_seconds": cvx_s, "batch_seconds": batch_s, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS_ALL, default=list(PARTS_ALL))
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--labels", nargs="+", default=["two_bits", "linear"])
    parser.add_argument("--methods", nargs="+", choices=["batch", "cvx"], default=["batch", "cvx"])
    parser.add_argument("--samples", type=int, default=None, help="rows per dataset (synthetic: before the split)")
    parser.add_argument("--clusters", type=int, default=None, help="cvx clusters / bins (default: the library's)")
    parser.add_argument(
        "--dit-default", type=int, default=0, help="also compare dit's default solver on N random joints"
    )
    parser.add_argument("--quick", action="store_true", help="small data and a quick BATCH (for tests)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out-dir", default=None, help="write quantify_<part>.json here")
    args = parser.parse_args(argv)
    _common.apply_preset(args, quick={"seeds": [0], "samples": 2000}, full={"seeds": [0, 1, 2], "samples": 20_000})
    results: dict[str, Any] = {"environment": _common.environment(args.device), "args": vars(args)}
    runners = {
        "dit": part_dit,
        "truth": part_truth,
        "sweep": part_sweep,
        "synergy": part_synergy,
        "gmm": part_gmm,
        "speed": part_speed,
    }
    with _common.measuring(args.threads):
        for part in args.parts:
            results[part] = runners[part](args)
            if args.out_dir:
                _common.write_json(
                    Path(args.out_dir) / f"quantify_{part}.json",
                    {"environment": results["environment"], "args": vars(args), part: results[part]},
                )
    return results


if __name__ == "__main__":
    main()
