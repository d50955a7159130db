"""Time of one full FactorCL-SSL training step: the published code against ours.

One step = the main step (all terms, encoders + heads + lower-bound critics updated) plus one
NCE-CLUB critic step, with MLP encoders 100 -> 512 -> 128 and critics of width 512 (one hidden
layer), as in the published synthetic setup. Implementations:

  (a) published       a faithful re-implementation of the published step (benchmarks/_published.py):
                      tiled concat critics, a per-sample augmentation loop, 13 Adam optimizers,
                      the encoders re-run (and back-propagated into) in the critic step
  (b) ours-concat     factorcl.FactorCL with concat critics, conditioning="concat" (the same six
                      critics as (a)), two optimizers, critic step on cached features
  (c) ours-separable  the same with separable critics (the library default)
  (d) ours-default    the library defaults: separable critics and sampled conditioning

Every critic has the published width (aux_critic_hidden=None, the default), so (a)-(d) do the same
critic work.

    python benchmarks/step_time.py [--quick] [--batch-sizes 128 256 512] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

import augment
import factorcl
from bounds.critics import mlp

if __package__:  # imported as benchmarks.step_time (see benchmarks/__init__.py)
    from . import _common
    from ._published import PublishedFactorCLSSL, published_train_step
else:  # run as python benchmarks/step_time.py: this folder is sys.path[0]
    import _common
    from _published import PublishedFactorCLSSL, published_train_step

IMPLS = ("published", "ours-concat", "ours-separable", "ours-default")
TARGETS = {"ours-concat": 2.0, "ours-separable": 50.0}
INPUT_DIM = 100


def ours_model(critic: str, conditioning: str | None, hidden: int, embed: int, critic_hidden: int) -> factorcl.FactorCL:
    """FactorCL-SSL with the published synthetic sizes, every critic ``critic_hidden`` wide (the published widths)."""
    aug = augment.Compose([augment.GaussianNoise(0.15), augment.FeatureDropout(0.1)])
    return factorcl.FactorCL(
        mlp(INPUT_DIM, hidden, embed, 0),
        mlp(INPUT_DIM, hidden, embed, 0),
        embed,
        embed,
        method="factorcl-ssl",
        critic=critic,
        conditioning=conditioning,
        augment1=aug,
        augment2=aug,
        embed_dim=embed,
        critic_hidden=critic_hidden,
        critic_layers=1,
        aux_critic_hidden=None,
    )


def published_step_fn(model: PublishedFactorCLSSL, x1: torch.Tensor, x2: torch.Tensor) -> Callable[[], None]:
    optims = model.get_optims()
    return lambda: published_train_step(model, optims, x1, x2)


def build_step(impl: str, batch_size: int, args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    """A closure running one training step of ``impl`` on a fixed random batch."""
    torch.manual_seed(0)
    np.random.seed(0)
    x1 = torch.randn(batch_size, INPUT_DIM, device=device)
    x2 = torch.randn(batch_size, INPUT_DIM, device=device)
    if impl == "published":
        model = PublishedFactorCLSSL(
            INPUT_DIM,
            INPUT_DIM,
            args.hidden,
            args.embed,
            layers=0,
            critic_hidden_dim=args.critic_hidden,
            critic_layers=1,
        ).to(device)
        return published_step_fn(model, x1, x2)
    critic, conditioning = {
        "ours-concat": ("concat", "concat"),
        "ours-separable": ("separable", "concat"),
        "ours-default": ("separable", None),
    }[impl]
    model = ours_model(critic, conditioning, args.hidden, args.embed, args.critic_hidden).to(device)
    # One critic step, as the published step takes.
    return _common.trainer_step(model, {"x1": x1, "x2": x2}, critic_steps=1, lr=1e-4)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="B values (default 128 256 512)")
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    p.add_argument("--hidden", type=int, default=512, help="encoder hidden width (100 -> hidden -> embed)")
    p.add_argument("--embed", type=int, default=128, help="encoder output / head width")
    p.add_argument("--critic-hidden", type=int, default=None, help="critic hidden width (default 512)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="write results as JSON here")
    p.add_argument("--quick", action="store_true", help="tiny run (B 32 and 64, critic width 64, one repeat)")
    args = p.parse_args(argv)
    if args.batch_sizes is None:
        args.batch_sizes = [32, 64] if args.quick else [128, 256, 512]
    if args.critic_hidden is None:
        args.critic_hidden = 64 if args.quick else 512
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints a table of ms per step and speedups against the published step."""
    args = parse_args(argv)
    device = _common.pick_device(args.device)
    with _common.measuring(args.threads):
        results: dict[str, dict[str, Any]] = {impl: {} for impl in args.impls}
        rows = []
        for b in args.batch_sizes:
            base = None
            for impl in args.impls:
                timing = _common.time_fn(
                    build_step(impl, b, args, device), device, warmup=args.warmup, repeats=args.repeats
                )
                ms = timing["median_ms"]
                base = ms if impl == "published" else base
                speedup = base / ms if base else float("nan")
                results[impl][str(b)] = {
                    "ms_per_step": ms,
                    "speedup_vs_published": speedup,
                    "times_ms": timing["times_ms"],
                }
                rows.append([b, impl, ms, speedup])
                print(f"B={b:<4} {impl:<15} {ms:10.1f} ms/step", flush=True)
        print()
        print(_common.format_table(["B", "implementation", "ms/step", "speedup vs published"], rows, floatfmt=".1f"))
        lines = []
        for impl, target in TARGETS.items():
            got = results.get(impl, {}).get("256", {}).get("speedup_vs_published")
            if got is None or "published" not in results:
                lines.append(f"N/A: {impl} >= {target:g}x faster than published at B=256 (not run)")
            else:
                lines.append(
                    _common.check_line(
                        got >= target, f"{impl} >= {target:g}x faster than published at B=256 (measured {got:.2f}x)"
                    )
                )
        print("\n".join(lines))
        if args.out:
            _common.write_json(
                args.out,
                {"config": vars(args), "environment": _common.environment(device), "results": results, "checks": lines},
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
