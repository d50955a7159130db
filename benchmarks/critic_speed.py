"""Speed and peak memory of one critic training step: naive tiled concat vs ConcatCritic vs SeparableCritic.

One step is ``scores = critic(x, y)``, ``loss = -infonce(scores) + nce_club(scores)``,
``loss.backward()``, with x and y ``[B, dim]`` inputs that require grad (in real use they are
encoder features, so the gradient flows back into them too). Implementations:

- ``naive``: :class:`_published.PublishedConcatCritic`, the published code's critic: x and y tiled
  to ``[B, B, dx+dy]`` and the full MLP run on every pair;
- ``concat``: :class:`bounds.ConcatCritic` (first layer split into its x and y halves, computed
  once per sample and broadcast-added; remaining layers in row chunks);
- ``separable``: :class:`bounds.SeparableCritic`, g(x)^T h(y).

Every (implementation, B) runs in a fresh subprocess so peak-memory numbers do not mix. Time is
the median over ``--repeats`` steps after ``--warmup`` steps (CUDA synchronised). Peak memory is
the increase over what the process held just before the first step (after imports, model and
input creation and one 2-sample priming step, so weights, inputs and the libraries' one-time
setup are excluded, parameter gradients included):

- CUDA: ``torch.cuda.max_memory_allocated()`` (after ``reset_peak_memory_stats``) minus
  ``memory_allocated()`` at that point: tensors only, not the caching allocator's reserve;
- CPU: the process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) minus its
  resident set size just before the first step: everything the step touched, allocator and
  library workspaces included. If the step never exceeds the process's earlier peak (imports),
  the number is an upper bound (flagged ``peak_upper_bound`` in the JSON).

Configurations whose analytic memory estimate exceeds ``--max-gib`` (16 GiB), or whose time,
scaled from the same implementation at the previous B (cost ~ B^2), exceeds ``--max-seconds``,
are skipped with the reason printed.

ConcatCritic saves only the first layer's per-pair multiply-adds, so the multiply-add ratio is
1 + 2 * dim / (layers * hidden + 1): 1.50x for the defaults (dim 128, hidden 512, ``--layers 1``),
1.25x with ``--layers 2``; it is printed with the targets. A speedup beyond it is memory traffic:
the naive critic builds tiled [B^2, 2 * dim] inputs and allocates every [B^2, H] activation as fresh
pages, while ConcatCritic's 4 MiB CPU chunks are recycled by the allocator.

``--chunk-sweep PAIRS ...`` measures ConcatCritic alone at each ``chunk_size`` instead (the
default included as ``0``), each B and chunk in a fresh process, and prints ms/step and peak memory
against the default chunk. Environment variables reach the workers, so
``MALLOC_MMAP_THRESHOLD_=4096`` (every block on fresh pages) tests whether a chunk size gains by
cache or by allocator reuse.

Usage: ``python benchmarks/critic_speed.py [--quick] [--batch-sizes 64 256 1024 4096] [--out FILE.json]``
or ``python benchmarks/critic_speed.py --chunk-sweep 0 4096 16384 65536 --batch-sizes 256 1024``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import torch

import bounds

if __package__:  # imported as benchmarks.critic_speed (see benchmarks/__init__.py)
    from . import _common
    from ._published import PublishedConcatCritic
else:  # run as python benchmarks/critic_speed.py: this folder is sys.path[0]
    import _common
    from _published import PublishedConcatCritic

IMPLS = ("naive", "concat", "separable")
LABELS = {"naive": "naive tiled", "concat": "ConcatCritic", "separable": "SeparableCritic"}
BYTES = 4  # float32

# --quick workers run on one thread: on a shared CPU two OpenMP threads waiting on each other can
# be 20x slower than one, and the quick run is a smoke test, not a measurement.
FULL = {"batch_sizes": [64, 256, 1024, 4096], "hidden": 512, "repeats": 5, "warmup": 2, "threads": None}
QUICK = {"batch_sizes": [32, 64], "hidden": 128, "repeats": 1, "warmup": 1, "threads": 1}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; with ``--quick`` the unset ones take the reduced values."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="B values (default 64 256 1024 4096)")
    p.add_argument("--dim", type=int, default=128, help="x_dim = y_dim")
    p.add_argument("--hidden", type=int, default=None, help="critic hidden width (default 512)")
    p.add_argument(
        "--layers",
        type=int,
        default=1,
        help="hidden-to-hidden layers of the critic MLPs (default 1, as the published FactorCL critics)",
    )
    p.add_argument("--embed-dim", type=int, default=128, help="SeparableCritic embedding size (class default)")
    p.add_argument("--chunk-size", type=int, default=None, help="ConcatCritic chunk_size (default: class default)")
    p.add_argument(
        "--chunk-sweep",
        type=int,
        nargs="+",
        default=None,
        metavar="PAIRS",
        help="measure ConcatCritic alone at each chunk_size (0: the class default, by device)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed steps; the median is reported (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, ...")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads in workers (default: torch's; 1 with --quick)"
    )
    p.add_argument("--max-gib", type=float, default=16.0, help="skip configurations estimated above this memory")
    p.add_argument("--max-seconds", type=float, default=600.0, help="skip configurations estimated to run longer")
    p.add_argument("--out", default=None, help="write results as JSON here")
    p.add_argument("--quick", action="store_true", help="tiny run: B in {32, 64}, hidden 128, 1 repeat, 1 thread")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "B"), help=argparse.SUPPRESS)  # internal
    args = p.parse_args(argv)
    _common.apply_preset(args, QUICK, FULL)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    args.batch_sizes = sorted(set(args.batch_sizes))
    if args.chunk_size is not None and args.chunk_size < 1:
        p.error(f"--chunk-size must be a positive number of pairs, got {args.chunk_size}")
    if args.chunk_sweep is not None:
        if args.chunk_size is not None:
            p.error("--chunk-size and --chunk-sweep exclude each other: the sweep sets the chunk")
        if any(c < 0 for c in args.chunk_sweep):
            p.error(f"--chunk-sweep takes numbers of pairs >= 0 (0: the default), got {args.chunk_sweep}")
        args.chunk_sweep = sorted(set(args.chunk_sweep))
    return args


def build_critic(
    impl: str, dim: int, hidden: int, layers: int, embed_dim: int, chunk_size: int | None
) -> torch.nn.Module:
    """The critic of one implementation (x_dim = y_dim = ``dim``)."""
    if impl == "naive":
        return PublishedConcatCritic(dim, dim, hidden_dim=hidden, layers=layers)
    if impl == "concat":
        extra = {} if chunk_size is None else {"chunk_size": chunk_size}
        return bounds.ConcatCritic(dim, dim, hidden_dim=hidden, layers=layers, **extra)
    if impl == "separable":
        return bounds.SeparableCritic(dim, dim, hidden_dim=hidden, embed_dim=embed_dim, layers=layers)
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


def estimate_bytes(impl: str, batch: int, dim: int, hidden: int, layers: int, embed_dim: int) -> int:
    """Rough peak activation memory of one forward+backward step, in bytes (float32).

    Pair critics keep ``layers + 1`` post-ReLU ``[B*B, H]`` activations for the backward pass and
    hold about two more at its start (incoming gradient and ReLU mask); the naive one also keeps
    the tiled ``[B*B, 2*dim]`` input (and briefly its copy in ``cat``). The separable critic keeps
    per-sample activations plus a handful of ``[B, B]`` score-sized buffers.
    """
    pairs = batch * batch
    if impl in ("naive", "concat"):
        floats = pairs * hidden * (layers + 3)
        if impl == "naive":
            floats += 2 * pairs * (2 * dim)
        return BYTES * floats
    per_sample = 2 * batch * (hidden * (layers + 3) + embed_dim)
    return BYTES * (per_sample + 8 * pairs)


def concat_flop_bound(dim: int, hidden: int, layers: int) -> float:
    """Naive / ConcatCritic multiply-adds per pair: the speedup that compute alone allows.

    Per pair the naive critic runs the first layer on [x; y] (2 * dim * hidden) plus the rest
    (layers * hidden^2 + hidden); ConcatCritic runs only the rest, its first layer being per sample.
    The backward pass costs twice the forward for both (the naive one also needs the input
    gradient, since x and y require grad), so the ratio of forward costs is the ratio of step costs.
    """
    rest = layers * hidden * hidden + hidden
    return (2 * dim * hidden + rest) / rest


def _current_rss_kib() -> int | None:
    # Resident set size now (not the peak): /proc/self/statm's second field, in pages.
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_kib() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def measure(
    impl: str,
    batch: int,
    dim: int,
    hidden: int,
    layers: int,
    embed_dim: int,
    chunk_size: int | None,
    device: torch.device,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time and peak memory of the step for one configuration, in this process (the worker side)."""
    torch.manual_seed(0)
    critic = build_critic(impl, dim, hidden, layers, embed_dim, chunk_size).to(device)
    x = torch.randn(batch, dim, device=device, requires_grad=True)
    y = torch.randn(batch, dim, device=device, requires_grad=True)

    def step(x: torch.Tensor = x, y: torch.Tensor = y) -> None:
        # Drop last step's gradients so every step allocates the same (no accumulation buffers).
        critic.zero_grad(set_to_none=True)
        x.grad = y.grad = None
        scores = critic(x, y)
        loss = -bounds.infonce(scores) + bounds.nce_club(scores)
        loss.backward()

    # Prime the libraries (BLAS handles and workspaces, autograd worker threads) with a 2-sample
    # step, so their one-time setup is not counted as the step's memory; then drop its gradients.
    step(x[:2].detach().requires_grad_(), y[:2].detach().requires_grad_())
    critic.zero_grad(set_to_none=True)

    upper_bound = False
    if device.type == "cuda":
        _common.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        timing = _common.time_fn(step, device, warmup=warmup, repeats=repeats)
        peak_mib = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak_before = _peak_rss_kib()
        base_kib = _current_rss_kib()
        if base_kib is None:  # no /proc: the best baseline left is the peak so far
            base_kib = peak_before
        timing = _common.time_fn(step, device, warmup=warmup, repeats=repeats)
        peak_after = _peak_rss_kib()
        upper_bound = peak_after <= peak_before
        peak_mib = max(0, peak_after - base_kib) / 1024
    return {
        "impl": impl,
        "batch_size": batch,
        "ms_per_step": timing["median_ms"],
        "min_ms": timing["min_ms"],
        "times_ms": timing["times_ms"],
        "peak_mib": peak_mib,
        "peak_upper_bound": upper_bound,
        "threads": torch.get_num_threads(),
        "device": str(device),
        # The pairs per chunk the critic used (its device default when chunk_size is None).
        **({"chunk_size": critic.chunk_pairs(device)} if isinstance(critic, bounds.ConcatCritic) else {}),
    }


def _worker_main(args: argparse.Namespace) -> int:
    impl, batch = args.worker[0], int(args.worker[1])
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _common.pick_device(args.device)
    result = measure(
        impl,
        batch,
        args.dim,
        args.hidden,
        args.layers,
        args.embed_dim,
        args.chunk_size,
        device,
        args.warmup,
        args.repeats,
    )
    print(json.dumps(result), flush=True)  # the parent reads this last line
    return 0


def run_worker(impl: str, batch: int, args: argparse.Namespace, device: torch.device, timeout: float) -> dict[str, Any]:
    """Measure one configuration in a fresh Python process; ``{"skipped": reason}`` if it fails."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        impl,
        str(batch),
        "--dim", str(args.dim),
        "--hidden", str(args.hidden),
        "--layers", str(args.layers),
        "--embed-dim", str(args.embed_dim),
        "--repeats", str(args.repeats),
        "--warmup", str(args.warmup),
        "--device", str(device),
    ]  # fmt: skip
    if args.chunk_size is not None:
        cmd += ["--chunk-size", str(args.chunk_size)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"worker timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"worker failed (exit {proc.returncode}): {err}"}
    return json.loads(lines[-1])


def run_all(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, dict[str, Any]]]:
    """Every (implementation, B), each in a subprocess, skipping those estimated too big or slow."""
    results: dict[str, dict[str, dict[str, Any]]] = {impl: {} for impl in IMPLS}
    last: dict[str, tuple[int, float]] = {}  # impl -> (B, ms) of its last measured configuration
    steps = args.warmup + args.repeats
    for batch in sorted(args.batch_sizes):
        for impl in IMPLS:
            est_gib = estimate_bytes(impl, batch, args.dim, args.hidden, args.layers, args.embed_dim) / 2**30
            reason = None
            if est_gib > args.max_gib:
                reason = f"estimated {est_gib:.1f} GiB > --max-gib {args.max_gib:g}"
            elif impl in last:
                prev_b, prev_ms = last[impl]
                est_s = prev_ms * (batch / prev_b) ** 2 * steps / 1e3  # pair cost grows as B^2
                if est_s > args.max_seconds:
                    reason = (
                        f"estimated {est_s:.0f} s for {steps} steps (from {prev_ms:.1f} ms at B={prev_b}) "
                        f"> --max-seconds {args.max_seconds:g}"
                    )
            if reason is not None:
                print(f"skip {LABELS[impl]:>15} B={batch:<5} {reason}", flush=True)
                results[impl][str(batch)] = {"skipped": reason}
                continue
            timeout = 2 * args.max_seconds + 120
            print(f"run  {LABELS[impl]:>15} B={batch:<5} (estimated {est_gib * 1024:.0f} MiB)", flush=True)
            res = run_worker(impl, batch, args, device, timeout)
            if "skipped" in res:
                print(f"skip {LABELS[impl]:>15} B={batch:<5} {res['skipped']}", flush=True)
                results[impl][str(batch)] = res
                continue
            last[impl] = (batch, res["ms_per_step"])
            res["estimated_mib"] = est_gib * 1024
            results[impl][str(batch)] = res
            print(
                f"done {LABELS[impl]:>15} B={batch:<5} {res['ms_per_step']:10.2f} ms  {res['peak_mib']:9.1f} MiB",
                flush=True,
            )
    # Ratios against the naive critic at the same B (None where it was not measured).
    for batch in map(str, sorted(args.batch_sizes)):
        naive = results["naive"].get(batch, {})
        for impl in IMPLS:
            res = results[impl][batch]
            if "skipped" in res:
                continue
            if "ms_per_step" in naive:
                res["speedup_vs_naive"] = naive["ms_per_step"] / res["ms_per_step"]
                res["memory_vs_naive"] = res["peak_mib"] / naive["peak_mib"] if naive["peak_mib"] > 0 else None
            else:
                res["speedup_vs_naive"] = None
                res["memory_vs_naive"] = None
    return results


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(results: dict[str, dict[str, dict[str, Any]]], batch_sizes: Sequence[int]) -> None:
    """B, implementation, ms/step, peak MiB, speedup and memory ratio against naive; skip reasons."""
    rows = []
    for batch in sorted(batch_sizes):
        for impl in IMPLS:
            res = results[impl][str(batch)]
            if "skipped" in res:
                rows.append([batch, LABELS[impl], "-", "-", "-", "-", f"skipped: {res['skipped']}"])
                continue
            peak = f"{res['peak_mib']:.1f}" + ("*" if res.get("peak_upper_bound") else "")
            speed, mem = _fmt_ratio(res["speedup_vs_naive"]), _fmt_ratio(res.get("memory_vs_naive"))
            rows.append([batch, LABELS[impl], f"{res['ms_per_step']:.2f}", peak, speed, mem, ""])
    headers = ["B", "critic", "ms/step", "peak MiB", "speedup vs naive", "memory vs naive", "note"]
    # Left-align the free-text note column: format_table right-aligns, so pad it here.
    width = max(len(headers[-1]), *(len(r[-1]) for r in rows))
    headers[-1] = headers[-1].ljust(width)
    for r in rows:
        r[-1] = r[-1].ljust(width)
    print(_common.format_table(headers, rows))
    if any(r.get("peak_upper_bound") for impl in IMPLS for r in results[impl].values()):
        print("* the step never exceeded the process's earlier peak RSS: an upper bound")


def check_targets(results: dict[str, dict[str, dict[str, Any]]], flop_bound: float | None = None) -> list[str]:
    """PASS/FAIL lines for the issue's targets; ``N/A`` where a needed configuration was not measured.

    ``flop_bound`` (from :func:`concat_flop_bound`) is printed after the ConcatCritic target: the
    speedup that multiply-adds alone explain.
    """
    lines = []

    def get(impl: str, batch: int) -> dict[str, Any] | None:
        res = results[impl].get(str(batch))
        return None if res is None or "skipped" in res else res

    naive, concat, sep = get("naive", 256), get("concat", 256), get("separable", 256)
    claim = "ConcatCritic >= 1.4x faster than naive at B=256"
    if naive and concat:
        speed = concat["speedup_vs_naive"]
        ok = speed >= 1.4 and concat["peak_mib"] < naive["peak_mib"]
        lines.append(
            _common.check_line(
                ok,
                f"{claim} (measured {speed:.2f}x), lower peak memory "
                f"({concat['peak_mib']:.1f} vs {naive['peak_mib']:.1f} MiB)",
            )
        )
    else:
        lines.append(f"N/A: {claim} with lower peak memory (B=256 not measured for both)")
    if flop_bound is not None:
        lines.append(
            f"note: multiply-adds alone explain a ConcatCritic speedup of {flop_bound:.2f}x for these sizes "
            "(only the first layer's per-pair work is saved); the rest is memory traffic"
        )
    claim = "SeparableCritic >= 50x faster than naive at B=256"
    if naive and sep:
        speed = sep["speedup_vs_naive"]
        lines.append(_common.check_line(speed >= 50, f"{claim} (measured {speed:.1f}x)"))
    else:
        lines.append(f"N/A: {claim} (B=256 not measured for both)")
    claim = "SeparableCritic under 1 GiB peak at B=4096"
    sep_big = get("separable", 4096)
    if sep_big:
        measured = f"{claim} (measured {sep_big['peak_mib']:.1f} MiB)"
        lines.append(_common.check_line(sep_big["peak_mib"] < 1024, measured))
    else:
        lines.append(f"N/A: {claim} (B=4096 not measured)")
    return lines


def run_chunk_sweep(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, dict[str, Any]]]:
    """ConcatCritic at each B and ``chunk_size`` of ``args.chunk_sweep`` (0: the default), each in a subprocess."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    timeout = 2 * args.max_seconds + 120
    for batch in args.batch_sizes:
        results[str(batch)] = {}
        for chunk in args.chunk_sweep:
            label = "default" if chunk == 0 else str(chunk)
            print(f"run  ConcatCritic B={batch:<5} chunk_size={label}", flush=True)
            worker_args = argparse.Namespace(**{**vars(args), "chunk_size": chunk or None})
            res = run_worker("concat", batch, worker_args, device, timeout)
            res["hidden"] = args.hidden
            results[str(batch)][label] = res
    return results


def print_chunk_sweep(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """B, chunk_size (pairs, and the pair activations a chunk holds), ms/step, peak MiB, ratios to the default."""
    rows = []
    for batch, by_chunk in results.items():
        default = by_chunk.get("default", {})
        for label, res in by_chunk.items():
            if "skipped" in res:
                rows.append([batch, label, "-", "-", "-", "-", "-"])
                continue
            # The pair activations one chunk really holds: whole rows of B pairs, at least one row.
            chunk_rows = min(int(batch), max(1, res["chunk_size"] // int(batch)))
            elements = chunk_rows * int(batch) * res["hidden"]
            speed = mem = None
            if "ms_per_step" in default:
                speed = default["ms_per_step"] / res["ms_per_step"]
                mem = res["peak_mib"] / default["peak_mib"] if default["peak_mib"] > 0 else None
            name = f"{res['chunk_size']}" + (" (default)" if label == "default" else "")
            rows.append(
                [batch, name, f"2^{math.log2(elements):.3g}" if elements else "-", f"{res['ms_per_step']:.1f}",
                 f"{res['peak_mib']:.1f}", _fmt_ratio(speed), _fmt_ratio(mem)]
            )  # fmt: skip
    headers = ["B", "chunk pairs", "activations", "ms/step", "peak MiB", "speedup vs default", "memory vs default"]
    print(_common.format_table(headers, rows))


def main(argv: list[str] | None = None) -> int:
    """Run every configuration in subprocesses; print the table and targets, write JSON with --out."""
    args = parse_args(argv)
    if args.worker:
        return _worker_main(args)
    device = _common.pick_device(args.device)
    if args.chunk_sweep is not None:
        print(f"critic_speed --chunk-sweep {args.chunk_sweep}: B={args.batch_sizes} hidden={args.hidden}", flush=True)
        sweep = run_chunk_sweep(args, device)
        print()
        print_chunk_sweep(sweep)
        if args.out:
            config = {"chunk_sweep": args.chunk_sweep, "batch_sizes": args.batch_sizes, "hidden": args.hidden,
                      "layers": args.layers, "dim": args.dim, "repeats": args.repeats, "warmup": args.warmup,
                      "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                      **_common.environment(device)}  # fmt: skip
            print(f"json: {_common.write_json(args.out, {'config': config, 'results': sweep})}")
        return 0
    config = {
        "batch_sizes": sorted(args.batch_sizes),
        "dim": args.dim,
        "hidden": args.hidden,
        "layers": args.layers,
        "embed_dim": args.embed_dim,
        "chunk_size": args.chunk_size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": args.threads,
        "max_gib": args.max_gib,
        "max_seconds": args.max_seconds,
        "quick": args.quick,
        "flop_bound_concat_speedup": concat_flop_bound(args.dim, args.hidden, args.layers),
        "step": "scores = critic(x, y); (-infonce(scores) + nce_club(scores)).backward(); x, y require grad",
        "peak_memory": (
            "CUDA: max_memory_allocated - memory_allocated before the first step; "
            "CPU: peak RSS (ru_maxrss) - RSS before the first step"
        ),
        **_common.environment(device),
    }
    print(
        f"critic_speed: B={config['batch_sizes']} dim={args.dim} hidden={args.hidden} layers={args.layers} "
        f"device={device} warmup={args.warmup} repeats={args.repeats} threads={args.threads or 'default'}",
        flush=True,
    )
    results = run_all(args, device)
    print()
    print_table(results, args.batch_sizes)
    print()
    for line in check_targets(results, config["flop_bound_concat_speedup"]):
        print(line)
    if args.out:
        print(f"json: {_common.write_json(args.out, {'config': config, 'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
