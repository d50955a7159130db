"""Data with a known PID answer: the thesis's Gaussian mixture and exact discrete cases (AND, XOR, ...)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DISCRETE_CASES", "discrete_case", "gaussian_mixture"]


def gaussian_mixture(
    n: int, angle: float, norm: float = 2.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The thesis's Gaussian mixture: y = +-1 (equally likely), (x1, x2) | y ~ N(y mu, I), mu = norm (cos, sin)(angle).

    Returns x1 [n, 1], x2 [n, 1], y [n] in {-1, +1}. At angle 0 only X1 sees the label (U1), at
    pi/2 only X2 (U2); at pi/4 the two see it alike, which the PID counts as redundancy plus synergy.
    """
    rng = np.random.default_rng(seed)
    y = rng.choice(np.array([-1, 1]), size=n)
    mu = norm * np.array([math.cos(angle), math.sin(angle)])
    x = y[:, None] * mu[None] + rng.standard_normal((n, 2))
    return x[:, :1], x[:, 1:], y


def _table(rule) -> np.ndarray:
    p = np.zeros((2, 2, 4))
    for a in range(2):
        for b in range(2):
            p[a, b, rule(a, b)] += 0.25
    return p


#: Two uniform independent bits X1, X2 and a target; the exact BROJA parts (R, U1, U2, S) in bits.
DISCRETE_CASES: dict[str, tuple[np.ndarray, tuple[float, float, float, float]]] = {
    "XOR": (_table(lambda a, b: a ^ b)[:, :, :2], (0.0, 0.0, 0.0, 1.0)),
    "AND": (_table(lambda a, b: a & b)[:, :, :2], (0.311278, 0.0, 0.0, 0.5)),
    "OR": (_table(lambda a, b: a | b)[:, :, :2], (0.311278, 0.0, 0.0, 0.5)),
    "COPY": (_table(lambda a, b: 2 * a + b), (0.0, 1.0, 1.0, 0.0)),
    "UNIQUE": (_table(lambda a, b: a)[:, :, :2], (0.0, 1.0, 0.0, 0.0)),
}


def _redundant_bit() -> np.ndarray:
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 1, 1] = 0.5  # X1 = X2 = Y
    return p


DISCRETE_CASES["REDUNDANT"] = (_redundant_bit(), (1.0, 0.0, 0.0, 0.0))


def discrete_case(name: str) -> np.ndarray:
    """The joint p [|X1|, |X2|, |Y|] of one of :data:`DISCRETE_CASES`."""
    try:
        return DISCRETE_CASES[name][0].copy()
    except KeyError:
        raise ValueError(f"case must be one of {sorted(DISCRETE_CASES)}, got {name!r}") from None
