"""The synthetic shared/unique benchmark (Figure 4.1, Table 4.1): FactorCL against standard CL.

For each seed: one synthetic dataset; every self-supervised method is trained once (its inputs do
not depend on the labelling) and linear-probed for every ``unique_ratio``; supervised methods are
trained once per ratio. Then the learned representations are probed for information about the
ground-truth latents w_1, w_2, w_s (in bits).

Under torchrun every rank trains every model (DDP: ``batch_size`` per rank, negatives from the
global batch) and rank 0 alone probes and reports. With ``work_dir`` each model's checkpoint is
kept in ``work_dir/<seed>/<method>[/<ratio>]`` and ``resume`` continues the runs found there
(finished ones are loaded, not retrained).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import augment
import bounds
from bounds.critics import mlp

from ..data.synthetic import SyntheticData, make_synthetic
from ..device import select_device
from ..distributed import get_world_size, is_main_process
from ..model import FactorCL
from ..model_config import FactorCLConfig
from ..objectives import get_objective
from ..probe import extract_features, probe_parts
from ..train import Trainer

DISPLAY = {
    "factorcl-ssl": "FactorCL-SSL",
    "factorcl-sup": "FactorCL-SUP",
    "ourcl-ssl": "OurCL-SSL",
    "ourcl-sup": "OurCL-SUP",
    "simclr": "SimCLR",
    "cross+self": "Cross+Self",
    "cross+self+fact": "Cross+Self+Fact",
    "factorcl-ssl-no-remove": "FactorCL-SSL (no removal)",
    "factorcl-ssl-no-cond": "FactorCL-SSL (no conditional)",
    "supcon": "SupCon",
}
RATIOS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FULL_METHODS = (
    "factorcl-ssl",
    "factorcl-ssl:concat",
    "factorcl-sup",
    "simclr",
    "cross+self",
    "cross+self+fact",
    "supcon",
)
OURCL_METHODS = ("ourcl-ssl", "ourcl-sup")
LATENTS = ("w_1", "w_2", "w_s")


@dataclass
class SyntheticBenchmarkConfig:
    """Settings of one benchmark run (the defaults are the full sweep; :data:`QUICK` the quickstart)."""

    ratios: tuple[float, ...] = RATIOS
    methods: tuple[str, ...] = FULL_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    num_samples: int = 30000
    label: str = "linear"
    transform: str = "linear"
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    hidden_dim: int = 512
    feature_dim: int = 128
    encoder_layers: int = 0  # hidden-to-hidden layers: 0 gives 100 -> 512 -> 128
    # The FactorCL settings of every model; the method, its critic kind and conditioning come from each spec.
    model: FactorCLConfig = FactorCLConfig(embed_dim=64, critic_hidden=256, num_classes=2)
    concat_critic_hidden: int = 64  # concat critics score B^2 pairs: narrower keeps a CPU run in minutes
    ssl_conditioning: str = (
        "sampled"  # how SSL methods condition on the views: sampled (default), chain or concat (the paper's)
    )
    sup_conditioning: str = "grouped"  # how SUP methods condition on labels: grouped, concat or chain
    noise_std: float = 0.15
    drop_p: float = 0.1
    mi_probe: bool = True
    mi_probe_methods: tuple[str, ...] | None = None  # None: every method
    mi_steps: int = 800
    device: str = "auto"
    progress: bool = True
    work_dir: str | None = None  # keep each model's checkpoint in work_dir/<seed>/<method>[/<ratio>]
    resume: bool = False  # continue the runs found in work_dir (finished runs are loaded, not retrained)
    overwrite: bool = False  # replace the runs found in work_dir (without resume or overwrite, they are refused)
    stop_after: int | None = None  # stop the sweep after this many steps of a run (tests interrupted runs)

    def __post_init__(self) -> None:
        if not self.ratios or any(not 0.0 <= r <= 1.0 for r in self.ratios):
            raise ValueError(f"ratios must be values in [0, 1], got {self.ratios}")
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed")
        if self.resume and self.overwrite:
            raise ValueError(
                "resume and overwrite exclude each other: resume continues the runs in work_dir, "
                "overwrite replaces them"
            )
        if self.resume and not self.work_dir:
            raise ValueError("resume needs work_dir, the folder that holds the runs' checkpoints")
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError(f"stop_after must be >= 1, got {self.stop_after}")
        for spec in self.methods:
            parse_method(spec)


QUICK = dict(
    ratios=(0.0, 0.6, 1.0),
    methods=("factorcl-ssl", "factorcl-sup", "simclr", "cross+self", "supcon"),
    seeds=(0,),
    num_samples=12000,
    epochs=10,
    mi_probe_methods=("factorcl-ssl", "simclr"),
    mi_steps=400,
)


def parse_method(spec: str) -> tuple[str, str]:
    """``"factorcl-ssl"`` or ``"factorcl-ssl:concat"`` -> (method, critic kind)."""
    method, _, critic = spec.partition(":")
    method = get_objective(method).name
    critic = critic or "separable"
    if critic not in ("separable", "concat"):
        raise ValueError(f"critic in method spec {spec!r} must be 'separable' or 'concat'")
    return method, critic


def display_name(spec: str) -> str:
    """Table name of a method spec, e.g. ``FactorCL-SSL (concat)``."""
    method, critic = parse_method(spec)
    return DISPLAY[method] + (" (concat)" if critic == "concat" else "")


def feature_augmentation(noise_std: float, drop_p: float) -> augment.Augmentation:
    """The views X' of the synthetic inputs: small Gaussian noise plus feature dropout."""
    return augment.Compose([augment.GaussianNoise(std=noise_std), augment.FeatureDropout(p=drop_p)])


def build_model(spec: str, cfg: SyntheticBenchmarkConfig, input_dims: tuple[int, int], seed: int) -> FactorCL:
    """A FactorCL model with MLP encoders for a method spec."""
    method, critic = parse_method(spec)
    torch.manual_seed(seed)
    aug = feature_augmentation(cfg.noise_std, cfg.drop_p)
    enc1 = mlp(input_dims[0], cfg.hidden_dim, cfg.feature_dim, cfg.encoder_layers)
    enc2 = mlp(input_dims[1], cfg.hidden_dim, cfg.feature_dim, cfg.encoder_layers)
    conditioning = cfg.sup_conditioning if get_objective(method).supervised else cfg.ssl_conditioning
    settings = cfg.model.replace(method=method, critic=critic, conditioning=conditioning)
    if critic == "concat":  # every concat critic concat_critic_hidden wide (they score B^2 pairs)
        settings = settings.replace(critic_hidden=cfg.concat_critic_hidden, aux_critic_hidden=None)
    return FactorCL(enc1, enc2, cfg.feature_dim, cfg.feature_dim, settings, augment1=aug, augment2=aug)


def embed_split(
    model: FactorCL, data: SyntheticData, split: str, device: torch.device | str | None = None, chunk_size: int = 4096
) -> dict[str, torch.Tensor]:
    """The model's representations of a whole split (on the CPU), in chunks of ``chunk_size`` rows.

    :func:`factorcl.extract_features` over ``(x1, x2)`` chunks of the split, on ``device``
    (default: the model's); the model's train/eval mode is restored.
    """
    idx = data.indices[split]
    chunks = ((data.x1[chunk], data.x2[chunk]) for chunk in idx.split(chunk_size))
    return extract_features(model, chunks, device=device)[0]


def mi_bits(
    z_train: torch.Tensor,
    w_train: torch.Tensor,
    z_test: torch.Tensor,
    w_test: torch.Tensor,
    steps: int = 800,
    batch_size: int = 512,
    seed: int = 0,
    max_candidates: int = 4096,
) -> tuple[float, float]:
    """InfoNCE lower bound on I(Z; W) in bits, and its ceiling log2 N.

    A separable critic (unnormalised dot product of two MLP embeddings) is trained on the training
    split, then I_NCE is evaluated on held-out test pairs with every test sample as a candidate
    (N up to ``max_candidates``). That is a valid lower bound whatever the critic, so a critic
    that overfits can only make it smaller (even negative: it is floored at 0, since I >= 0). Its
    ceiling is log2 N bits: representations that keep a latent whole (a deterministic function of
    it) have unbounded MI with it and read close to the ceiling.
    """
    mean_z, std_z = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    mean_w, std_w = w_train.mean(0), w_train.std(0).clamp_min(1e-6)
    zt, wt = (z_train - mean_z) / std_z, (w_train - mean_w) / std_w
    ze, we = (z_test - mean_z) / std_z, (w_test - mean_w) / std_w
    torch.manual_seed(seed)
    critic = bounds.SeparableCritic(
        zt.shape[1], wt.shape[1], hidden_dim=256, embed_dim=64, layers=1, normalize=False, temperature=1.0
    )  # unbounded scores: the probe must reach its log2 N ceiling
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, zt.shape[0], (batch_size,), generator=gen)
        loss = -bounds.infonce(critic(zt[idx], wt[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    n = min(max_candidates, ze.shape[0])
    with torch.no_grad():
        value = float(bounds.infonce(critic(ze[:n], we[:n])))
    return max(0.0, value) / math.log(2), math.log2(n)


def r2_probe(
    z_train: torch.Tensor, w_train: torch.Tensor, z_test: torch.Tensor, w_test: torch.Tensor, ridge: float = 1e-3
) -> float:
    """Held-out R^2 of the ridge-regression decoder of w from z, averaged over w's dimensions.

    A second probe beside :func:`mi_bits` without its log2 N ceiling: 1 when w is a linear
    function of z, 0 when z holds nothing linear about w (it can dip just below 0 on test data).
    The decoder is fitted in closed form on standardised train features.
    """
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    zt = torch.cat([(z_train - mean) / std, torch.ones(len(z_train), 1)], 1).double()
    ze = torch.cat([(z_test - mean) / std, torch.ones(len(z_test), 1)], 1).double()
    eye = torch.eye(zt.shape[1], dtype=torch.float64)
    eye[-1, -1] = 0.0  # no penalty on the intercept
    coef = torch.linalg.solve(zt.T @ zt + ridge * len(zt) * eye, zt.T @ w_train.double())
    resid = w_test.double() - ze @ coef
    total = (w_test.double() - w_test.double().mean(0)).pow(2).sum(0).clamp_min(1e-12)
    return float((1.0 - resid.pow(2).sum(0) / total).mean())


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class SyntheticResults:
    """Accuracies (per method spec, ratio and seed), MI probes and run facts."""

    config: dict[str, Any]
    accuracy: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # spec -> str(ratio) -> per seed
    mi_bits: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)  # spec -> rep -> latent
    mi_ceiling_bits: float = 0.0
    r2: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)  # spec -> rep -> latent
    train_seconds: dict[str, list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    claims: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False  # a run stopped at stop_after: the sweep ended early (resume it from work_dir)

    def accuracy_summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """spec -> ratio -> (mean, std) accuracy in percent."""
        return {
            spec: {r: _mean_std([100 * a for a in accs]) for r, accs in by_ratio.items()}
            for spec, by_ratio in self.accuracy.items()
        }

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["accuracy_mean_std"] = self.accuracy_summary()
        return out


def _probe_all_ratios(
    results: SyntheticResults, spec: str, data: SyntheticData, ratios: Sequence[float], train: dict, test: dict
) -> None:
    """The linear probe of the concatenated representations, for each ratio's labels (on the CPU, like the MI probe)."""
    xtr = {"all": torch.cat(list(train.values()), dim=1)}
    xte = {"all": torch.cat(list(test.values()), dim=1)}
    for ratio in ratios:
        labelled = data.relabel(ratio)
        ytr, yte = labelled.y[data.indices["train"]], labelled.y[data.indices["test"]]
        acc = probe_parts(xtr, ytr, xte, yte, max_iter=100)["all"].accuracy
        results.accuracy.setdefault(spec, {}).setdefault(f"{ratio:g}", []).append(acc)


def _mi_probe(
    results: SyntheticResults,
    spec: str,
    data: SyntheticData,
    train: dict,
    test: dict,
    steps: int,
    seed: int,
    progress: bool = False,
) -> None:
    lat_tr, lat_te = data.latents("train"), data.latents("test")
    # One critic per (representation, latent): minutes in all, so it gets its own progress bar.
    bar = tqdm(
        total=len(train) * len(LATENTS),
        desc=f"MI probe seed {seed} {display_name(spec)}",
        unit="critic",
        leave=False,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for rep in train:
            for latent in LATENTS:
                bar.set_postfix_str(f"I({rep}; {latent})")
                bits, ceiling = mi_bits(train[rep], lat_tr[latent], test[rep], lat_te[latent], steps=steps, seed=seed)
                results.mi_bits.setdefault(spec, {}).setdefault(rep, {}).setdefault(latent, []).append(bits)
                results.mi_ceiling_bits = ceiling
                r2 = r2_probe(train[rep], lat_tr[latent], test[rep], lat_te[latent])
                results.r2.setdefault(spec, {}).setdefault(rep, {}).setdefault(latent, []).append(r2)
                bar.update(1)
    finally:
        bar.close()


def run_dir(work_dir: str | Path, seed: int, spec: str, ratio: float | None) -> Path:
    """Where one model of the sweep keeps its checkpoint: ``work_dir/<seed>/<method>[/<ratio>]``."""
    path = Path(work_dir) / str(seed) / spec.replace(":", "-")
    return path / f"{ratio:g}" if ratio is not None else path


def run_synthetic_benchmark(cfg: SyntheticBenchmarkConfig) -> SyntheticResults:
    """Train every method on every seed (and, for supervised ones, every ratio); probe accuracy and MI.

    Under torch.distributed every rank trains and only rank 0 probes: the other ranks return
    results without accuracies. Stopped at ``stop_after``, it returns at once with
    ``interrupted=True``.
    """
    device = select_device(cfg.device)
    main = is_main_process()
    results = SyntheticResults(config={**asdict(cfg), "device": str(device), "world_size": get_world_size()})
    specs = list(cfg.methods)
    sup = [s for s in specs if get_objective(parse_method(s)[0]).supervised]
    runs_per_seed = len(specs) - len(sup) + len(sup) * len(cfg.ratios)
    train_n = round(cfg.num_samples * 0.7)
    steps_per_run = cfg.epochs * (train_n // get_world_size() // cfg.batch_size)  # batch_size is per rank
    bar = tqdm(
        total=len(cfg.seeds) * runs_per_seed * steps_per_run,
        desc="synthetic sweep",
        unit="step",
        disable=not (cfg.progress and main),
        dynamic_ncols=True,
    )
    mi_methods = set(cfg.mi_probe_methods) if cfg.mi_probe_methods is not None else set(specs)
    start = time.perf_counter()
    try:
        for seed in cfg.seeds:
            data = make_synthetic(num_samples=cfg.num_samples, label=cfg.label, transform=cfg.transform, seed=seed)
            dims = (data.x1.shape[1], data.x2.shape[1])
            for spec in specs:
                supervised = get_objective(parse_method(spec)[0]).supervised
                for ratio in cfg.ratios if supervised else (None,):
                    labelled = data.relabel(ratio) if ratio is not None else data
                    model = build_model(spec, cfg, dims, seed)
                    loader = labelled.split("train").loader(cfg.batch_size, shuffle=True, drop_last=True, seed=seed)
                    bar.set_postfix_str(
                        f"seed {seed} {display_name(spec)}" + (f" r={ratio:g}" if ratio is not None else "")
                    )
                    out_dir = run_dir(cfg.work_dir, seed, spec, ratio) if cfg.work_dir else None
                    t0 = time.perf_counter()
                    counted = []
                    trainer = Trainer(
                        model,
                        loader,
                        epochs=cfg.epochs,
                        lr=cfg.lr,
                        device=str(device),
                        seed=seed,
                        progress=False,
                        tensorboard=False,
                        callbacks=[lambda row, counted=counted: (bar.update(1), counted.append(1))],
                        out_dir=None if out_dir is None else str(out_dir),
                        resume="auto" if cfg.resume else None,
                        overwrite=cfg.overwrite,
                        stop_after=cfg.stop_after,
                    )
                    done = trainer.fit()
                    bar.update(done.step - len(counted))  # the steps a resumed run did before
                    results.train_seconds.setdefault(spec, []).append(time.perf_counter() - t0)
                    if done.step < trainer.total_steps:  # stopped at stop_after: leave the rest to a resumed run
                        results.interrupted = True
                        return results
                    if not main:
                        continue  # rank 0 probes; the others go on and wait for it in the next run's first collective
                    train, test = embed_split(model, data, "train", device), embed_split(model, data, "test", device)
                    _probe_all_ratios(results, spec, data, [ratio] if ratio is not None else cfg.ratios, train, test)
                    # MI probing looks at one representation per method and seed: for supervised
                    # methods, the one trained on the most unique labels.
                    if cfg.mi_probe and spec in mi_methods and (ratio is None or ratio == max(cfg.ratios)):
                        _mi_probe(results, spec, data, train, test, cfg.mi_steps, seed, progress=cfg.progress and main)
    finally:
        bar.close()
        results.wall_seconds = time.perf_counter() - start
    results.claims = evaluate_claims(results)
    return results


def evaluate_claims(results: SyntheticResults) -> list[dict[str, Any]]:
    """The benchmark's PASS/FAIL claims (only those whose methods and ratios were run)."""
    acc = results.accuracy_summary()
    claims: list[dict[str, Any]] = []
    if "factorcl-ssl" in acc and "simclr" in acc:
        f, s = acc["factorcl-ssl"], acc["simclr"]
        if "0" in f and "0" in s:
            ok = f["0"][0] >= s["0"][0] - 1.0
            claims.append(
                {
                    "passed": ok,
                    "text": f"FactorCL-SSL >= SimCLR - 1 point at unique_ratio 0 ({f['0'][0]:.1f} vs {s['0'][0]:.1f})",
                }
            )
        for r in sorted(f, key=float):
            if float(r) >= 0.6 and r in s:
                ok = f[r][0] >= s[r][0] + 5.0
                claims.append(
                    {
                        "passed": ok,
                        "text": f"FactorCL-SSL >= SimCLR + 5 points at unique_ratio {r} "
                        f"({f[r][0]:.1f} vs {s[r][0]:.1f}, {f[r][0] - s[r][0]:+.1f})",
                    }
                )
    for probe, table, unit in (("MI", results.mi_bits, "bits"), ("R^2", results.r2, "")):
        per_seed = table.get("factorcl-ssl")
        if not per_seed:
            continue
        # Per-seed differences: a claim holds only if their mean exceeds 2 standard deviations.
        u1_vs_s1 = [u - v for u, v in zip(per_seed["u1"]["w_1"], per_seed["s1"]["w_1"])]
        s_vs_u = [
            (a + b - c - d) / 2
            for a, b, c, d in zip(
                per_seed["s1"]["w_s"], per_seed["s2"]["w_s"], per_seed["u1"]["w_s"], per_seed["u2"]["w_s"]
            )
        ]
        for diffs, what in (
            (u1_vs_s1, f"Z_U1 carries more {probe} about w_1 than Z_S1"),
            (s_vs_u, f"Z_S carries more {probe} about w_s than Z_U (mean of both modalities)"),
        ):
            claims.append(_decisive(diffs, f"FactorCL-SSL: {what}", unit))
    return claims


def _decisive(diffs: Sequence[float], text: str, unit: str) -> dict[str, Any]:
    """A claim that a per-seed difference is positive: it passes when its mean exceeds two standard
    deviations over seeds (with one seed, no spread is measured and a positive difference passes,
    which the text says)."""
    mean, sd = _mean_std(diffs)
    passed = mean > 2 * sd and mean > 0
    spread = f"+- {sd:.2f} over {len(diffs)} seeds, needs > 2 sd" if len(diffs) > 1 else "1 seed: no spread measured"
    return {"passed": passed, "text": f"{text} (difference {mean:+.2f}{' ' + unit if unit else ''}, {spread})"}


def format_accuracy_table(results: SyntheticResults) -> str:
    """Methods x unique_ratio linear-probe test accuracy (mean +- std over seeds, percent)."""
    summary = results.accuracy_summary()
    ratios = sorted({r for by in summary.values() for r in by}, key=float)
    name_w = max(len(display_name(s)) for s in summary) + 2
    n_seeds = len(results.config["seeds"])
    lines = [
        f"Linear-probe test accuracy (%), mean +- std over {n_seeds} seed(s)",
        "unique_ratio".ljust(name_w) + "".join(f"{r:>14}" for r in ratios),
    ]
    for spec, by in summary.items():
        cells = "".join(f"{by[r][0]:>8.1f} +-{by[r][1]:>4.1f}" if r in by else f"{'-':>14}" for r in ratios)
        lines.append(display_name(spec).ljust(name_w) + cells)
    return "\n".join(lines)


_REP_NAMES = {"s1": "Z_S1", "s2": "Z_S2", "u1": "Z_U1", "u2": "Z_U2", "z1": "Z_1", "z2": "Z_2"}


def _probe_table(table: dict[str, dict[str, dict[str, list[float]]]], title: str, row_name: str, digits: int) -> str:
    """One probe's table: a column per (method, representation), a row per latent, seed means."""
    cols = [(spec, rep) for spec, reps in table.items() for rep in reps]
    headers = [f"{display_name(spec)} {_REP_NAMES[rep]}" for spec, rep in cols]
    width = max(12, *(len(h) + 2 for h in headers))
    lines = [title, " " * 10 + "".join(h.rjust(width) for h in headers)]
    for latent in LATENTS:
        cells = "".join(f"{statistics.mean(table[spec][rep][latent]):>{width}.{digits}f}" for spec, rep in cols)
        lines.append(row_name.format(latent).ljust(10) + cells)
    return "\n".join(lines)


def format_mi_table(results: SyntheticResults) -> str:
    """Table 4.1: bits about each latent in each learned representation."""
    if not results.mi_bits:
        return "MI probing: not run"
    title = f"MI probing (bits; InfoNCE lower bound on held-out pairs, ceiling {results.mi_ceiling_bits:.1f} bits)"
    return _probe_table(results.mi_bits, title, "I(Z; {})", 2)


def format_r2_table(results: SyntheticResults) -> str:
    """The R^2 probe: how much of each latent a linear decoder recovers from each representation."""
    if not results.r2:
        return "R^2 probing: not run"
    title = "Linear-decoding R^2 of each latent (held-out, mean over its dimensions; 1 = linearly recoverable)"
    return _probe_table(results.r2, title, "R2({})", 3)


def format_claims(results: SyntheticResults) -> str:
    return "\n".join(("PASS: " if c["passed"] else "FAIL: ") + c["text"] for c in results.claims)


def plot_accuracy(results: SyntheticResults, path: str | Path) -> Path:
    """Accuracy against unique_ratio, one line per method with a +-std band (like Figure 4.1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results.accuracy_summary()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for spec, by in summary.items():
        ratios = sorted(by, key=float)
        xs = [float(r) for r in ratios]
        mean = [by[r][0] for r in ratios]
        std = [by[r][1] for r in ratios]
        style = "-" if spec.startswith("factorcl") else "--"
        (line,) = ax.plot(xs, mean, style, marker="o", label=display_name(spec))
        ax.fill_between(
            xs,
            [m - s for m, s in zip(mean, std)],
            [m + s for m, s in zip(mean, std)],
            color=line.get_color(),
            alpha=0.15,
        )
    ax.set_xlabel("unique_ratio (0: label from shared w_s only, 1: from unique w_1, w_2 only)")
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.set_title("Synthetic shared/unique benchmark")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def config_from(quick: bool, **overrides: Any) -> SyntheticBenchmarkConfig:
    """The full-sweep config, or the quickstart one, with overrides (None values ignored)."""
    base = SyntheticBenchmarkConfig(**QUICK) if quick else SyntheticBenchmarkConfig()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
