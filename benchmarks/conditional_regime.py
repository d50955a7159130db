"""Conditional MI estimators where FactorCL runs: I(X; Y | C) when I(X; C) is small and when it is >> log B.

On ``bounds.distributions.LinearGaussianCondition`` (X = a Z + U, Y = a Z + V, corr(U, V) = rho, per
dimension), I(X; Y | Z) is fixed by rho and d while I(X; Z) = (d / 2) log(1 + a^2) grows with a.
Each estimator is trained (Adam, lr 5e-3) on fresh batches and read on held-out ones; the table
prints the mean and standard deviation over seeds next to the true values.

    python benchmarks/conditional_regime.py            # d = 4, a in {1, 3, 10}, 3 seeds (~5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import bounds
from bounds.distributions import LinearGaussianCondition


def _critic(x_dim: int, y_dim: int) -> bounds.SeparableCritic:
    # The same small critic for every estimator, so that only the conditioning differs.
    return bounds.SeparableCritic(x_dim, y_dim, hidden_dim=64, embed_dim=32, layers=1)


def build(kind: str, d: int) -> torch.nn.Module:
    """The estimator ``kind`` of I(X; Y | Z) for d-dimensional X, Y, Z."""
    if kind == "chain InfoNCE":
        return bounds.ConditionalInfoNCE(_critic(d, 2 * d), "chain", marginal_critic=_critic(d, d))
    if kind == "chain NCE-CLUB":
        return bounds.ConditionalNCECLUB(_critic(d, 2 * d), "chain", marginal_critic=_critic(d, d))
    if kind == "concat InfoNCE":
        return bounds.ConditionalInfoNCE(_critic(2 * d, 2 * d), "concat")
    cls = bounds.ConditionalInfoNCE if kind == "sampled InfoNCE" else bounds.ConditionalNCECLUB
    return cls(
        _critic(d, d),
        "sampled",
        proposal=bounds.GaussianProposal(d, d, 64),
        x_proposal=bounds.GaussianProposal(d, d, 64),
        correction_critic=_critic(d, d),
        num_negatives=63,
    )


KINDS = ("chain InfoNCE", "chain NCE-CLUB", "concat InfoNCE", "sampled InfoNCE", "sampled NCE-CLUB")


def run(kind: str, dist: LinearGaussianCondition, steps: int, batch: int, seed: int) -> float:
    """Train ``kind`` for ``steps`` batches and return its mean over 20 held-out batches."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    est = build(kind, dist.dim)
    opt = torch.optim.Adam(est.parameters(), lr=5e-3)
    for _ in range(steps):
        sample = dist.sample(batch, gen)
        loss = -est(*sample) if isinstance(est, bounds.ConditionalInfoNCE) else torch.zeros(())
        if getattr(est, "has_critic_loss", False):
            loss = loss + est.critic_loss(*sample)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return sum(float(est(*dist.sample(batch, gen))) for _ in range(20)) / 20


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=4)
    p.add_argument("--a", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    p.add_argument("--rho", type=float, default=0.8)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    log_b = math.log(args.batch_size)
    print(
        f"I(X;Y|Z) estimates (nats), d={args.dim}, rho={args.rho}, B={args.batch_size} (log B = {log_b:.2f}), "
        f"{args.steps} steps, mean +- std over seeds {args.seeds}"
    )
    header = ["I(X;Z)", "I(X;Z)/log B", "true I(X;Y|Z)", *KINDS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    start = time.perf_counter()
    for a in args.a:
        dist = LinearGaussianCondition(args.dim, a=a, b=a, rho=args.rho)
        cells = []
        for kind in KINDS:
            vals = [run(kind, dist, args.steps, args.batch_size, s) for s in args.seeds]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.2f} +- {sd:.2f}")
        print(
            f"| {dist.mi_xz:.2f} | {dist.mi_xz / log_b:.2f} | {dist.conditional_mi:.2f} | " + " | ".join(cells) + " |",
            flush=True,
        )
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
