"""InfoNCE lower bound and NCE-CLUB upper bound on I(X; Y), as pure functions of a score matrix.

Every function takes ``scores[i, j] = f(x_i, y_j)`` of shape [B, N] with the positive pair of
row i at column ``offset + i`` (``offset=0`` and N == B for an ordinary in-batch matrix; a rank
of a distributed job scores its B local rows against N global candidates and passes its offset).
Values are in nats.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._checks import check_negatives, check_offset, check_scores


def _upcast(scores: Tensor) -> Tensor:
    # logsumexp in bf16/fp16 loses the small differences the bound is made of; do it in fp32.
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


def valid_row_mean(rows: Tensor, valid: Tensor, normalizer: Callable[[Tensor], Tensor] | None, empty: str) -> Tensor:
    """Mean of ``rows[valid]``: their sum divided by ``normalizer(count)`` when given (e.g. the
    count over every rank of a distributed job), else by the count. ``empty`` is the error message
    when no row is valid anywhere."""
    count = valid.sum()
    total = count if normalizer is None else normalizer(count)
    if not bool(total > 0):
        raise ValueError(empty + ("" if normalizer is None else " (on any rank)"))
    return rows[valid].sum() / total.to(rows.dtype)


def positives(scores: Tensor, offset: int = 0) -> Tensor:
    """The positive scores s[i, offset + i], shape [B]."""
    return torch.diagonal(scores, offset=offset)


def infonce(scores: Tensor, offset: int = 0) -> Tensor:
    """I_NCE (Eq. 4.10): mean_i [s_ii - logsumexp_j s_ij] + log N, a lower bound on I(X; Y).

    Never above log N, the number of candidates per row. Returns a scalar in the scores' dtype.
    """
    scores = check_scores(scores)
    offset = check_offset(scores, offset)
    s = _upcast(scores)
    # Each row term is <= 0 in exact arithmetic (the positive is one of the summands); the clamp
    # keeps rounding from lifting the estimate above log N.
    rows = (positives(s, offset) - torch.logsumexp(s, dim=1)).clamp(max=0.0)
    return (rows.mean() + math.log(s.shape[1])).to(scores.dtype)


def nce_club(scores: Tensor, include_diagonal: bool = False, offset: int = 0) -> Tensor:
    """I_NCE-CLUB (Eq. 4.11): mean of positive scores minus mean of negative scores.

    An upper bound on I(X; Y) when the scores come from the optimal InfoNCE critic (with the
    analytic optimal critic it equals I + lautum information). Negatives are the off-positive
    entries; ``include_diagonal=True`` averages over all pairs as the published code does.
    """
    scores = check_scores(scores)
    offset = check_offset(scores, offset)
    check_negatives(scores)
    s = _upcast(scores)
    b, n = s.shape
    pos = positives(s, offset)
    if include_diagonal:
        neg_mean = s.mean()
    else:
        neg_mean = (s.sum() - pos.sum()) / (b * n - b)
    return (pos.mean() - neg_mean).to(scores.dtype)


class BrokenBracketWarning(UserWarning):
    """NCE-CLUB fell below InfoNCE (or below 0): the critic is far from optimal, the upper bound is not one."""


@dataclass(frozen=True)
class BracketCheck:
    """InfoNCE and NCE-CLUB of one score matrix, and whether they can bracket I(X; Y) (Eq. 4.12).

    ``ok`` is False when ``nce_club < infonce`` or ``nce_club < 0``: I(X; Y) >= 0 and InfoNCE is a
    lower bound for any critic, so an "upper bound" below either cannot be one. On one matrix,
    Jensen's inequality (logsumexp_j s_ij >= log N + mean_j s_ij) gives InfoNCE <= (N - 1) / N *
    NCE-CLUB, so the bracket breaks exactly when NCE-CLUB is negative. ``ok`` True is necessary,
    not sufficient: NCE-CLUB can still sit below the true I when the critic is poor; compare
    held-out values over several batches for a sharper test.
    """

    infonce: float
    nce_club: float
    ok: bool = field(init=False)  # nce_club >= max(infonce, 0), derived so that it cannot disagree

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", bool(self.nce_club >= max(self.infonce, 0.0)))

    @property
    def message(self) -> str:
        """One line for a log: the two values and, when broken, why and what to do."""
        values = f"InfoNCE {self.infonce:.4f}, NCE-CLUB {self.nce_club:.4f} nats"
        if self.ok:
            return f"bracket ok: {values}"
        reasons = (("below InfoNCE", self.nce_club < self.infonce), ("negative", self.nce_club < 0))
        why = " and ".join(reason for reason, broken in reasons if broken)
        return (
            f"bracket broken: {values}; NCE-CLUB is {why}, so the critic is far from the optimal InfoNCE "
            "critic and NCE-CLUB is not an upper bound (train the critic longer, or use a bounded critic "
            "such as the default cosine SeparableCritic)"
        )


def check_bracket(scores: Tensor, offset: int = 0, warn: bool = False) -> BracketCheck:
    """InfoNCE and NCE-CLUB of ``scores`` ([B, N]) with a verdict; one host sync, no gradient.

    ``warn=True`` also issues a :class:`BrokenBracketWarning` when the bracket is broken.
    """
    with torch.no_grad():
        both = torch.stack([infonce(scores, offset=offset).float(), nce_club(scores, offset=offset).float()])
    lower, upper = both.tolist()
    result = BracketCheck(infonce=lower, nce_club=upper)
    if warn and not result.ok:
        warnings.warn(result.message, BrokenBracketWarning, stacklevel=2)
    return result


def call_frozen(module: nn.Module, *args: Tensor) -> Tensor:
    """Run ``module`` with its parameters detached: gradients reach the inputs only.

    This is how an upper bound gives the encoders its gradient without training its critic.
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args)


class InfoNCE(nn.Module):
    """I_NCE(X; Y) with a learned critic; maximise it to train both the critic and the inputs.

    ``symmetric=True`` averages the x-to-y and y-to-x directions, (I_NCE(X; Y) + I_NCE(Y; X)) / 2,
    which with a CLIP-style critic is exactly log N minus the CLIP loss.
    """

    def __init__(self, critic: nn.Module, symmetric: bool = False) -> None:
        super().__init__()
        self.critic = critic
        self.symmetric = bool(symmetric)

    def forward(self, x: Tensor, y: Tensor, offset: int = 0, x_candidates: Tensor | None = None) -> Tensor:
        """The InfoNCE estimate (nats) of x's B rows against y's N candidates; gradients reach the critic and inputs.

        For ``symmetric`` with N > B (a rank of a distributed job), ``x_candidates`` holds all N x
        rows so the y-to-x direction can score this rank's y rows (``y[offset:offset + B]``) against them.
        """
        value = infonce(self.critic(x, y), offset=offset)
        if not self.symmetric:
            return value
        b = x.shape[0]
        if x_candidates is None:
            if y.shape[0] != b:
                raise ValueError("symmetric InfoNCE with more candidates than rows needs x_candidates (all N x rows)")
            x_candidates = x
        reverse = self.critic(x_candidates, y[offset : offset + b]).transpose(0, 1)  # [B, N]: y_i against every x
        return 0.5 * (value + infonce(reverse, offset=offset))


class NCECLUB(nn.Module):
    """I_NCE-CLUB(X; Y) with a critic trained separately by its InfoNCE learning loss.

    ``forward`` returns the upper-bound estimate with the critic's parameters frozen, so it gives
    the inputs (the encoders) the upper-bound gradient only; ``critic_loss`` is -I_NCE on detached
    inputs, which trains the critic towards the optimal critic the bound needs.
    """

    def __init__(self, critic: nn.Module, include_diagonal: bool = False) -> None:
        super().__init__()
        self.critic = critic
        self.include_diagonal = bool(include_diagonal)
        self.last_bracket: Tensor | None = None

    def forward(self, x: Tensor, y: Tensor, offset: int = 0) -> Tensor:
        """The NCE-CLUB estimate (nats); gradients reach x and y, never the critic.

        Also sets ``last_bracket``: the estimate minus the InfoNCE of the same scores (detached);
        below 0 the critic is far from optimal and the estimate is no upper bound.
        """
        scores = call_frozen(self.critic, x, y)
        value = nce_club(scores, include_diagonal=self.include_diagonal, offset=offset)
        self.last_bracket = (value - infonce(scores, offset=offset)).detach()
        return value

    def critic_loss(self, x: Tensor, y: Tensor, offset: int = 0) -> Tensor:
        """-I_NCE on detached inputs: the loss that trains the critic, and only the critic."""
        return -infonce(self.critic(x.detach(), y.detach()), offset=offset)
