"""How near-optimal are FactorCL's NCE-CLUB critics? The gap to a critic trained to convergence.

NCE-CLUB is an upper bound only for a near-optimal critic. For each setting of ``critic_steps``
(critic updates per main step) and the critic learning rate, FactorCL-SSL is trained on the
synthetic data with nuisance latents (the views of ``benchmarks/ablation.py``). Then the features
each NCE-CLUB critic sees are frozen (``model.critic_inputs`` after ``model.loss`` on train
batches, and on held-out test batches), a copy of the critic is trained on the frozen train
features until its InfoNCE stops rising (``--converge-steps`` Adam steps), and both are read on
the held-out features. The gap (converged minus trained InfoNCE, nats) says how far from optimal
the critic was when the encoders used it; the table also gives the accuracy of the run
(unique_ratio 0.5) and its step time.

    python benchmarks/critic_study.py          # 3 x 3 settings, 1 seed (about 15 min on 2 cores)
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time

import torch

import bounds
from factorcl.data.synthetic import make_synthetic
from factorcl.train import Trainer

if __package__:  # imported as benchmarks.critic_study (see benchmarks/__init__.py)
    from .ablation import accuracy, build
else:  # run as python benchmarks/critic_study.py: this folder is sys.path[0]
    from ablation import accuracy, build

TERMS = ("unique_remove", "shared_remove")


def critic_value(est: torch.nn.Module, args: tuple, offset: int) -> float:
    """The InfoNCE of an NCE-CLUB estimator's critic (what its training maximises) on cached inputs."""
    if isinstance(est, bounds.NCECLUB):
        with torch.no_grad():
            return float(bounds.infonce(est.critic(*args), offset=offset))
    return float(est.critic_infonce(*args, offset=offset))


def cached_inputs(model, loader, batches: int) -> dict[str, list[tuple]]:
    """Per NCE-CLUB term, the detached inputs ``model.loss`` hands its critic, over ``batches`` batches."""
    out: dict[str, list[tuple]] = {t: [] for t in TERMS}
    names = {id(model.estimators[t]): t for t in TERMS}
    for i, batch in enumerate(loader):
        if i == batches:
            break
        with torch.no_grad():
            model.loss(batch)
        for item in model.critic_inputs:
            if id(item.estimator) in names:
                out[names[id(item.estimator)]].append((item.args, item.offset))
    return out


def gap(model, train_cache, test_cache, steps: int, lr: float) -> dict[str, tuple[float, float]]:
    """term -> (held-out InfoNCE of the trained critic, of the same critic trained on to convergence)."""
    result = {}
    for term in TERMS:
        est = model.estimators[term]
        before = statistics.mean(critic_value(est, a, o) for a, o in test_cache[term])
        tuned = copy.deepcopy(est)
        opt = torch.optim.Adam(tuned.parameters(), lr=lr)
        for step in range(steps):
            args, off = train_cache[term][step % len(train_cache[term])]
            loss = tuned.critic_loss(*args, offset=off)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        after = statistics.mean(critic_value(tuned, a, o) for a, o in test_cache[term])
        result[term] = (before, after)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--critic-steps", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--critic-lr", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    p.add_argument("--samples", type=int, default=12000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--converge-steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--aux-critic-hidden",
        nargs="+",
        default=["default"],
        help="widths of the removal/conditional critics to compare ('none': critic_hidden, 256 here; "
        "'default': FactorCLConfig's)",
    )
    args = p.parse_args(argv)
    ns = argparse.Namespace(noise_std=0.15, drop_p=0.3, candidates=4, batch_size=256)
    data = make_synthetic(num_samples=args.samples, nuisance_dim=10, seed=args.seed)
    print(
        f"NCE-CLUB critics of FactorCL-SSL: held-out InfoNCE of the critic as trained -> after "
        f"{args.converge_steps} more steps on frozen features (gap, nats); main lr 1e-3, seed {args.seed}"
    )
    print(
        "| aux_critic_hidden | critic_steps | critic lr | unique_remove: trained -> converged (gap) | "
        "shared_remove (sampled): trained -> converged (gap) | accuracy r=0.5 (%) | s / step |"
    )
    print("|---|---|---|---|---|---|---|")
    for width, k, lr in itertools.product(args.aux_critic_hidden, args.critic_steps, args.critic_lr):
        ns.model_settings = {} if width == "default" else {"aux_critic_hidden": _width(width)}
        model = build("factorcl-ssl", data, "ind", ns, args.seed)
        loader = data.split("train").loader(ns.batch_size, shuffle=True, drop_last=True, seed=args.seed)
        t0 = time.perf_counter()
        result = Trainer(
            model,
            loader,
            epochs=args.epochs,
            lr=1e-3,
            critic_lr=lr,
            critic_steps=k,
            device="cpu",
            seed=args.seed,
            progress=False,
            tensorboard=False,
        ).fit()
        per_step = (time.perf_counter() - t0) / max(1, result.step)
        train_cache = cached_inputs(model, loader, 16)
        test_loader = data.split("test").loader(ns.batch_size, shuffle=False, drop_last=True)
        test_cache = cached_inputs(model, test_loader, 8)
        g = gap(model, train_cache, test_cache, args.converge_steps, 1e-3)
        acc = accuracy(model, data, "0.5")
        cells = [f"{b:.2f} -> {a:.2f} ({a - b:+.2f})" for b, a in (g[t] for t in TERMS)]
        shown = model.config.effective_aux_critic_hidden
        print(f"| {shown} | {k} | {lr:g} | " + " | ".join(cells) + f" | {acc:.1f} | {per_step:.3f} |", flush=True)


def _width(text: str) -> int | None:
    return None if text.lower() in ("none", "null") else int(text)


if __name__ == "__main__":
    main()
