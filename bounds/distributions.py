"""Samplers with closed-form (conditional) mutual information, to check estimators against.

All samplers draw from a ``torch.Generator`` when one is given, so a seed fixes every batch.
Mutual information is in nats. Besides Gaussians, :class:`StudentTPair` (heavy tails, dependence
through a shared scale) and :class:`MonotoneTransformed` (any of them pushed through an
invertible per-coordinate map, which leaves the MI unchanged) are non-Gaussian closed-form cases.
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


def student_t_mi_correction(df: float, x_dim: int, y_dim: int) -> float:
    """f(nu, p, q) >= 0: what a multivariate Student-t pair adds to the MI of its Gaussian dispersion.

    I(X; Y) = I_Gaussian(Sigma) + f(nu, p, q) for a (p + q)-dimensional Student-t with nu degrees of
    freedom (Arellano-Valle, Contreras-Reyes and Genton, 2013): the shared chi-square scale makes
    X and Y dependent even with a block-diagonal dispersion. f -> 0 as nu -> infinity.
    """
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if x_dim < 1 or y_dim < 1:
        raise ValueError(f"x_dim and y_dim must be >= 1, got {x_dim} and {y_dim}")
    nu, p, q = float(df), int(x_dim), int(y_dim)
    half = [nu / 2, (nu + p) / 2, (nu + q) / 2, (nu + p + q) / 2]
    psi = torch.special.digamma(torch.tensor(half, dtype=torch.float64)).tolist()
    return (
        math.lgamma(half[0])
        + math.lgamma(half[3])
        - math.lgamma(half[1])
        - math.lgamma(half[2])
        + half[1] * psi[1]
        + half[2] * psi[2]
        - half[0] * psi[0]
        - half[3] * psi[3]
    )


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
    def from_mi(cls, dim: int, mi: float) -> CorrelatedGaussian:
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
        return self.pointwise_log_ratio(x.unsqueeze(1), y.unsqueeze(0))

    def pointwise_log_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y) / (p(x) p(y)) of aligned (broadcast) rows, [...]; its mean over samples estimates I."""
        r2 = 1.0 - self.rho**2
        diff = y - self.rho * x
        return (-0.5 * (diff**2).sum(-1) / r2 + 0.5 * (y**2).sum(-1)) - 0.5 * self.dim * math.log(r2)


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


def _chi2_over_df(batch_size: int, df: float, generator: torch.Generator | None, device) -> Tensor:
    """chi^2_nu / nu draws [batch_size] (float64), from ``generator`` so a seed fixes them."""
    # torch.distributions.Gamma takes no generator; the sampler under it does. chi^2_nu = 2 Gamma(nu/2).
    gen_device = generator.device if generator is not None else (device or "cpu")
    alpha = torch.full((batch_size,), df / 2.0, dtype=torch.float64, device=gen_device)
    return 2.0 * torch._standard_gamma(alpha, generator=generator) / df


@dataclass(frozen=True)
class StudentTPair:
    """(X, Y) jointly multivariate Student-t with ``df`` degrees of freedom, zero location.

    Dispersion Sigma = [[I_p, rho J], [rho J^T, I_q]], with J pairing x_k with y_k for
    k < min(p, q): (X, Y) = Z / sqrt(W) with Z ~ N(0, Sigma) and W ~ chi^2_nu / nu shared by X and Y.
    Heavy-tailed (df = 1 is the Cauchy case: no mean), and dependent even at rho = 0 through W:

        I(X; Y) = -(min(p, q) / 2) log(1 - rho^2) + f(nu, p, q)    (see :func:`student_t_mi_correction`)

    The marginals are Student-t with the same nu and identity dispersion; ``log_density_ratio``
    is the exact optimal critic. Identity dispersion, 5 + 5 dims: I = 0.801, 0.448, 0.166 nats
    for df = 1, 2, 5.
    """

    x_dim: int
    y_dim: int
    df: float
    rho: float = 0.0

    def __post_init__(self) -> None:
        _check_rho(self.rho)
        if self.x_dim < 1 or self.y_dim < 1:
            raise ValueError(f"x_dim and y_dim must be >= 1, got {self.x_dim} and {self.y_dim}")
        if not self.df > 0:
            raise ValueError(f"df must be > 0, got {self.df}")

    @property
    def paired(self) -> int:
        """How many (x_k, y_k) coordinate pairs the dispersion correlates: min(p, q)."""
        return min(self.x_dim, self.y_dim)

    @property
    def gaussian_mi(self) -> float:
        """I_Gaussian(Sigma) = 0.5 log(|Sigma_11| |Sigma_22| / |Sigma|): the MI of Z ~ N(0, Sigma)."""
        return gaussian_mi(self.rho, self.paired)

    @property
    def mi(self) -> float:
        """I(X; Y) in nats: the Gaussian part plus the shared-scale term f(nu, p, q)."""
        return self.gaussian_mi + student_t_mi_correction(self.df, self.x_dim, self.y_dim)

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> tuple[Tensor, Tensor]:
        """A batch (x [batch_size, p], y [batch_size, q])."""
        k = self.paired
        x = _normal((batch_size, self.x_dim), generator, device, torch.float64)
        e = _normal((batch_size, self.y_dim), generator, device, torch.float64)
        y = e.clone()
        y[:, :k] = self.rho * x[:, :k] + math.sqrt(1.0 - self.rho**2) * e[:, :k]
        scale = _chi2_over_df(batch_size, self.df, generator, device).to(x.device).rsqrt().unsqueeze(1)
        dtype = dtype or torch.float32
        return (x * scale).to(dtype), (y * scale).to(dtype)

    def log_density_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x_i, y_j) - log p(x_i) - log p(y_j) for every pair, [B, N]: the optimal critic."""
        return self.pointwise_log_ratio(x.unsqueeze(1), y.unsqueeze(0))

    def pointwise_log_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y) / (p(x) p(y)) of aligned (broadcast) rows, [...]; its mean over samples estimates I."""
        nu, p, q, k = float(self.df), self.x_dim, self.y_dim, self.paired
        r2 = 1.0 - self.rho**2
        a, b = (x**2).sum(-1), (y**2).sum(-1)  # Mahalanobis norms of the marginals (identity dispersion)
        # The joint norm z^T Sigma^-1 z: a correlated pair adds (x^2 - 2 rho x y + y^2) / (1 - rho^2)
        # instead of x^2 + y^2.
        xk, yk = x[..., :k], y[..., :k]
        joint = a + b + ((xk**2 + yk**2) * (self.rho**2) - 2.0 * self.rho * xk * yk).sum(-1) / r2
        const = (
            math.lgamma((nu + p + q) / 2)
            + math.lgamma(nu / 2)
            - math.lgamma((nu + p) / 2)
            - math.lgamma((nu + q) / 2)
            - 0.5 * k * math.log(r2)
        )
        return (
            const
            - 0.5 * (nu + p + q) * torch.log1p(joint / nu)
            + 0.5 * (nu + p) * torch.log1p(a / nu)
            + 0.5 * (nu + q) * torch.log1p(b / nu)
        )


class DenseGaussian:
    """X ~ N(0, I_p), Y = A X + E with E ~ N(0, I_q): every y coordinate depends on every x coordinate.

    I(X; Y) = 0.5 log det(I_q + A A^T), which is 0.5 log(|Sigma_x| |Sigma_y| / |Sigma_joint|) for this
    joint Gaussian. :meth:`from_mi` draws a fixed random dense A from a seed and scales it to a target MI.
    """

    def __init__(self, mixing: Tensor) -> None:
        if not isinstance(mixing, Tensor) or mixing.dim() != 2 or 0 in mixing.shape:
            raise ValueError(f"mixing must be a non-empty [y_dim, x_dim] tensor, got {mixing!r:.60}")
        self.mixing = mixing.detach().to(torch.float64).cpu()
        self.y_dim, self.x_dim = self.mixing.shape

    @classmethod
    def from_mi(cls, x_dim: int, y_dim: int, mi: float, seed: int = 0) -> DenseGaussian:
        """A = c A0 with A0 ~ N(0, 1/p) drawn from ``seed`` and c chosen (bisection) so that I(X; Y) = mi."""
        if not mi > 0:
            raise ValueError(f"mi must be > 0, got {mi}")
        a0 = torch.randn(y_dim, x_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        a0 = a0 / math.sqrt(x_dim)
        lo, hi = 0.0, 1.0
        while cls(hi * a0).mi < mi:  # MI grows monotonically with the scale c
            hi *= 2.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cls(mid * a0).mi < mi else (lo, mid)
        return cls(0.5 * (lo + hi) * a0)

    @property
    def mi(self) -> float:
        """I(X; Y) = 0.5 log det(I + A A^T) in nats."""
        a = self.mixing
        return 0.5 * torch.logdet(torch.eye(self.y_dim, dtype=a.dtype) + a @ a.T).item()

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> tuple[Tensor, Tensor]:
        """A batch (x [batch_size, p], y [batch_size, q])."""
        x = _normal((batch_size, self.x_dim), generator, device, torch.float64)
        e = _normal((batch_size, self.y_dim), generator, device, torch.float64)
        y = x @ self.mixing.to(x.device).T + e
        dtype = dtype or torch.float32
        return x.to(dtype), y.to(dtype)

    def log_density_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log N(y_j; A x_i, I) - log N(y_j; 0, I + A A^T) for every pair, [B, N]: the optimal critic."""
        return self.pointwise_log_ratio(x.unsqueeze(1), y.unsqueeze(0))

    def pointwise_log_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y) / (p(x) p(y)) of aligned (broadcast) rows, [...]; its mean over samples estimates I."""
        a = self.mixing.to(device=x.device, dtype=x.dtype)
        cov_y = torch.eye(self.y_dim, dtype=x.dtype, device=x.device) + a @ a.T
        diff = y - x @ a.T
        marginal = (y @ torch.linalg.inv(cov_y) * y).sum(-1)
        return -0.5 * (diff**2).sum(-1) + 0.5 * marginal + 0.5 * torch.logdet(cov_y)


# Invertible, increasing per-coordinate maps and their inverses. sinh and the cube give heavy tails
# to a Gaussian (sinh: log-normal-like; cube: polynomial); asinh gives light, log-compressed ones.
TRANSFORMS: dict[str, tuple] = {
    "asinh": (torch.asinh, torch.sinh),
    "sinh": (torch.sinh, torch.asinh),
    "cube": (lambda t: t**3, lambda t: torch.sign(t) * t.abs() ** (1.0 / 3.0)),
}


@dataclass(frozen=True)
class MonotoneTransformed:
    """(T(X), T(Y)) for a base pair (X, Y) and an invertible per-coordinate map T (``TRANSFORMS``).

    MI is invariant under invertible maps of each variable, so I(T(X); T(Y)) = I(X; Y) of the base
    distribution: a free closed-form non-Gaussian case. The optimal critic is the base's, read at
    the pre-images (the Jacobians cancel in the density ratio).
    """

    base: CorrelatedGaussian | StudentTPair | DenseGaussian
    transform: str = "sinh"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {sorted(TRANSFORMS)}, got {self.transform!r}")
        if not hasattr(self.base, "pointwise_log_ratio"):
            raise ValueError(f"base must be a distribution with a closed-form MI, got {type(self.base).__name__}")

    @property
    def mi(self) -> float:
        """I(X; Y) in nats: that of the base distribution."""
        return self.base.mi

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> tuple[Tensor, Tensor]:
        """A batch (T(x), T(y)) of the base's shapes."""
        forward = TRANSFORMS[self.transform][0]
        x, y = self.base.sample(batch_size, generator=generator, device=device, dtype=torch.float64)
        dtype = dtype or torch.float32
        return forward(x).to(dtype), forward(y).to(dtype)

    def log_density_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """The optimal critic [B, N]: the base's at (T^-1(x), T^-1(y))."""
        inverse = TRANSFORMS[self.transform][1]
        return self.base.log_density_ratio(inverse(x), inverse(y))

    def pointwise_log_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y) / (p(x) p(y)) of aligned rows: the base's at the pre-images."""
        inverse = TRANSFORMS[self.transform][1]
        return self.base.pointwise_log_ratio(inverse(x), inverse(y))
