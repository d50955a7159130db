"""Mutual-information critics and contrastive bound estimators (torch only).

A critic scores every pair of a batch, ``scores[i, j] = f(x_i, y_j)`` ([B, N], positives on the
diagonal); every estimator is a function of such a matrix, in nats:

- :func:`infonce`: I_NCE, a lower bound on I(X; Y) (never above log N).
- :func:`nce_club`: I_NCE-CLUB, an upper bound when the critic is the optimal InfoNCE critic.
- :func:`check_bracket`: both of one matrix, flagging an NCE-CLUB below InfoNCE (a broken bound).
- :func:`club`: the original CLUB with a Gaussian q(y | x), for comparison.
- :mod:`bounds.conditional`: I(X; Y | C) by grouping, concatenation, the chain rule, or
  negatives sampled from a learned q(y | c) (:mod:`bounds.sampled`, valid when I(X; C) >> log B).
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
    conditional_estimator,
    grouped_infonce,
    grouped_nce_club,
)
from .critics import ConcatCritic, SeparableCritic, critic_from_name, mlp
from .estimators import (
    NCECLUB,
    BracketCheck,
    BrokenBracketWarning,
    InfoNCE,
    call_frozen,
    check_bracket,
    infonce,
    nce_club,
    positives,
)
from .sampled import (
    GaussianProposal,
    sampled_infonce,
    sampled_nce_club,
    score_candidates,
    score_positive_and_shared,
)
from .supcon import supcon_loss

__all__ = [
    "BracketCheck",
    "BrokenBracketWarning",
    "CLUB",
    "CONDITIONINGS",
    "ConcatCritic",
    "ConditionalInfoNCE",
    "ConditionalNCECLUB",
    "GaussianProposal",
    "InfoNCE",
    "NCECLUB",
    "SeparableCritic",
    "call_frozen",
    "check_bracket",
    "club",
    "concat_condition",
    "conditional_estimator",
    "critic_from_name",
    "distributions",
    "grouped_infonce",
    "grouped_nce_club",
    "infonce",
    "mlp",
    "nce_club",
    "positives",
    "sampled_infonce",
    "sampled_nce_club",
    "score_candidates",
    "score_positive_and_shared",
    "set_value_checks",
    "supcon_loss",
    "value_checks_enabled",
]
