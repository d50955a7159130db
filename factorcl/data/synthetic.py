"""Synthetic shared/unique data with known latents (Section 4.4.1).

Latents w_s (shared), w_1, w_2 (unique) ~ N(0, 0.5 I); x1 = T1([w_s, w_1]), x2 = T2([w_s, w_2])
with fixed random transforms to ``input_dim`` dimensions (linear, as published, or a fixed random
MLP), plus optional observation noise. Labels mix shared and unique latents: ``unique_ratio`` 0
makes them depend on w_s only, 1 on w_1 and w_2 only (``label="synergy"``: on the XOR of signs
of w_1 and w_2, which neither modality predicts alone; ``label="two_bits"``: four classes
y = 2 b1 + b2, bit b1 from w_s and w_1, bit b2 from w_s and w_2, so that ``unique_ratio`` 1 makes
each bit information unique to one modality in the PID sense). Inputs do not depend on the labelling, so
:meth:`SyntheticData.relabel` gives a new task on identical inputs.

With ``nuisance_dim`` > 0 the inputs also carry task-irrelevant latents: n_s, shared by both
modalities (task-irrelevant shared information, I(X1; X2 | Y) > 0, what FactorCL's removal term
targets), and n_1, n_2, one per modality. :meth:`SyntheticData.nuisance_augmentation` is the
optimal augmentation of Definition 3 for them: it redraws the nuisance latents of an input and
keeps everything the task needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .pairs import PairDataset

SPLITS = ("train", "val", "test")
LABEL_FUNCTIONS = ("linear", "nonlinear", "synergy", "two_bits")
TRANSFORMS = ("linear", "nonlinear")
LATENT_VAR = 0.5  # the published generator's latent covariance 0.5 I


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines a synthetic dataset."""

    num_samples: int = 30000
    shared_dim: int = 10
    unique1_dim: int = 6
    unique2_dim: int = 6
    nuisance_dim: int = 0  # dimensions of each task-irrelevant latent n_s (shared), n_1, n_2
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
        if self.nuisance_dim < 0:
            raise ValueError(f"nuisance_dim must be >= 0, got {self.nuisance_dim}")
        latent = self.shared_dim + max(self.unique1_dim, self.unique2_dim) + 2 * self.nuisance_dim
        if self.transform == "linear" and latent > self.input_dim:
            raise ValueError(
                f"input_dim must be >= the latent dimension {latent} of each modality for the linear "
                f"transform to keep every latent, got {self.input_dim}"
            )
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
    n_s: Tensor | None = None
    n_1: Tensor | None = None
    n_2: Tensor | None = None
    transforms: tuple[Tensor, Tensor] | None = field(default=None, repr=False)  # linear T1, T2 (float64)

    def nuisance_augmentation(self, modality: int) -> NuisanceResample:
        """The optimal augmentation of x_modality (Definition 3): its nuisance latents redrawn.

        Needs ``nuisance_dim`` > 0 and the linear transform (whose pseudo-inverse recovers the
        latents of any input).
        """
        cfg = self.config
        if cfg.nuisance_dim == 0:
            raise ValueError("nuisance_augmentation needs data made with nuisance_dim > 0")
        if self.transforms is None:
            raise ValueError(
                "nuisance_augmentation needs transform='linear' (the latents are read back through "
                "the transform's pseudo-inverse)"
            )
        if modality not in (1, 2):
            raise ValueError(f"modality must be 1 or 2, got {modality}")
        t = self.transforms[modality - 1]
        unique = cfg.unique1_dim if modality == 1 else cfg.unique2_dim
        start = cfg.shared_dim + unique
        return NuisanceResample(t, start, t.shape[0])

    def split(self, name: str) -> PairDataset:
        """The ``train``, ``val`` or ``test`` split as a dataset of ``{"x1", "x2", "y"}`` items."""
        idx = self._idx(name)
        return PairDataset(self.x1[idx], self.x2[idx], self.y[idx])

    def latents(self, name: str) -> dict[str, Tensor]:
        """Ground-truth latents ``{"w_s", "w_1", "w_2"}`` of a split, row-aligned with :meth:`split`."""
        idx = self._idx(name)
        return {"w_s": self.w_s[idx], "w_1": self.w_1[idx], "w_2": self.w_2[idx]}

    def relabel(self, unique_ratio: float | None = None, label: str | None = None) -> SyntheticData:
        """The same inputs and latents with labels from another ``unique_ratio`` / label function."""
        cfg = replace(
            self.config,
            unique_ratio=self.config.unique_ratio if unique_ratio is None else unique_ratio,
            label=label or self.config.label,
        )
        y = make_labels(self.w_s, self.w_1, self.w_2, cfg.unique_ratio, cfg.label, cfg.seed)
        return replace(self, config=cfg, y=y)

    def _idx(self, name: str) -> Tensor:
        if name not in self.indices:
            raise ValueError(f"split must be one of {list(self.indices)}, got {name!r}")
        return self.indices[name]


class NuisanceResample:
    """x' = x + (n' - n) T_n: redraws the nuisance latents n of linear inputs x = [w, n] T.

    n is read back as x T^+ (rows ``start:stop`` of the latents), n' ~ N(0, 0.5 I) is fresh, so
    x' keeps every task-relevant latent exactly and shares nothing else with x. Batched, on the
    input's device and dtype, reproducible with ``generator``; never modifies its input.
    """

    def __init__(self, transform: Tensor, start: int, stop: int) -> None:
        self.pinv = torch.linalg.pinv(transform)[:, start:stop].float()  # [input_dim, n_dim]
        self.rows = transform[start:stop].float()  # [n_dim, input_dim]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.pinv.shape[0]:
            raise ValueError(f"x must be [B, {self.pinv.shape[0]}], got shape {tuple(x.shape)}")
        pinv, rows = self.pinv.to(x.device, x.dtype), self.rows.to(x.device, x.dtype)
        n = x @ pinv
        gen_device = generator.device if generator is not None else x.device
        fresh = torch.randn(n.shape, generator=generator, device=gen_device).to(x.device, x.dtype) * math.sqrt(
            LATENT_VAR
        )
        return x + (fresh - n) @ rows


def make_labels(
    w_s: Tensor, w_1: Tensor, w_2: Tensor, unique_ratio: float, label: str = "linear", seed: int = 0
) -> Tensor:
    """Binary labels from score = (1 - r) g_s(w_s) + r (g_1(w_1) + g_2(w_2)) / sqrt(2), r = ``unique_ratio``.

    Each g is a fixed (seeded) function of one latent, scaled to unit variance: a random unit
    direction for ``linear`` (labels linearly separable in the latents), a random tanh MLP for
    ``nonlinear`` (not). The label is score > 0 for ``linear`` and score > its population median
    (estimated from a separate draw of latents) for ``nonlinear``, so classes are balanced.
    ``synergy`` ignores ``unique_ratio``: the label is sign(g_1(w_1)) XOR sign(g_2(w_2)) with linear
    g's, independent of each modality alone (I(X_i; Y) = 0) and determined by both jointly.
    ``two_bits`` (four classes): y = 2 b1 + b2 with b1 = [(1 - r) g_s + r g_1 > 0] and
    b2 = [(1 - r) g_s + r g_2 > 0], linear g's. At r = 0 both bits are sign(g_s): one bit, all
    redundant. At r = 1 they are independent bits, one per modality: two bits, one unique to each
    (the PID "COPY" case). The ``linear`` label's unique_ratio does not do this: it treats X1 and
    X2 symmetrically, so its unique latents make synergy and redundancy in the PID, not unique
    information (see ``factorcl quantify`` in the README).
    """
    if label not in LABEL_FUNCTIONS:
        raise ValueError(f"label must be one of {list(LABEL_FUNCTIONS)}, got {label!r}")
    if not 0.0 <= unique_ratio <= 1.0:
        raise ValueError(f"unique_ratio must be in [0, 1], got {unique_ratio}")
    if label == "synergy":
        gen = torch.Generator().manual_seed(10_007 * (seed + 1) + 29)
        v1 = torch.randn(w_1.shape[1], generator=gen, dtype=torch.float64)
        v2 = torch.randn(w_2.shape[1], generator=gen, dtype=torch.float64)
        return ((w_1.double() @ v1 > 0) ^ (w_2.double() @ v2 > 0)).long()
    if label == "two_bits":
        gen = torch.Generator().manual_seed(10_007 * (seed + 1) + 31)
        vs, v1, v2 = (
            torch.nn.functional.normalize(torch.randn(w.shape[1], generator=gen, dtype=torch.float64), dim=0)
            for w in (w_s, w_1, w_2)
        )
        shared = (1.0 - unique_ratio) * (w_s.double() @ vs)
        b1 = (shared + unique_ratio * (w_1.double() @ v1) > 0).long()
        b2 = (shared + unique_ratio * (w_2.double() @ v2) > 0).long()
        return 2 * b1 + b2
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
    nuisance: dict[str, Tensor | None] = {"n_s": None, "n_1": None, "n_2": None}
    if cfg.nuisance_dim > 0:
        # Drawn after the task latents, so that nuisance_dim = 0 reproduces the published data exactly.
        nuisance = {
            k: torch.randn(n, cfg.nuisance_dim, generator=gen, dtype=torch.float64) * std for k in ("n_s", "n_1", "n_2")
        }
        z1 = torch.cat([z1, nuisance["n_s"], nuisance["n_1"]], dim=1)
        z2 = torch.cat([z2, nuisance["n_s"], nuisance["n_2"]], dim=1)
    transforms = None
    if cfg.transform == "linear":
        # The published transform: a fixed matrix with U(0, 1) entries.
        t1 = torch.rand(z1.shape[1], cfg.input_dim, generator=gen, dtype=torch.float64)
        t2 = torch.rand(z2.shape[1], cfg.input_dim, generator=gen, dtype=torch.float64)
        x1, x2 = z1 @ t1, z2 @ t2
        transforms = (t1, t2)
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
    as_float = {k: None if v is None else v.float() for k, v in nuisance.items()}
    return SyntheticData(
        cfg,
        x1.float(),
        x2.float(),
        y,
        w_s.float(),
        w_1.float(),
        w_2.float(),
        indices,
        transforms=transforms,
        **as_float,
    )
