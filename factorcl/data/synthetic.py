"""Synthetic shared/unique data with known latents (Section 4.4.1).

Latents w_s (shared), w_1, w_2 (unique) ~ N(0, 0.5 I); x1 = T1([w_s, w_1]), x2 = T2([w_s, w_2])
with fixed random transforms to ``input_dim`` dimensions (linear, as published, or a fixed random
MLP), plus optional observation noise. Labels mix shared and unique latents: ``unique_ratio`` 0
makes them depend on w_s only, 1 on w_1 and w_2 only. Inputs do not depend on the labelling, so
:meth:`SyntheticData.relabel` gives a new task on identical inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .pairs import PairDataset

SPLITS = ("train", "val", "test")
LABEL_FUNCTIONS = ("linear", "nonlinear")
TRANSFORMS = ("linear", "nonlinear")
LATENT_VAR = 0.5  # the published generator's latent covariance 0.5 I


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines a synthetic dataset."""

    num_samples: int = 30000
    shared_dim: int = 10
    unique1_dim: int = 6
    unique2_dim: int = 6
    input_dim: int = 100
    transform: str = "linear"
    noise_std: float = 0.0
    unique_ratio: float = 0.0
    label: str = "linear"
    splits: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_samples < 3:
            raise ValueError(f"num_samples must be >= 3, got {self.num_samples}")
        for name in ("shared_dim", "unique1_dim", "unique2_dim", "input_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {list(TRANSFORMS)}, got {self.transform!r}")
        if self.label not in LABEL_FUNCTIONS:
            raise ValueError(f"label must be one of {list(LABEL_FUNCTIONS)}, got {self.label!r}")
        if not 0.0 <= self.unique_ratio <= 1.0:
            raise ValueError(f"unique_ratio must be in [0, 1], got {self.unique_ratio}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")
        if len(self.splits) != 3 or any(s < 0 for s in self.splits) or abs(sum(self.splits) - 1.0) > 1e-6:
            raise ValueError(f"splits must be three non-negative fractions summing to 1, got {self.splits}")


def _random_mlp(gen: torch.Generator, d_in: int, d_hidden: int, d_out: int) -> tuple[Tensor, Tensor, Tensor]:
    a = torch.randn(d_in, d_hidden, generator=gen, dtype=torch.float64) / math.sqrt(d_in)
    b = torch.randn(d_hidden, generator=gen, dtype=torch.float64) * 0.5
    c = torch.randn(d_hidden, d_out, generator=gen, dtype=torch.float64) / math.sqrt(d_hidden)
    return a, b, c


def _apply_mlp(w: Tensor, params: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    a, b, c = params
    # Scale into tanh's curved range so the map is far from linear.
    return torch.tanh(2.0 * (w @ a) + b) @ c


@dataclass
class SyntheticData:
    """Inputs, labels and ground-truth latents of every sample, with fixed train/val/test splits."""

    config: SyntheticConfig
    x1: Tensor
    x2: Tensor
    y: Tensor
    w_s: Tensor
    w_1: Tensor
    w_2: Tensor
    indices: dict[str, Tensor] = field(repr=False)

    def split(self, name: str) -> PairDataset:
        """The ``train``, ``val`` or ``test`` split as a dataset of ``{"x1", "x2", "y"}`` items."""
        idx = self._idx(name)
        return PairDataset(self.x1[idx], self.x2[idx], self.y[idx])

    def latents(self, name: str) -> dict[str, Tensor]:
        """Ground-truth latents ``{"w_s", "w_1", "w_2"}`` of a split, row-aligned with :meth:`split`."""
        idx = self._idx(name)
        return {"w_s": self.w_s[idx], "w_1": self.w_1[idx], "w_2": self.w_2[idx]}

    def relabel(self, unique_ratio: float | None = None, label: str | None = None) -> "SyntheticData":
        """The same inputs and latents with labels from another ``unique_ratio`` / label function."""
        cfg = replace(self.config, unique_ratio=self.config.unique_ratio if unique_ratio is None else unique_ratio,
                      label=label or self.config.label)
        y = make_labels(self.w_s, self.w_1, self.w_2, cfg.unique_ratio, cfg.label, cfg.seed)
        return replace(self, config=cfg, y=y)

    def _idx(self, name: str) -> Tensor:
        if name not in self.indices:
            raise ValueError(f"split must be one of {list(self.indices)}, got {name!r}")
        return self.indices[name]


def make_labels(w_s: Tensor, w_1: Tensor, w_2: Tensor, unique_ratio: float, label: str = "linear", seed: int = 0) -> Tensor:
    """Binary labels from score = (1 - r) g_s(w_s) + r (g_1(w_1) + g_2(w_2)) / sqrt(2), r = ``unique_ratio``.

    Each g is a fixed (seeded) function of one latent, scaled to unit variance: a random unit
    direction for ``linear`` (labels linearly separable in the latents), a random tanh MLP for
    ``nonlinear`` (not). The label is score > 0 for ``linear`` and score > its population median
    (estimated from a separate draw of latents) for ``nonlinear``, so classes are balanced.
    """
    if label not in LABEL_FUNCTIONS:
        raise ValueError(f"label must be one of {list(LABEL_FUNCTIONS)}, got {label!r}")
    if not 0.0 <= unique_ratio <= 1.0:
        raise ValueError(f"unique_ratio must be in [0, 1], got {unique_ratio}")
    gen = torch.Generator().manual_seed(10_007 * (seed + 1) + (17 if label == "nonlinear" else 0))
    dims = (w_s.shape[1], w_1.shape[1], w_2.shape[1])
    if label == "linear":
        dirs = [torch.nn.functional.normalize(torch.randn(d, generator=gen, dtype=torch.float64), dim=0) for d in dims]
        fns = [lambda w, v=v: w @ v for v in dirs]
        std = math.sqrt(LATENT_VAR)  # a unit direction of N(0, 0.5 I)
        scales = [std, std, std]
    else:
        params = [_random_mlp(gen, d, 32, 1) for d in dims]
        fns = [lambda w, p=p: _apply_mlp(w, p).squeeze(-1) for p in params]
        ref = [torch.randn(200_000, d, generator=gen, dtype=torch.float64) * math.sqrt(LATENT_VAR) for d in dims]
        scales = [float(fn(r).std()) for fn, r in zip(fns, ref)]
        centres = [float(fn(r).mean()) for fn, r in zip(fns, ref)]
        fns = [lambda w, fn=fn, c=c: fn(w) - c for fn, c in zip(fns, centres)]

    def score(ws: Tensor, w1: Tensor, w2: Tensor) -> Tensor:
        gs, g1, g2 = (fn(w.double()) / s for fn, w, s in zip(fns, (ws, w1, w2), scales))
        return (1.0 - unique_ratio) * gs + unique_ratio * (g1 + g2) / math.sqrt(2.0)

    threshold = 0.0
    if label == "nonlinear":
        threshold = float(score(*ref).median())
    return (score(w_s, w_1, w_2) > threshold).long()


def make_synthetic(config: SyntheticConfig | None = None, **overrides) -> SyntheticData:
    """Generate a synthetic dataset (vectorised, seeded); keywords override :class:`SyntheticConfig` fields."""
    cfg = replace(config or SyntheticConfig(), **overrides) if overrides else (config or SyntheticConfig())
    gen = torch.Generator().manual_seed(cfg.seed)
    n, std = cfg.num_samples, math.sqrt(LATENT_VAR)
    w_s = torch.randn(n, cfg.shared_dim, generator=gen, dtype=torch.float64) * std
    w_1 = torch.randn(n, cfg.unique1_dim, generator=gen, dtype=torch.float64) * std
    w_2 = torch.randn(n, cfg.unique2_dim, generator=gen, dtype=torch.float64) * std
    z1, z2 = torch.cat([w_s, w_1], dim=1), torch.cat([w_s, w_2], dim=1)
    if cfg.transform == "linear":
        # The published transform: a fixed matrix with U(0, 1) entries.
        t1 = torch.rand(z1.shape[1], cfg.input_dim, generator=gen, dtype=torch.float64)
        t2 = torch.rand(z2.shape[1], cfg.input_dim, generator=gen, dtype=torch.float64)
        x1, x2 = z1 @ t1, z2 @ t2
    else:
        x1 = _apply_mlp(z1, _random_mlp(gen, z1.shape[1], 4 * cfg.input_dim, cfg.input_dim))
        x2 = _apply_mlp(z2, _random_mlp(gen, z2.shape[1], 4 * cfg.input_dim, cfg.input_dim))
    if cfg.noise_std > 0:
        x1 = x1 + cfg.noise_std * torch.randn(x1.shape, generator=gen, dtype=torch.float64)
        x2 = x2 + cfg.noise_std * torch.randn(x2.shape, generator=gen, dtype=torch.float64)
    perm = torch.randperm(n, generator=gen)
    n_train, n_val = int(round(cfg.splits[0] * n)), int(round(cfg.splits[1] * n))
    indices = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}
    y = make_labels(w_s, w_1, w_2, cfg.unique_ratio, cfg.label, cfg.seed)
    return SyntheticData(cfg, x1.float(), x2.float(), y, w_s.float(), w_1.float(), w_2.float(), indices)
