"""Conditional InfoNCE and NCE-CLUB, I(X; Y | C) (Eqs. 4.13-4.16), three ways.

- ``grouped`` (discrete C such as labels): negatives only among candidates with the same
  condition value, per-row normaliser log(n_i). This is exactly Eq. 4.13 / 4.14 with in-batch
  samples of p(y | c) as negatives.
- ``concat`` (what the published code does): the critic sees [x, c_x] and [y, c_y] and ordinary
  in-batch negatives are used. With in-batch negatives this estimates I(X, C_x; Y, C_y), not
  I(X; Y | C): for a discrete condition shared by both sides that is H(C) + I(X; Y | C) (capped at
  log N like any InfoNCE value); appending the condition to x only estimates
  I(X, C; Y) = I(C; Y) + I(X; Y | C).
- ``chain`` (continuous C): the chain rule I(X; Y | C) = I(X; Y, C) - I(X; C), each term
  estimated with its own critic. The InfoNCE form is a difference of two lower bounds (an
  estimate, not a bound); the NCE-CLUB form, NCE-CLUB(X; Y, C) - I_NCE(X; C), is an upper bound
  whenever its two parts are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_features, check_groups, check_offset, check_same_batch, check_scores, check_tensor
from .estimators import _upcast, call_frozen, infonce, nce_club, positives, valid_row_mean

CONDITIONINGS = ("grouped", "concat", "chain")


def _group_mask(scores: Tensor, groups: Tensor, candidate_groups: Tensor | None, offset: int) -> Tensor:
    b, n = scores.shape
    groups = check_groups(groups, b, "groups")
    if candidate_groups is None:
        if n != b:
            raise ValueError(f"candidate_groups must be given when scores is not square (got B={b}, N={n})")
        candidate_groups = groups
    candidate_groups = check_groups(candidate_groups, n, "candidate_groups")
    mask = groups.unsqueeze(1) == candidate_groups.unsqueeze(0)
    if not bool(positives(mask, offset).all()):
        raise ValueError("groups and candidate_groups disagree on a positive pair: each positive must share its row's group")
    return mask


def grouped_infonce(
    scores: Tensor, groups: Tensor, candidate_groups: Tensor | None = None, offset: int = 0
) -> Tensor:
    """I_NCE(X; Y | C) for a discrete C (Eq. 4.13): in-group negatives, normaliser log(n_i).

    mean_i [s_ii - logsumexp_{j: c_j = c_i} s_ij + log n_i], where n_i counts row i's
    candidates in its group (itself included). A lower bound on I(X; Y | C) for each group.
    """
    scores = check_scores(scores)
    offset = check_offset(scores, offset)
    mask = _group_mask(scores, groups, candidate_groups, offset)
    s = _upcast(scores)
    lse = torch.logsumexp(s.masked_fill(~mask, float("-inf")), dim=1)
    log_n = torch.log(mask.sum(dim=1).to(s.dtype))
    rows = (positives(s, offset) - lse).clamp(max=0.0) + log_n
    return rows.mean().to(scores.dtype)


def grouped_nce_club(
    scores: Tensor,
    groups: Tensor,
    candidate_groups: Tensor | None = None,
    offset: int = 0,
    normalizer: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """I_NCE-CLUB(X; Y | C) for a discrete C (Eq. 4.14): positives minus in-group negatives.

    mean_i [s_ii - mean_{j != i, c_j = c_i} s_ij] over the rows that have at least one in-group
    negative (a row alone in its group carries no contrast).

    ``normalizer`` maps the number of such rows (a 0-dim tensor) to what their sum is divided by
    instead (default: the number itself, the mean). A rank of a distributed job passes
    :func:`factorcl.distributed.global_mean_normalizer`, so that the mean of the ranks' values
    is the global batch's mean even when ranks hold different numbers of such rows; a rank with
    none of them then contributes 0.
    """
    scores = check_scores(scores)
    offset = check_offset(scores, offset)
    mask = _group_mask(scores, groups, candidate_groups, offset)
    s = _upcast(scores)
    neg_mask = mask.clone()
    neg_mask.diagonal(offset).fill_(False)
    counts = neg_mask.sum(dim=1)
    neg_mean = (s * neg_mask).sum(dim=1) / counts.clamp_min(1).to(s.dtype)
    value = valid_row_mean(positives(s, offset) - neg_mean, counts > 0, normalizer,
                           "no row of scores has a negative in its own group; grouped NCE-CLUB needs >= 2 "
                           "samples in a group")
    return value.to(scores.dtype)


def concat_condition(x: Tensor, c: Tensor, num_classes: int | None = None) -> Tensor:
    """[x, c]: the condition appended to the critic input; integer labels become one-hot vectors."""
    check_tensor(c, "c")
    if not c.is_floating_point():
        if num_classes is None:
            raise ValueError("num_classes must be given to one-hot encode integer conditions c")
        if c.dim() != 1:
            raise ValueError(f"integer conditions c must be a [B] label vector, got shape {tuple(c.shape)}")
        c = F.one_hot(c.long(), num_classes)
    elif c.dim() == 1:
        c = c.unsqueeze(1)
    check_same_batch(x, c, "x", "c")
    return torch.cat([x, c.to(x.dtype)], dim=1)


class _Conditional(nn.Module):
    """Holds a critic (and, for ``chain``, a marginal critic) and builds conditional score matrices."""

    def __init__(
        self,
        critic: nn.Module,
        conditioning: str = "grouped",
        num_classes: int | None = None,
        marginal_critic: nn.Module | None = None,
        concat_sides: str = "both",
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {list(CONDITIONINGS)}, got {conditioning!r}")
        if conditioning == "chain" and marginal_critic is None:
            raise ValueError("conditioning='chain' needs marginal_critic, the critic of I(X; C)")
        if concat_sides not in ("both", "x"):
            raise ValueError(f"concat_sides must be 'both' or 'x', got {concat_sides!r}")
        self.critic = critic
        self.marginal_critic = marginal_critic
        self.conditioning = conditioning
        self.num_classes = num_classes
        self.concat_sides = concat_sides

    def _cond(self, c: Tensor) -> Tensor:
        if c.is_floating_point():
            return c if c.dim() == 2 else c.unsqueeze(1)
        if self.num_classes is None:
            raise ValueError("num_classes must be given to one-hot encode integer conditions")
        return F.one_hot(c.long(), self.num_classes).float()

    def _scores(self, x: Tensor, y: Tensor, cx: Tensor, cy: Tensor | None, frozen: bool) -> Tensor:
        """The main critic's conditional scores [B, N] for the configured conditioning."""
        run = (lambda m, a, b: call_frozen(m, a, b)) if frozen else (lambda m, a, b: m(a, b))
        cy = cx if cy is None else cy
        if self.conditioning == "grouped":
            if self.num_classes is not None:
                x, y = concat_condition(x, cx, self.num_classes), concat_condition(y, cy, self.num_classes)
            return run(self.critic, x, y)
        if self.conditioning == "concat":
            xc = concat_condition(x, self._cond(cx).to(x.dtype))
            yc = concat_condition(y, self._cond(cy).to(y.dtype)) if self.concat_sides == "both" else y
            return run(self.critic, xc, yc)
        return run(self.critic, x, torch.cat([y, self._chain_condition(x, cx, cy)], dim=1))

    def _chain_condition(self, x: Tensor, cx: Tensor, cy: Tensor | None) -> Tensor:
        # The chain rule conditions on everything: both sides' conditions when they differ.
        if cy is None or cy is cx:
            return self._cond(cx).to(x.dtype)
        return torch.cat([self._cond(cx), self._cond(cy)], dim=1).to(x.dtype)

    def _marginal_scores(self, x: Tensor, cx: Tensor, cy: Tensor | None, frozen: bool) -> Tensor:
        """Scores of the chain rule's I(X; C) term."""
        c = self._chain_condition(x, cx, cy)
        return call_frozen(self.marginal_critic, x, c) if frozen else self.marginal_critic(x, c)

    def _lower(self, scores: Tensor, cx: Tensor, cy: Tensor | None, offset: int) -> Tensor:
        if self.conditioning == "grouped":
            return grouped_infonce(scores, cx, cy, offset=offset)
        return infonce(scores, offset=offset)


class ConditionalInfoNCE(_Conditional):
    """I_NCE(X; Y | C) with a learned critic; see the module docstring for what each conditioning estimates.

    ``forward(x, y, cx, cy=None)``: ``cx`` is the condition of the x side ([B] integer labels for
    ``grouped``; [B, k] features or labels otherwise), ``cy`` that of the y side (defaults to cx).
    With ``chain`` the condition goes with the candidates: ``cx`` (and ``cy``, appended to it)
    must have y's N rows; for an ordinary in-batch matrix (N == B) nothing changes.
    Maximising ``forward`` trains the critic. With ``chain``, the subtracted I_NCE(X; C) must not
    be trained by that maximisation (it would push its own critic down), so its critic is frozen
    in ``forward`` and trained by ``critic_loss`` instead.
    """

    @property
    def has_critic_loss(self) -> bool:
        """Whether ``critic_loss`` trains anything (the marginal critic of ``chain``)."""
        return self.conditioning == "chain"

    def forward(self, x: Tensor, y: Tensor, cx: Tensor, cy: Tensor | None = None, offset: int = 0) -> Tensor:
        """The conditional InfoNCE estimate (nats); gradients reach the (main) critic and the inputs."""
        check_features(x, None, "x")
        check_features(y, None, "y")
        value = self._lower(self._scores(x, y, cx, cy, frozen=False), cx, cy, offset)
        if self.conditioning != "chain":
            return value
        return value - infonce(self._marginal_scores(x, cx, cy, frozen=True), offset=offset)

    def critic_loss(self, x: Tensor, y: Tensor, cx: Tensor, cy: Tensor | None = None, offset: int = 0) -> Tensor:
        """-I_NCE(X; C) on detached inputs, training the ``chain`` marginal critic only."""
        if not self.has_critic_loss:
            raise ValueError(f"conditioning={self.conditioning!r} has no separately trained critic; only 'chain' does")
        det = _detach_all(x, cx, cy)
        return -infonce(self._marginal_scores(det[0], det[1], det[2], frozen=False), offset=offset)


class ConditionalNCECLUB(_Conditional):
    """I_NCE-CLUB(X; Y | C): critics frozen in ``forward`` (gradients reach the inputs only) and
    trained by ``critic_loss`` on detached inputs, as for the unconditional NCE-CLUB."""

    has_critic_loss = True

    def __init__(self, *args, include_diagonal: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.include_diagonal = bool(include_diagonal)

    def forward(self, x: Tensor, y: Tensor, cx: Tensor, cy: Tensor | None = None, offset: int = 0,
                normalizer: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """The conditional NCE-CLUB estimate (nats); gradients reach x, y (and the conditions).

        ``normalizer`` is passed to :func:`grouped_nce_club` (``grouped`` only: the other
        conditionings average over every row).
        """
        check_features(x, None, "x")
        check_features(y, None, "y")
        scores = self._scores(x, y, cx, cy, frozen=True)
        if self.conditioning == "grouped":
            return grouped_nce_club(scores, cx, cy, offset=offset, normalizer=normalizer)
        value = nce_club(scores, include_diagonal=self.include_diagonal, offset=offset)
        if self.conditioning != "chain":
            return value
        return value - infonce(self._marginal_scores(x, cx, cy, frozen=True), offset=offset)

    def critic_loss(self, x: Tensor, y: Tensor, cx: Tensor, cy: Tensor | None = None, offset: int = 0) -> Tensor:
        """-(conditional I_NCE) on detached inputs (plus -I_NCE(X; C) for ``chain``): trains the critics only."""
        x, y, cx, cy = _detach_all(x, y, cx, cy)
        loss = -self._lower(self._scores(x, y, cx, cy, frozen=False), cx, cy, offset)
        if self.conditioning != "chain":
            return loss
        return loss - infonce(self._marginal_scores(x, cx, cy, frozen=False), offset=offset)


def _detach_all(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    # Keep identity (cy is cx) so that a shared condition stays one condition after detaching.
    done: dict[int, Tensor] = {}
    for t in tensors:
        if t is not None and id(t) not in done:
            done[id(t)] = t.detach()
    return tuple(None if t is None else done[id(t)] for t in tensors)


__all__ = [
    "CONDITIONINGS",
    "ConditionalInfoNCE",
    "ConditionalNCECLUB",
    "concat_condition",
    "grouped_infonce",
    "grouped_nce_club",
]
