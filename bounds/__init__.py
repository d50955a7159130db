"""Mutual-information critics and contrastive bound estimators (torch only).

A critic scores every pair of a batch, ``scores[i, j] = f(x_i, y_j)`` ([B, N], positives on the
diagonal); every estimator is a function of such a matrix, in nats:

- :func:`infonce`: I_NCE, a lower bound on I(X; Y) (never above log N).
- :func:`nce_club`: I_NCE-CLUB, an upper bound when the critic is the optimal InfoNCE critic.
- :func:`club`: the original CLUB with a Gaussian q(y | x), for comparison.
- :mod:`bounds.conditional`: I(X; Y | C) by grouping, concatenation or the chain rule.
- :func:`supcon_loss`: supervised contrastive loss on a score matrix.
"""

from . import distributions
from ._checks import set_value_checks, value_checks_enabled
from .club import CLUB, club
from .conditional import (
    CONDITIONINGS,
    ConditionalInfoNCE,
    ConditionalNCECLUB,
    concat_condition,
    grouped_infonce,
    grouped_nce_club,
)
from .critics import ConcatCritic, SeparableCritic, critic_from_name, mlp
from .estimators import NCECLUB, InfoNCE, call_frozen, infonce, nce_club, positives
from .supcon import supcon_loss

__all__ = [
    "CLUB",
    "CONDITIONINGS",
    "ConcatCritic",
    "ConditionalInfoNCE",
    "ConditionalNCECLUB",
    "InfoNCE",
    "NCECLUB",
    "SeparableCritic",
    "call_frozen",
    "club",
    "concat_condition",
    "critic_from_name",
    "distributions",
    "grouped_infonce",
    "grouped_nce_club",
    "infonce",
    "mlp",
    "nce_club",
    "positives",
    "set_value_checks",
    "supcon_loss",
    "value_checks_enabled",
]
