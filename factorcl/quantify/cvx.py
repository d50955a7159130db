"""CVX: the exact BROJA PID of a discrete joint, by convex optimisation (cvxpy, exponential cones).

q* = argmax_{q in Delta_p} H_q(Y | X1, X2), Delta_p = {q >= 0 : q(x1, y) = p(x1, y), q(x2, y) = p(x2, y)}.
Maximising H_q(Y | X1, X2) is minimising sum q log(q(x1, x2, y) / q(x1, x2)), a sum of relative
entropies of affine expressions of q: a convex problem with linear constraints, solved by a conic
solver. Cells with p(x1, y) = 0 or p(x2, y) = 0 are zero in every q of Delta_p and are left out of
the problem, which keeps it small and keeps the solver away from the cones' boundary.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from ..extras import require
from .pid import PID, check_joint, pid_from_q

__all__ = ["pid_discrete", "solve_q_star"]

_WHAT = "the CVX PID estimator"  # cvxpy and scipy: the quantify extra (bounds and training do not need it)


def _incidence(keys: np.ndarray) -> tuple[Any, np.ndarray]:
    """A sparse 0/1 matrix [n_groups, n_cells] that sums the cells of each distinct key, and the keys."""
    sparse = require("scipy.sparse", "quantify", _WHAT)

    groups, inverse = np.unique(keys, return_inverse=True)
    n = len(keys)
    return sparse.csr_matrix((np.ones(n), (inverse, np.arange(n))), shape=(len(groups), n)), groups


def solve_q_star(p: np.ndarray, solver: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The BROJA optimum q* [|X1|, |X2|, |Y|] of a checked joint p, and the solver's record."""
    cp = require("cvxpy", "quantify", _WHAT)
    n1, n2, ny = p.shape
    p1y, p2y = p.sum(axis=1), p.sum(axis=0)  # [|X1|, |Y|], [|X2|, |Y|]
    a, b, y = np.nonzero((p1y[:, None, :] > 0) & (p2y[None, :, :] > 0))
    record: dict[str, Any] = {"variables": int(len(a)), "cells": int(p.size)}
    q = np.zeros_like(p)
    if ny == 1 or len(a) == 0:  # nothing to optimise: H(Y | X1, X2) = 0 for every q
        q[:] = p
        record.update(status="trivial", seconds=0.0)
        return q, record
    c1, g1 = _incidence(a * ny + y)
    c2, g2 = _incidence(b * ny + y)
    pair, _ = _incidence(a * n2 + b)
    target1 = p1y[g1 // ny, g1 % ny]
    target2 = p2y[g2 // ny, g2 % ny]
    var = cp.Variable(len(a), nonneg=True)
    pair_mass = pair.T @ (pair @ var)  # q(x1, x2) at every cell
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.rel_entr(var, pair_mass))),
        [c1 @ var == target1, c2 @ var == target2],
    )
    start = time.perf_counter()
    chosen = solver or ("CLARABEL" if "CLARABEL" in cp.installed_solvers() else None)
    try:
        with warnings.catch_warnings():  # "optimal_inaccurate" is recorded (and checked below), not printed
            warnings.simplefilter("ignore", UserWarning)
            problem.solve(solver=chosen)
    except cp.error.SolverError as exc:
        raise RuntimeError(f"the conic solver {chosen or 'default'} failed on the PID problem: {exc}") from exc
    record.update(status=problem.status, solver=chosen or "default", seconds=time.perf_counter() - start)
    if problem.status not in ("optimal", "optimal_inaccurate") or var.value is None:
        raise RuntimeError(f"the PID problem was not solved: solver status {problem.status!r}")
    values = np.clip(np.asarray(var.value, dtype=np.float64), 0.0, None)
    q[a, b, y] = values / values.sum()
    # How well q* keeps p's marginals (reduced-accuracy solutions are accepted when this is small).
    record["marginal_residual"] = float(max(np.abs(q.sum(axis=1) - p1y).max(), np.abs(q.sum(axis=0) - p2y).max()))
    if record["marginal_residual"] > 1e-5:
        raise RuntimeError(
            f"the PID solver returned q* off the marginals by {record['marginal_residual']:.2e} "
            f"(status {problem.status!r}); try solver='SCS' or fewer clusters"
        )
    return q, record


def pid_discrete(p: Any, solver: str | None = None) -> PID:
    """The BROJA PID (bits) of a joint probability array ``p`` [|X1|, |X2|, |Y|]: the CVX estimator.

    ``p`` must be non-negative and sum to 1. ``solver`` picks a cvxpy solver (default: Clarabel).
    ``info`` of the result holds I(X1;Y), I(X2;Y), I(X1,X2;Y), H(Y), I_q*(X1,X2;Y) and the solver's
    status, time and problem size.

    >>> xor = np.zeros((2, 2, 2)); xor[0, 0, 0] = xor[0, 1, 1] = xor[1, 0, 1] = xor[1, 1, 0] = 0.25
    >>> round(pid_discrete(xor).S, 3)
    1.0
    """
    arr = check_joint(p)
    q, record = solve_q_star(arr, solver=solver)
    return pid_from_q(arr, q, method="cvx", info={"solver": record})
