"""``factorcl.quantify``: how much of a task's information is redundant, unique or synergistic (PID).

- :func:`pid_discrete`: the exact BROJA PID of a discrete joint p [|X1|, |X2|, |Y|] (CVX).
- :func:`estimate`: the PID of samples, by CVX on discretised modalities or by the neural BATCH
  estimator, with bootstrap intervals.
- :func:`coinformation_terms`: the FactorCL chapter's S = I(X1; X2; Y), U1 = I(X1; Y | X2) and U2,
  estimated with the project's InfoNCE bound, for comparison with the PID.
- :func:`recommend`: a plain recommendation from a PID.

The CVX estimator needs the optional ``quantify`` extra (cvxpy): ``pip install 'factorcl[quantify]'``.
"""

from .batch import BatchConfig
from .cvx import pid_discrete
from .estimate import METHODS, estimate
from .pid import PARTS, PID

__all__ = ["METHODS", "PARTS", "PID", "BatchConfig", "estimate", "pid_discrete"]
