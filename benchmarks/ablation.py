"""Which FactorCL terms earn their place: an ablation on synthetic data whose views have a real job.

The data (``factorcl.data.make_synthetic`` with ``nuisance_dim``) carry task-irrelevant latents: n_s,
shared by both modalities (what the removal term I_NCE-CLUB(Z_S1; Z_S2 | X1', X2') targets), and
n_1, n_2, one per modality. Every view redraws them (the optimal augmentation of Definition 3),
so X' keeps exactly what a task on (w_s, w_1, w_2) needs. X1' adds small Gaussian noise; X2' also
drops ``drop_p`` of its features independently of X1 (IndAug), or, for the "unique aug" row, is the
best of ``candidates`` such draws under the model's own shared critic against X1 (Eq. 4.18,
:class:`augment.UniqueAugment` with :meth:`factorcl.FactorCL.shared_scorer`).

Rows: SimCLR, Cross+Self, Cross+Self+Fact, FactorCL-SSL without removal terms, without the
conditional term, full (IndAug), full with the unique augmentation, FactorCL-SUP and SupCon (one
model per task). Columns: linear-probe test accuracy for labels at unique_ratio 0, 0.5, 1 and the
``synergy`` label (XOR of signs of w_1 and w_2: needs both modalities jointly). Mean +- std over
seeds; a difference within about two standard deviations is not a result.

    python benchmarks/ablation.py                      # 3 seeds, 12,000 samples (about 25 min on 2 cores)
    python benchmarks/ablation.py --seeds 0 --epochs 2 # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import augment
from bounds.critics import mlp
from factorcl import FactorCL
from factorcl.data.synthetic import SyntheticData, make_synthetic
from factorcl.experiments.synthetic import embed_split
from factorcl.probe import linear_probe
from factorcl.train import Trainer

#: (row label, method, second view) for the self-supervised rows.
SSL_ROWS = (
    ("SimCLR", "simclr", "ind"),
    ("Cross+Self", "cross+self", "ind"),
    ("Cross+Self+Fact", "cross+self+fact", "ind"),
    ("FactorCL-SSL, no removal terms", "factorcl-ssl-no-remove", "ind"),
    ("FactorCL-SSL, no conditional term", "factorcl-ssl-no-cond", "ind"),
    ("FactorCL-SSL (IndAug)", "factorcl-ssl", "ind"),
    ("FactorCL-SSL (unique aug)", "factorcl-ssl", "unique"),
)
SUP_ROWS = (("FactorCL-SUP", "factorcl-sup"), ("SupCon", "supcon"))
TASKS = ("0", "0.5", "1", "synergy")


class View:
    """x -> x': redraw the nuisance latents, then Gaussian noise and (optionally) feature dropout."""

    def __init__(self, data: SyntheticData, modality: int, noise_std: float, drop_p: float) -> None:
        self.nuisance = data.nuisance_augmentation(modality)
        parts: list = [augment.GaussianNoise(std=noise_std)]
        if drop_p > 0:
            parts.append(augment.FeatureDropout(p=drop_p))
        self.generic = augment.Compose(parts)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.generic(self.nuisance(x))


def task_data(data: SyntheticData, task: str) -> SyntheticData:
    """The dataset relabelled for one task column."""
    return data.relabel(label="synergy") if task == "synergy" else data.relabel(float(task))


def build(method: str, data: SyntheticData, view2: str, args: argparse.Namespace, seed: int) -> FactorCL:
    """One model of the ablation, with the views of its row."""
    torch.manual_seed(seed)
    d1, d2 = data.x1.shape[1], data.x2.shape[1]
    v1 = View(data, 1, args.noise_std, 0.0)
    v2 = View(data, 2, args.noise_std, args.drop_p)
    model = FactorCL(
        mlp(d1, 512, 128, 0),
        mlp(d2, 512, 128, 0),
        128,
        128,
        method=method,
        augment1=v1,
        augment2=v2,
        num_classes=2,
        embed_dim=64,
        critic_hidden=256,
        **getattr(args, "model_settings", {}),
    )
    if view2 == "unique":
        model.augment2 = augment.UniqueAugment(v2, model.shared_scorer(), num_candidates=args.candidates)
    return model


def accuracy(model: FactorCL, data: SyntheticData, task: str) -> float:
    """Linear-probe test accuracy (percent) of the concatenated representations on one task."""
    train, test = embed_split(model, data, "train", model.device), embed_split(model, data, "test", model.device)
    labelled = task_data(data, task)
    xtr, xte = torch.cat(list(train.values()), 1), torch.cat(list(test.values()), 1)
    ytr, yte = labelled.y[data.indices["train"]], labelled.y[data.indices["test"]]
    return 100.0 * linear_probe(xtr, ytr, xte, yte, max_iter=100).accuracy


def fit(model: FactorCL, data: SyntheticData, args: argparse.Namespace, seed: int) -> None:
    loader = data.split("train").loader(args.batch_size, shuffle=True, drop_last=True, seed=seed)
    extra = {} if args.critic_steps is None else {"critic_steps": args.critic_steps}
    Trainer(
        model, loader, epochs=args.epochs, lr=1e-3, device="cpu", seed=seed, progress=False, tensorboard=False, **extra
    ).fit()


def plot(rows: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """Grouped bars: one group per task, one bar per method, +-1 std error bars over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.0))
    width = 0.8 / len(rows)
    for i, (label, by_task) in enumerate(rows.items()):
        xs, means, sds = [], [], []
        for j, task in enumerate(TASKS):
            vals = by_task.get(task)
            if vals:
                xs.append(j + (i - len(rows) / 2 + 0.5) * width)
                means.append(statistics.mean(vals))
                sds.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
        ax.bar(xs, means, width, yerr=sds, capsize=2, label=label)
    ax.set_xticks(range(len(TASKS)), [f"unique_ratio {t}" if t != "synergy" else "synergy (XOR)" for t in TASKS])
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.set_ylim(40, 100)
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set_title("Which FactorCL terms earn their place (synthetic data with nuisance latents)")
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def print_table(rows: dict[str, dict[str, list[float]]]) -> None:
    """The markdown table: mean +- std over seeds per method and task."""
    print("| method | unique_ratio 0 | 0.5 | 1 | synergy |")
    print("|---|---|---|---|---|")
    for label, by_task in rows.items():
        cells = []
        for task in TASKS:
            vals = by_task.get(task)
            if not vals:
                cells.append("-")
                continue
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.1f} +- {sd:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=12000)
    p.add_argument("--nuisance-dim", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--noise-std", type=float, default=0.15)
    p.add_argument("--drop-p", type=float, default=0.3)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--critic-steps", type=int, default=None, help="critic steps per main step (default: the trainer's)")
    p.add_argument("--no-sup", action="store_true", help="skip FactorCL-SUP and SupCon (one model per task each)")
    p.add_argument(
        "--sup-tasks",
        nargs="+",
        default=list(TASKS),
        choices=TASKS,
        help="the tasks FactorCL-SUP and SupCon are trained on (one model each)",
    )
    p.add_argument("--out", default="benchmarks/figures/ablation.json")
    p.add_argument("--plot", default="benchmarks/figures/ablation.png")
    p.add_argument("--from-json", help="print the table and draw the plot of a finished run's JSON, train nothing")
    args = p.parse_args(argv)
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())["accuracy"]
        print_table(rows)
        print(f"plot: {plot(rows, Path(args.plot))}")
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows: dict[str, dict[str, list[float]]] = {}
    start = time.perf_counter()
    total = len(args.seeds) * (len(SSL_ROWS) + (0 if args.no_sup else len(SUP_ROWS) * len(args.sup_tasks)))
    done = 0
    for seed in args.seeds:
        data = make_synthetic(num_samples=args.samples, nuisance_dim=args.nuisance_dim, seed=seed)
        for label, method, view2 in SSL_ROWS:
            model = build(method, data, view2, args, seed)
            fit(model, data, args, seed)
            for task in TASKS:
                rows.setdefault(label, {}).setdefault(task, []).append(accuracy(model, data, task))
            done += 1
            print(
                f"[{done}/{total}, {time.perf_counter() - start:.0f} s] seed {seed} {label}: "
                + ", ".join(f"{t} {rows[label][t][-1]:.1f}" for t in TASKS),
                flush=True,
            )
        if args.no_sup:
            continue
        for label, method in SUP_ROWS:
            for task in args.sup_tasks:
                labelled = task_data(data, task)
                model = build(method, labelled, "ind", args, seed)
                fit(model, labelled, args, seed)
                rows.setdefault(label, {}).setdefault(task, []).append(accuracy(model, data, task))
                done += 1
                print(
                    f"[{done}/{total}, {time.perf_counter() - start:.0f} s] seed {seed} {label} task {task}: "
                    f"{rows[label][task][-1]:.1f}",
                    flush=True,
                )
    print()
    print(
        f"Linear-probe test accuracy (%), mean +- std over seeds {args.seeds}; {args.samples} samples, "
        f"nuisance_dim {args.nuisance_dim}, {args.epochs} epochs, X2' feature dropout {args.drop_p}"
    )
    print_table(rows)
    print(f"({time.perf_counter() - start:.0f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"args": vars(args), "accuracy": rows}, indent=2))
    tmp.replace(out)
    print(f"plot: {plot(rows, Path(args.plot))}")


if __name__ == "__main__":
    main()
