"""The PID result and the information quantities of a discrete joint p(x1, x2, y), in bits.

Partial information decomposition (Bertschinger et al. 2014, "BROJA") splits the task information
I(X1, X2; Y) into four non-negative parts::

    R  = I_q*(X1; X2; Y)                    redundancy (shared)
    U1 = I_q*(X1; Y | X2)                   unique to X1
    U2 = I_q*(X2; Y | X1)                   unique to X2
    S  = I_p(X1, X2; Y) - I_q*(X1, X2; Y)   synergy

where q* maximises H_q(Y | X1, X2) over the joints q that keep p's marginals p(x1, y) and p(x2, y).
Since q* keeps them, R + U1 = I(X1; Y), R + U2 = I(X2; Y) and R + U1 + U2 + S = I(X1, X2; Y).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["PARTS", "PID", "check_joint", "mutual_informations", "pid_from_q"]

#: The four parts, in the order every table prints them.
PARTS = ("R", "U1", "U2", "S")
#: How far from 1 the sum of p may be (rounding); p is renormalised after the check.
SUM_TOLERANCE = 1e-6


@dataclass
class PID:
    """A partial information decomposition of I(X1, X2; Y), in bits.

    ``R`` redundancy, ``U1`` / ``U2`` information unique to X1 / X2, ``S`` synergy, ``total`` =
    I(X1, X2; Y). ``ci`` holds bootstrap confidence intervals ``{name: (low, high)}`` when they
    were asked for; ``method`` names the estimator; ``info`` records how the numbers were made
    (cluster counts, sample sizes, the marginal informations, solver status, ...).
    """

    R: float
    U1: float
    U2: float
    S: float
    total: float
    method: str = "cvx"
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def shares(self) -> dict[str, float]:
        """Each part as a fraction of ``total`` (all zero when the total is zero)."""
        if self.total <= 0:
            return {k: 0.0 for k in PARTS}
        return {k: getattr(self, k) / self.total for k in PARTS}

    def shares_extended(self) -> dict[str, float]:
        """:meth:`shares` plus ``unique_share`` ((U1 + U2) / total), ``redundancy_share`` and ``synergy_share``."""
        s = self.shares()
        return {**s, "unique_share": s["U1"] + s["U2"], "redundancy_share": s["R"], "synergy_share": s["S"]}

    def parts(self) -> dict[str, float]:
        """``{"R": ..., "U1": ..., "U2": ..., "S": ...}`` in bits."""
        return {k: getattr(self, k) for k in PARTS}

    def dominant(self) -> str:
        """The name of the largest part."""
        parts = self.parts()
        return max(parts, key=parts.get)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: the parts, total, shares, method, intervals and info."""
        out = asdict(self)
        out["ci"] = {k: [float(lo), float(hi)] for k, (lo, hi) in self.ci.items()}
        out["shares"] = self.shares_extended()
        out["units"] = "bits"
        return out


def check_joint(p: Any, name: str = "p") -> np.ndarray:
    """``p`` as a float64 [|X1|, |X2|, |Y|] array that is a probability distribution, else ValueError."""
    try:
        arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric [|X1|, |X2|, |Y|] array, got {type(p).__name__}") from exc
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3-d joint array [|X1|, |X2|, |Y|], got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise ValueError(f"{name} must have at least one value per axis, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold finite probabilities, got NaN or inf")
    if arr.min() < 0:
        raise ValueError(f"{name} must hold probabilities >= 0, got a negative entry {arr.min():.3g}")
    total = float(arr.sum())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"{name} must sum to 1 (a joint distribution), got {total:.6g}")
    return arr / total


def _xlogx_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """sum a log2(a / b) over a > 0 (b > 0 wherever a > 0)."""
    mask = a > 0
    return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))


def _mi_xy(pxy: np.ndarray) -> float:
    """I(X; Y) of a 2-d joint [|X|, |Y|]."""
    px = pxy.sum(axis=1, keepdims=True)
    py = pxy.sum(axis=0, keepdims=True)
    return max(_xlogx_ratio(pxy, px * py), 0.0)


def mutual_informations(p: np.ndarray) -> dict[str, float]:
    """I(X1; Y), I(X2; Y), I(X1, X2; Y) and H(Y) of a joint [|X1|, |X2|, |Y|], in bits."""
    py = p.sum(axis=(0, 1))
    h_y = -float(np.sum(py[py > 0] * np.log2(py[py > 0])))
    return {
        "I(X1;Y)": _mi_xy(p.sum(axis=1)),
        "I(X2;Y)": _mi_xy(p.sum(axis=0)),
        "I(X1,X2;Y)": _mi_xy(p.reshape(-1, p.shape[2])),
        "H(Y)": h_y,
    }


def pid_from_q(p: np.ndarray, q: np.ndarray, method: str = "cvx", info: dict[str, Any] | None = None) -> PID:
    """The PID of p given the optimum q* of the BROJA problem (both [|X1|, |X2|, |Y|])."""
    mi = mutual_informations(p)
    iq_joint = _mi_xy(q.reshape(-1, q.shape[2]))
    i1, i2, total = mi["I(X1;Y)"], mi["I(X2;Y)"], mi["I(X1,X2;Y)"]
    # The marginal identities hold exactly by construction: R + U1 = I(X1;Y), R + U2 = I(X2;Y),
    # and the four parts sum to I(X1,X2;Y); only the solver's tolerance is in I_q*(X1,X2;Y).
    info = dict(info or {})
    info.update({k: v for k, v in mi.items()})
    info["I_q(X1,X2;Y)"] = iq_joint
    return PID(
        R=i1 + i2 - iq_joint,
        U1=iq_joint - i2,
        U2=iq_joint - i1,
        S=total - iq_joint,
        total=total,
        method=method,
        info=info,
    )


def bits(nats: float) -> float:
    """nats -> bits."""
    return nats / math.log(2.0)
