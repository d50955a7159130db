"""Samplers with closed-form (conditional) mutual information, to check estimators against.

All samplers draw from a ``torch.Generator`` when one is given, so a seed fixes every batch.
Mutual information is in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def rho_from_mi(mi: float, dim: int) -> float:
    """The per-dimension correlation rho that gives I(X; Y) = mi for a d-dimensional correlated Gaussian."""
    if mi < 0:
        raise ValueError(f"mi must be >= 0, got {mi}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))


def gaussian_mi(rho: float, dim: int) -> float:
    """I(X; Y) = -(d/2) log(1 - rho^2) for d independent pairs with correlation rho."""
    return -0.5 * dim * math.log(1.0 - rho**2)


def _check_rho(rho: float) -> float:
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must be in (-1, 1), got {rho}")
    return float(rho)


def _normal(shape: tuple[int, ...], generator: torch.Generator | None, device, dtype) -> Tensor:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move.
    gen_device = generator.device if generator is not None else device
    out = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32)
    return out.to(device=device if device is not None else out.device, dtype=dtype or torch.float32)


@dataclass(frozen=True)
class CorrelatedGaussian:
    """X ~ N(0, I_d), Y = rho X + sqrt(1 - rho^2) E: d independent pairs with correlation rho.

    I(X; Y) = -(d/2) log(1 - rho^2); I + lautum = d (e^{2I/d} - 1) (the Jeffreys divergence), which
    is what NCE-CLUB returns with the analytic optimal critic.
    """

    dim: int
    rho: float

    def __post_init__(self) -> None:
        _check_rho(self.rho)
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")

    @classmethod
    def from_mi(cls, dim: int, mi: float) -> "CorrelatedGaussian":
        """The distribution with I(X; Y) = mi nats."""
        return cls(dim, rho_from_mi(mi, dim))

    @property
    def mi(self) -> float:
        """I(X; Y) in nats."""
        return gaussian_mi(self.rho, self.dim)

    @property
    def mi_plus_lautum(self) -> float:
        """I(X; Y) + lautum information L(X; Y) = d (e^{2I/d} - 1) in nats."""
        return self.dim * (math.exp(2.0 * self.mi / self.dim) - 1.0)

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> tuple[Tensor, Tensor]:
        """A batch (x, y), each [batch_size, dim]."""
        x = _normal((batch_size, self.dim), generator, device, dtype)
        e = _normal((batch_size, self.dim), generator, device, dtype)
        return x, self.rho * x + math.sqrt(1.0 - self.rho**2) * e

    def log_density_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """The analytic optimal critic log p(y_j | x_i) / p(y_j) for every pair, [B, N]."""
        r2 = 1.0 - self.rho**2
        diff = y.unsqueeze(0) - self.rho * x.unsqueeze(1)  # [B, N, d]
        return (-0.5 * (diff**2).sum(-1) / r2 + 0.5 * (y**2).sum(-1).unsqueeze(0)) - 0.5 * self.dim * math.log(r2)


@dataclass(frozen=True)
class DiscreteConditionalGaussian:
    """Z uniform on {0, 1}; given Z, (X, Y) is a correlated Gaussian with correlation +rho (Z=0) or -rho (Z=1).

    I(X; Y | Z) = -(d/2) log(1 - rho^2) in closed form. X and Y are each N(0, I) whatever Z is, so
    I(X; Z) = I(Y; Z) = 0 and I(X; Y) = I(X; Y | Z) - I(X; Z | Y) < I(X; Y | Z): the mixture hides
    the sign. I(X; Y) has no closed form; ``mi_xy`` estimates it by Monte Carlo from the exact
    posterior p(z | x, y).
    """

    dim: int
    rho: float

    def __post_init__(self) -> None:
        _check_rho(self.rho)

    @property
    def conditional_mi(self) -> float:
        """I(X; Y | Z) in nats."""
        return gaussian_mi(self.rho, self.dim)

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A batch (x [B, d], y [B, d], z [B] int64 in {0, 1})."""
        gen_device = generator.device if generator is not None else device
        z = torch.randint(0, 2, (batch_size,), generator=generator, device=gen_device)
        x = _normal((batch_size, self.dim), generator, device, dtype)
        e = _normal((batch_size, self.dim), generator, device, dtype)
        z = z.to(x.device)
        sign = (1 - 2 * z).to(x.dtype).unsqueeze(1)
        return x, sign * self.rho * x + math.sqrt(1.0 - self.rho**2) * e, z

    def log_density_ratio(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """log p(y_j | x_i, z_i) / p(y_j | z_i) for every pair, [B, N]: the optimal conditional critic."""
        r2 = 1.0 - self.rho**2
        sign = (1 - 2 * z).to(x.dtype).view(-1, 1, 1)
        diff = y.unsqueeze(0) - sign * self.rho * x.unsqueeze(1)
        return (-0.5 * (diff**2).sum(-1) / r2 + 0.5 * (y**2).sum(-1).unsqueeze(0)) - 0.5 * self.dim * math.log(r2)

    def mi_xy(self, num_samples: int = 1_000_000, generator: torch.Generator | None = None) -> float:
        """I(X; Y) = I(X; Y | Z) - (log 2 - H(Z | X, Y)), by Monte Carlo over ``num_samples`` draws."""
        x, y, _ = self.sample(num_samples, generator=generator, dtype=torch.float64)
        # log p(x, y | z) differs between z = 0 and z = 1 only through the cross term.
        cross = (x * y).sum(1) * self.rho / (1.0 - self.rho**2)
        logits = torch.stack([cross, -cross], dim=1)  # log p(z | x, y) up to a shared constant
        log_post = torch.log_softmax(logits, dim=1)
        h_z_given_xy = -(log_post.exp() * log_post).sum(1).mean().item()
        return self.conditional_mi - (math.log(2.0) - h_z_given_xy)


@dataclass(frozen=True)
class LinearGaussianCondition:
    """Z ~ N(0, I_d), X = a Z + U, Y = b Z + V with (U, V) correlated Gaussian pairs (corr rho).

    I(X; Y | Z) = I(U; V) = -(d/2) log(1 - rho^2); the marginal quantities below are closed forms
    of this jointly Gaussian (X, Y, Z).
    """

    dim: int
    a: float = 1.0
    b: float = 1.0
    rho: float = 0.8

    def __post_init__(self) -> None:
        _check_rho(self.rho)

    @property
    def conditional_mi(self) -> float:
        """I(X; Y | Z) in nats."""
        return gaussian_mi(self.rho, self.dim)

    @property
    def mi_xz(self) -> float:
        """I(X; Z) = (d/2) log(1 + a^2)."""
        return 0.5 * self.dim * math.log(1.0 + self.a**2)

    @property
    def mi_xy(self) -> float:
        """I(X; Y) from the correlation (ab + rho) / sqrt((1 + a^2)(1 + b^2)) of each pair."""
        corr = (self.a * self.b + self.rho) / math.sqrt((1 + self.a**2) * (1 + self.b**2))
        return gaussian_mi(corr, self.dim)

    @property
    def mi_x_yz(self) -> float:
        """I(X; Y, Z) = I(X; Z) + I(X; Y | Z)."""
        return self.mi_xz + self.conditional_mi

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A batch (x, y, z), each [batch_size, dim]."""
        z = _normal((batch_size, self.dim), generator, device, dtype)
        u = _normal((batch_size, self.dim), generator, device, dtype)
        e = _normal((batch_size, self.dim), generator, device, dtype)
        v = self.rho * u + math.sqrt(1.0 - self.rho**2) * e
        return self.a * z + u, self.b * z + v, z
