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
  estimated with its own critic. Both parts are capped at log N, so this is valid only while
  I(X; C) is well below log N: the InfoNCE form is a difference of two lower bounds (an estimate,
  not a bound) and reads near 0 or below once I(X; C) >~ log N; the NCE-CLUB form,
  NCE-CLUB(X; Y, C) - I_NCE(X; C), is an upper bound whenever its two parts are.
- ``sampled`` (continuous C, valid when I(X; C) >> log N): each row's K negatives are drawn from
  a learned proposal q(y | c_i) (:class:`bounds.sampled.GaussianProposal`), and a correction
  critic measures the proposal's error D = E_c KL(p(y | c) || q(y | c)). InfoNCE estimates
  I_NCE^q(f) - I_NCE-CLUB^q(g), a lower bound on I(X; Y | C) capped at log(1 + K) (not at
  I(X; C)) when g is optimal; NCE-CLUB estimates I_NCE-CLUB^q(f) - I_NCE^q(g), an upper bound when
  f is the optimal critic (which must lie in the critic family), for any q and g. See
  :mod:`bounds.sampled`. The critic scores x and y after each is standardised by its proposal,
  (y - mu(c)) / sigma(c). By default (fast: one [B, K] matrix) it does not see c itself, which
  assumes the dependence left in those residuals does not change with c (exact for jointly
  Gaussian data); ``critic_sees_condition=True`` appends c to both sides, the general critic
  f(x, y, c) the bounds' optimality statements need, at B * K critic inputs. The condition is
  taken per row (x's B rows), so it needs no gathered candidates: under a process group the
  ranks' mean is the global batch's value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import as_offset, check_features, check_groups, check_offset, check_same_batch, check_scores, check_tensor
from .estimators import _upcast, call_frozen, infonce, nce_club, positives, valid_row_mean
from .sampled import GaussianProposal, sampled_infonce, sampled_nce_club, score_candidates, score_positive_and_shared

CONDITIONINGS = ("grouped", "concat", "chain", "sampled")

#: Default number of negatives per row that ``sampled`` draws from its proposal.
DEFAULT_NUM_NEGATIVES = 127


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
        raise ValueError(
            "groups and candidate_groups disagree on a positive pair: each positive must share its row's group"
        )
    return mask


def grouped_infonce(scores: Tensor, groups: Tensor, candidate_groups: Tensor | None = None, offset: int = 0) -> Tensor:
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
    value = valid_row_mean(
        positives(s, offset) - neg_mean,
        counts > 0,
        normalizer,
        "no row of scores has a negative in its own group; grouped NCE-CLUB needs >= 2 samples in a group",
    )
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


class SampledCandidates(NamedTuple):
    """What ``sampled`` scores for a batch: the whole condition c [B, k], the x side [B, dx] and the
    positives [B, dy] in the proposals' residual units, and the K shared standardised negatives [K, dy].

    A forward keeps them (detached) as ``last_candidates``, so that the critic steps that follow train
    on the same candidates without running the proposals again. Why the proposals and the correction
    critic are then fitted on the first critic step only: the running moments of q must count each
    batch once (they average over batches, and a batch fitted three times would weigh three times), and
    they are the expensive part of a critic step; the NCE-CLUB critics, whose estimate is an upper bound
    only near their optimum, take every step.
    """

    c: Tensor
    x_side: Tensor
    positive: Tensor
    noise: Tensor

    def detach(self) -> SampledCandidates:
        """The same candidates without their graph."""
        return SampledCandidates(*(t.detach() for t in self))


class _Conditional(nn.Module):
    """Holds a critic (and, for ``chain``, a marginal critic) and builds conditional score matrices."""

    def __init__(
        self,
        critic: nn.Module,
        conditioning: str = "grouped",
        num_classes: int | None = None,
        marginal_critic: nn.Module | None = None,
        concat_sides: str = "both",
        proposal: nn.Module | None = None,
        correction_critic: nn.Module | None = None,
        num_negatives: int = DEFAULT_NUM_NEGATIVES,
        x_proposal: nn.Module | None = None,
        critic_sees_condition: bool = False,
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {list(CONDITIONINGS)}, got {conditioning!r}")
        if conditioning == "chain" and marginal_critic is None:
            raise ValueError("conditioning='chain' needs marginal_critic, the critic of I(X; C)")
        if conditioning == "sampled" and proposal is None:
            raise ValueError(
                "conditioning='sampled' needs proposal, a learned q(y | c) such as "
                "bounds.GaussianProposal(c_dim, y_dim)"
            )
        if int(num_negatives) < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if conditioning == "sampled" and x_proposal is None and not critic_sees_condition:
            raise ValueError(
                "conditioning='sampled' with critic_sees_condition=False needs x_proposal (a learned "
                "q(x | c)): a critic that sees neither c nor x's residual cannot represent "
                "log p(y | x, c) / q(y | c), even for Gaussians"
            )
        self.proposal = proposal
        self.x_proposal = x_proposal
        self.critic_sees_condition = bool(critic_sees_condition)
        self.correction_critic = correction_critic
        self.num_negatives = int(num_negatives)
        if concat_sides not in ("both", "x"):
            raise ValueError(f"concat_sides must be 'both' or 'x', got {concat_sides!r}")
        self.critic = critic
        self.marginal_critic = marginal_critic
        self.conditioning = conditioning
        self.num_classes = num_classes
        self.concat_sides = concat_sides
        #: ``sampled``: the detached candidates of the last forward (see :class:`SampledCandidates`).
        self.last_candidates: SampledCandidates | None = None
        # The scorers wrap the critics for call_frozen. Made here, not per call: a module built
        # inside a torch.compile'd loss breaks its graph at every call (getattr on a module with a
        # pending mutation). Kept out of _modules, so state_dict and parameters are unchanged.
        for role in ("critic", "correction_critic"):
            if getattr(self, role) is not None:
                self._scorer(role)

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

    def _sampled_candidates(
        self, x: Tensor, y: Tensor, cx: Tensor, cy: Tensor | None, offset: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c [B, k], x side [B, dx], positives [B, dy], negatives [K, dy]) in the proposals' residual units.

        Row i's positive is standardised by q: (y_i - mu(c_i)) / sigma(c_i); its K negatives are
        draws of q(y | c_i), which standardised are K draws of N(0, I), so one set of K draws serves
        every row. With ``x_proposal`` the x side is standardised by q(x | c) in the same way.
        Both maps are invertible given c, so the critic is still a function of (x, y, c) and every
        bound statement holds; they spare the critic from learning to subtract E[y | c] where C
        fixes most of Y.
        """
        b, offset = x.shape[0], as_offset(offset)
        if y.shape[0] < offset + b:
            raise ValueError(
                f"y must hold this rank's positives y[offset:offset + B] (offset={offset}, B={b}), "
                f"got {y.shape[0]} rows"
            )
        c = self._chain_condition(x, cx, cy)
        if c.shape[0] != b:
            raise ValueError(
                f"conditioning='sampled' takes one condition per row of x: cx (and cy) must have "
                f"B={b} rows, got {c.shape[0]}"
            )
        positive = _standardize(self.proposal, y[offset : offset + b], c)
        noise = torch.randn((self.num_negatives, positive.shape[1]), device=positive.device, dtype=positive.dtype)
        x_side = x if self.x_proposal is None else _standardize(self.x_proposal, x, c)
        return c, x_side, positive, noise

    def _sampled_scores(self, x_side: Tensor, c: Tensor, positive: Tensor, noise: Tensor, frozen: bool) -> Tensor:
        """f(x_i, y, c_i) for row i's positive (column 0) and the K negatives, [B, 1 + K].

        Without ``critic_sees_condition`` the negatives are scored as one ordinary [B, K] matrix
        (the cost of an in-batch critic); with it, c_i is appended to both sides and every row's
        K candidates are scored separately (B * K critic inputs).
        """
        scorer = self._scorer("critic")
        run = (lambda *a: call_frozen(scorer, *a)) if frozen else scorer  # noqa: E731
        if self.critic_sees_condition:
            cand = torch.cat([positive.unsqueeze(1), noise.unsqueeze(0).expand(positive.shape[0], -1, -1)], dim=1)
            c_rows = c.to(cand.dtype).unsqueeze(1).expand(-1, cand.shape[1], -1)
            return run(torch.cat([x_side, c.to(x_side.dtype)], dim=1), torch.cat([cand, c_rows], dim=2))
        return run(x_side, positive.unsqueeze(1), noise)

    def _correction_scores(self, c: Tensor, positive: Tensor, noise: Tensor, frozen: bool = False) -> Tensor:
        """g(c_i, y): the correction critic's scores of the real y_i (column 0) against q's K samples, [B, 1 + K].

        ``frozen``: g's parameters detached, gradients reach c and the positive (the estimate's
        gradient with respect to the inputs); otherwise the inputs are detached (g's training).
        """
        scorer = self._scorer("correction_critic")
        if frozen:
            return call_frozen(scorer, c, positive.unsqueeze(1), noise.detach())
        return scorer(c.detach(), positive.detach().unsqueeze(1), noise.detach())

    def _scorer(self, role: str) -> _CandidateScorer:
        """The candidate scorer of the critic in attribute ``role`` (rebuilt if that critic was replaced)."""
        scorers = self.__dict__.setdefault("_scorers", {})  # setdefault: modules pickled before it existed
        critic = getattr(self, role)
        scorer = scorers.get(role)
        if scorer is None or scorer.critic is not critic:
            scorer = scorers[role] = _CandidateScorer(critic)
        return scorer

    def critic_loss_parameters(self) -> list[nn.Parameter]:
        """The parameters :meth:`critic_loss` trains (and ``forward`` leaves frozen)."""
        if isinstance(self, ConditionalNCECLUB):
            return list(self.parameters())
        params: list[nn.Parameter] = []
        for part in (self.marginal_critic, self.proposal, self.x_proposal, self.correction_critic):
            if part is not None:
                params += list(part.parameters())
        return params

    def _sampled_critic_loss(
        self,
        x: Tensor,
        y: Tensor,
        cx: Tensor,
        cy: Tensor | None,
        offset: int,
        train_main: bool,
        candidates: SampledCandidates | None,
        auxiliary: bool,
    ) -> Tensor:
        x, y, cx, cy = _detach_all(x, y, cx, cy)
        offset = as_offset(offset)
        if candidates is None:
            with torch.no_grad():  # standardised by q as it is before this step's fit, as forward does
                candidates = SampledCandidates(*self._sampled_candidates(x, y, cx, cy, offset))
        c, x_side, positive, noise = candidates.detach()
        losses: list[Tensor] = []
        if auxiliary:
            losses.append(self.proposal.nll(y[offset : offset + x.shape[0]], c))
            if self.x_proposal is not None:
                losses.append(self.x_proposal.nll(x, c))
            if self.correction_critic is not None:
                losses.append(-sampled_infonce(self._correction_scores(c, positive, noise)))
        if train_main:
            losses.append(-sampled_infonce(self._sampled_scores(x_side, c, positive, noise, frozen=False)))
        # Nothing to train (a lower bound's critic step after its first): a zero without a graph.
        return sum(losses[1:], losses[0]) if losses else x.new_zeros(())

    def _lower(self, scores: Tensor, cx: Tensor, cy: Tensor | None, offset: int) -> Tensor:
        if self.conditioning == "grouped":
            return grouped_infonce(scores, cx, cy, offset=offset)
        return infonce(scores, offset=offset)


class ConditionalInfoNCE(_Conditional):
    """I_NCE(X; Y | C) with a learned critic; see the module docstring for what each conditioning estimates.

    ``forward(x, y, cx, cy=None)``: ``cx`` is the condition of the x side ([B] integer labels for
    ``grouped``; [B, k] features or labels otherwise), ``cy`` that of the y side (defaults to cx).
    With ``chain`` the condition goes with the candidates: ``cx`` (and ``cy``, appended to it)
    must have y's N rows; for an ordinary in-batch matrix (N == B) nothing changes. With
    ``sampled`` the condition goes with x's B rows and the positives are ``y[offset:offset + B]``.
    Maximising ``forward`` trains the critic. With ``chain``, the subtracted I_NCE(X; C) must not
    be trained by that maximisation (it would push its own critic down), so its critic is frozen
    in ``forward`` and trained by ``critic_loss`` instead; with ``sampled`` the same holds for
    the proposal and the correction critic (frozen: the correction's gradient reaches the inputs only).
    """

    @property
    def has_critic_loss(self) -> bool:
        """Whether ``critic_loss`` trains anything (the marginal critic of ``chain``; the proposal
        and correction critic of ``sampled``)."""
        return self.conditioning in ("chain", "sampled")

    def forward(self, x: Tensor, y: Tensor, cx: Tensor, cy: Tensor | None = None, offset: int = 0) -> Tensor:
        """The conditional InfoNCE estimate (nats); gradients reach the (main) critic and the inputs."""
        check_features(x, None, "x")
        check_features(y, None, "y")
        if self.conditioning == "sampled":
            c, x_side, positive, noise = self._sampled_candidates(x, y, cx, cy, offset)
            self.last_candidates = SampledCandidates(c, x_side, positive, noise).detach()
            value = sampled_infonce(self._sampled_scores(x_side, c, positive, noise, frozen=False))
            if self.correction_critic is None:
                return value
            # D's upper estimate, clamped at 0 because D >= 0 (conservative). It keeps its gradient
            # with respect to the inputs: without it the encoders would climb I + D, rewarded for
            # features that q fits badly.
            correction = sampled_nce_club(self._correction_scores(c, positive, noise, frozen=True)).clamp_min(0.0)
            return value - correction
        value = self._lower(self._scores(x, y, cx, cy, frozen=False), cx, cy, offset)
        if self.conditioning != "chain":
            return value
        return value - infonce(self._marginal_scores(x, cx, cy, frozen=True), offset=offset)

    def critic_loss(
        self,
        x: Tensor,
        y: Tensor,
        cx: Tensor,
        cy: Tensor | None = None,
        offset: int = 0,
        candidates: SampledCandidates | None = None,
        auxiliary: bool = True,
    ) -> Tensor:
        """The loss of the separately trained parts on detached inputs: -I_NCE(X; C) for ``chain``'s
        marginal critic; the proposal's NLL and the correction critic's -I_NCE^q for ``sampled``.

        ``sampled`` only: ``candidates`` (the ``last_candidates`` of a forward on these inputs) are
        scored instead of standardising and drawing again; ``auxiliary=False`` leaves out the
        proposals and the correction critic, so there is nothing to train (a zero without a graph).
        """
        if not self.has_critic_loss:
            raise ValueError(
                f"conditioning={self.conditioning!r} has no separately trained critic; only 'chain' and 'sampled' do"
            )
        if self.conditioning == "sampled":
            return self._sampled_critic_loss(x, y, cx, cy, offset, False, candidates, auxiliary)
        det = _detach_all(x, cx, cy)
        return -infonce(self._marginal_scores(det[0], det[1], det[2], frozen=False), offset=offset)


class ConditionalNCECLUB(_Conditional):
    """I_NCE-CLUB(X; Y | C): critics frozen in ``forward`` (gradients reach the inputs only) and
    trained by ``critic_loss`` on detached inputs, as for the unconditional NCE-CLUB."""

    has_critic_loss = True

    def __init__(self, *args, include_diagonal: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.include_diagonal = bool(include_diagonal)
        #: NCE-CLUB minus the InfoNCE of the same scores at the last ``forward`` (detached); below 0
        #: the critic is far from optimal and the estimate is no upper bound.
        self.last_bracket: Tensor | None = None

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        cx: Tensor,
        cy: Tensor | None = None,
        offset: int = 0,
        normalizer: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """The conditional NCE-CLUB estimate (nats); gradients reach x, y (and the conditions).

        ``normalizer`` is passed to :func:`grouped_nce_club` (``grouped`` only: the other
        conditionings average over every row).
        """
        check_features(x, None, "x")
        check_features(y, None, "y")
        if self.conditioning == "sampled":
            c, x_side, positive, noise = self._sampled_candidates(x, y, cx, cy, offset)
            self.last_candidates = SampledCandidates(c, x_side, positive, noise).detach()
            scores = self._sampled_scores(x_side, c, positive, noise, frozen=True)
            value = sampled_nce_club(scores)
            # The bracket check: an NCE-CLUB below its own critic's InfoNCE means the critic is far
            # from optimal and the value is no upper bound (see FactorCL's bound diagnostics).
            self.last_bracket = (value - sampled_infonce(scores)).detach()
            if self.correction_critic is None:
                return value
            # D's lower estimate (any critic's), not clamped: clamping each batch at 0 would push its
            # mean above D when D is near 0. With gradient with respect to the inputs, as above.
            correction = sampled_infonce(self._correction_scores(c, positive, noise, frozen=True))
            return value - correction
        scores = self._scores(x, y, cx, cy, frozen=True)
        if self.conditioning == "grouped":
            value = grouped_nce_club(scores, cx, cy, offset=offset, normalizer=normalizer)
            self.last_bracket = (value - grouped_infonce(scores, cx, cy, offset=offset)).detach()
            return value
        value = nce_club(scores, include_diagonal=self.include_diagonal, offset=offset)
        self.last_bracket = (value - infonce(scores, offset=offset)).detach()
        if self.conditioning != "chain":
            return value
        return value - infonce(self._marginal_scores(x, cx, cy, frozen=True), offset=offset)

    @torch.no_grad()
    def critic_infonce(self, x: Tensor, y: Tensor, cx: Tensor, cy: Tensor | None = None, offset: int = 0) -> Tensor:
        """The InfoNCE of the main critic on these inputs, the quantity its training maximises (no
        gradient): how far the critic is from converged shows as a gap in this value."""
        if self.conditioning == "sampled":
            c, x_side, positive, noise = self._sampled_candidates(x, y, cx, cy, offset)
            return sampled_infonce(self._sampled_scores(x_side, c, positive, noise, frozen=False))
        return self._lower(self._scores(x, y, cx, cy, frozen=False), cx, cy, offset)

    def critic_loss(
        self,
        x: Tensor,
        y: Tensor,
        cx: Tensor,
        cy: Tensor | None = None,
        offset: int = 0,
        candidates: SampledCandidates | None = None,
        auxiliary: bool = True,
    ) -> Tensor:
        """-(conditional I_NCE) on detached inputs (plus -I_NCE(X; C) for ``chain``; plus the proposal's
        NLL and the correction critic's loss for ``sampled``): trains the critics only.

        ``sampled`` only: ``candidates`` (the ``last_candidates`` of a forward on these inputs) are
        scored instead of standardising and drawing again; ``auxiliary=False`` trains the main critic
        alone (the proposals and the correction critic are fitted once per batch, see
        :class:`SampledCandidates`).
        """
        if self.conditioning == "sampled":
            return self._sampled_critic_loss(x, y, cx, cy, offset, True, candidates, auxiliary)
        x, y, cx, cy = _detach_all(x, y, cx, cy)
        loss = -self._lower(self._scores(x, y, cx, cy, frozen=False), cx, cy, offset)
        if self.conditioning != "chain":
            return loss
        return loss - infonce(self._marginal_scores(x, cx, cy, frozen=False), offset=offset)


def conditional_estimator(
    kind: str,
    conditioning: str,
    x_dim: int,
    y_dim: int,
    cx_dim: int,
    cy_dim: int | None,
    make_critic: Callable[[int, int], nn.Module],
    *,
    num_classes: int | None = None,
    proposal_hidden: int = 256,
    num_negatives: int = DEFAULT_NUM_NEGATIVES,
    include_diagonal: bool = False,
    critics: Mapping[str, nn.Module] | None = None,
) -> _Conditional:
    """A conditional estimator with every critic it needs, sized for its conditioning.

    ``kind`` is ``infonce`` (:class:`ConditionalInfoNCE`) or ``nce_club`` (:class:`ConditionalNCECLUB`).
    ``cx_dim`` / ``cy_dim`` are the widths of the x side's and the y side's condition (one-hot
    labels count ``num_classes``); ``cy_dim=None`` means both sides share one condition (a label).
    ``make_critic(a_dim, b_dim)`` builds a critic; ``critics`` replaces one by role
    (``critic``, ``marginal_critic``, ``correction_critic``). The widths each conditioning needs:

    - ``grouped`` / ``concat``: the critic scores [x, c_x] against [y, c_y] (``grouped`` without
      ``num_classes`` scores plain x against y: the groups only select the negatives);
    - ``chain``: the critic scores x against [y, c] and the marginal critic x against c, where c
      is the whole condition (both sides' when they differ);
    - ``sampled``: the critic scores standardised x against standardised y; the proposals q(y | c)
      and q(x | c) and the correction critic g(c, y) see c.
    """
    if kind not in ("infonce", "nce_club"):
        raise ValueError(f"kind must be 'infonce' or 'nce_club', got {kind!r}")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {list(CONDITIONINGS)}, got {conditioning!r}")
    given = dict(critics or {})
    unknown = sorted(set(given) - {"critic", "marginal_critic", "correction_critic"})
    if unknown:
        raise ValueError(
            f"critics has unknown roles {unknown}; the roles are critic, marginal_critic, correction_critic"
        )
    pick = lambda role, a, b: given.pop(role, None) or make_critic(a, b)  # noqa: E731
    c_dim = cx_dim if cy_dim is None else cx_dim + cy_dim  # the whole condition
    kwargs: dict[str, Any] = {"conditioning": conditioning, "num_classes": num_classes}
    # Built in this order (main critic first) so that the random initialisation is reproducible.
    if conditioning == "chain":
        critic = pick("critic", x_dim, y_dim + c_dim)
        kwargs["marginal_critic"] = pick("marginal_critic", x_dim, c_dim)
    elif conditioning == "sampled":
        critic = pick("critic", x_dim, y_dim)
        kwargs.update(
            proposal=GaussianProposal(c_dim, y_dim, proposal_hidden),
            x_proposal=GaussianProposal(c_dim, x_dim, proposal_hidden),
            correction_critic=pick("correction_critic", c_dim, y_dim),
            num_negatives=num_negatives,
        )
    elif conditioning == "grouped" and num_classes is None:  # groups only pick the negatives: plain (x, y)
        critic = pick("critic", x_dim, y_dim)
    else:  # grouped (one-hot labels), concat: the condition appended to each side
        critic = pick("critic", x_dim + cx_dim, y_dim + (cx_dim if cy_dim is None else cy_dim))
    if kind == "nce_club":
        return ConditionalNCECLUB(critic, include_diagonal=include_diagonal, **kwargs)
    return ConditionalInfoNCE(critic, **kwargs)


def _standardize(proposal: nn.Module, y: Tensor, c: Tensor) -> Tensor:
    """(y - mu(c)) / sigma(c) under a frozen proposal: gradients reach y and c, never q.

    Computed in the proposal's float32: in bf16, y - mu(c) cancels catastrophically when C fixes Y.
    """
    mean, log_std = call_frozen(proposal, c)
    with torch.autocast(device_type=y.device.type, enabled=False):
        return (y.to(mean.dtype) - mean) * torch.exp(-log_std)


class _CandidateScorer(nn.Module):
    """``score_candidates`` as a module call, so that :func:`call_frozen` can freeze the critic."""

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, x: Tensor, candidates: Tensor, shared: Tensor | None = None) -> Tensor:
        """[B, M] row-own candidates' scores, then (with ``shared`` [K, D]) the [B, K] scores of the shared ones."""
        if shared is not None and candidates.shape[1] == 1:  # one positive per row: x embedded once
            return score_positive_and_shared(self.critic, x, candidates[:, 0], shared)
        own = score_candidates(self.critic, x, candidates)
        return own if shared is None else torch.cat([own, self.critic(x, shared)], dim=1)


def _detach_all(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    # Keep identity (cy is cx) so that a shared condition stays one condition after detaching.
    done: dict[int, Tensor] = {}
    for t in tensors:
        if t is not None and id(t) not in done:
            done[id(t)] = t.detach()
    return tuple(None if t is None else done[id(t)] for t in tensors)


__all__ = [
    "CONDITIONINGS",
    "SampledCandidates",
    "DEFAULT_NUM_NEGATIVES",
    "ConditionalInfoNCE",
    "ConditionalNCECLUB",
    "concat_condition",
    "grouped_infonce",
    "grouped_nce_club",
]
