"""A method's MI-bound terms: estimators built by one loop over its term specs, evaluated by another.

:func:`factorcl.objectives.term_specs` expands the objective table once into
:class:`~factorcl.objectives.TermSpec` rows; :func:`build_estimators` makes one estimator per row
(the conditional ones size their own critics, :func:`bounds.conditional_estimator`), and
:func:`evaluate_terms` scores every row on a batch's representations. Under a process group the
candidates are gathered from every rank (with gradient), each tensor once per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bounds

from .distributed import gather_no_grad, gather_with_grad, get_rank, global_mean_normalizer, is_distributed
from .objectives import TermSpec


@dataclass
class CriticInput:
    """What the critic steps after a loss need from it: an estimator and its detached inputs.

    ``candidates``: a sampled conditional estimator's candidates from that loss
    (:class:`bounds.conditional.SampledCandidates`); every critic step scores them, and the first
    also fits the proposals and the correction critic (once per batch). ``steps`` counts the calls.
    """

    estimator: nn.Module
    args: tuple
    offset: int
    candidates: Any = None
    steps: int = field(default=0, compare=False)

    def loss(self) -> Tensor:
        """The estimator's critic loss on these inputs (trains its separately trained critics only)."""
        kwargs: dict[str, Any] = {}
        if self.candidates is not None:
            kwargs = {"candidates": self.candidates, "auxiliary": self.steps == 0}
        self.steps += 1
        return self.estimator.critic_loss(*self.args, offset=self.offset, **kwargs)


def build_estimators(
    specs: tuple[TermSpec, ...],
    *,
    embed_dim: int,
    num_classes: int | None,
    supervised: bool,
    conditioning: str,
    make_critic: Callable[[int, int], nn.Module],
    make_aux_critic: Callable[[int, int], nn.Module] | None = None,
    proposal_hidden: int,
    num_negatives: int,
    include_diagonal: bool,
    symmetric_shared_keep: bool,
    critics: Mapping[str, nn.Module] | None = None,
    method: str = "the method",
) -> dict[str, nn.Module]:
    """One estimator per spec. ``critics`` replaces a critic by name: a spec's name for its main
    critic, ``<name>_marginal`` / ``<name>_correction`` for a conditional term's other critics.

    ``make_aux_critic`` (default ``make_critic``) builds the critics of the terms FactorCL adds to
    Cross+Self: the NCE-CLUB removal terms and the conditional lower bound (every critic of theirs)."""
    custom = dict(critics or {})
    e, k = embed_dim, num_classes or 0
    make_aux = make_aux_critic or make_critic
    pick = lambda name, a, b: custom.pop(name, None) or make_critic(a, b)  # noqa: E731
    out: dict[str, nn.Module] = {}
    for spec in specs:
        if spec.kind == "infonce":
            y_dim = k if spec.y == "label" else e
            symmetric = symmetric_shared_keep and spec.name == "shared_keep"
            out[spec.name] = bounds.InfoNCE(pick(spec.name, e, y_dim), symmetric=symmetric)
        elif spec.kind == "nce_club":
            critic = custom.pop(spec.name, None) or make_aux(e, e)
            out[spec.name] = bounds.NCECLUB(critic, include_diagonal=include_diagonal)
        else:
            roles = {
                "critic": spec.name,
                "marginal_critic": f"{spec.name}_marginal",
                "correction_critic": f"{spec.name}_correction",
            }
            given = {role: custom.pop(name) for role, name in roles.items() if name in custom}
            # One-hot labels: one condition shared by both sides; views: one per side.
            cx_dim, cy_dim = (k, None) if supervised else (e, e)
            out[spec.name] = bounds.conditional_estimator(
                "nce_club" if spec.kind == "conditional_nce_club" else "infonce",
                conditioning,
                e,
                e,
                cx_dim,
                cy_dim,
                make_aux,
                num_classes=num_classes,
                proposal_hidden=proposal_hidden,
                num_negatives=num_negatives,
                include_diagonal=include_diagonal,
                critics=given,
            )
    if custom:
        raise ValueError(f"critics has names that {method!r} does not use: {sorted(custom)}; it uses {sorted(out)}")
    return out


def evaluate_terms(
    specs: tuple[TermSpec, ...],
    estimators: Mapping[str, nn.Module],
    reps: Mapping[str, Tensor],
    views: Mapping[str, Tensor],
    y: Tensor | None,
    *,
    conditioning: str,
    num_classes: int | None,
    symmetric_shared_keep: bool,
) -> tuple[dict[str, Tensor], list[CriticInput]]:
    """Every term's estimate (nats) in spec order, and the inputs the critic step needs."""
    gather = Gatherer()
    out: dict[str, Tensor] = {}
    critic_inputs: list[CriticInput] = []
    onehot = None
    if y is not None and any(spec.y == "label" for spec in specs):
        onehot = F.one_hot(y, num_classes).to(reps[specs[0].x].dtype)
    for spec in specs:
        est, x = estimators[spec.name], reps[spec.x]
        if spec.kind == "infonce":
            target, off = gather(_target(spec, reps, views, onehot))
            x_candidates = gather(x)[0] if symmetric_shared_keep and spec.name == "shared_keep" else None
            kwargs = {"x_candidates": x_candidates} if spec.name == "shared_keep" else {}
            out[spec.name] = est(x, target, offset=off, **kwargs)
            continue
        if spec.kind == "nce_club":
            target, off = gather(reps[spec.y])
            out[spec.name] = est(x, target, offset=off)
            critic_inputs.append(_detached(est, (x, target), off))
            continue
        args, off = _conditional_args(spec, reps, views, y, conditioning, gather)
        if spec.kind == "conditional_nce_club" and conditioning == "grouped":
            # Grouped NCE-CLUB averages over the rows with an in-group negative: normalise by their
            # global count so that the ranks' mean is the global batch's mean.
            out[spec.name] = est(*args, offset=off, normalizer=gather.normalizer)
        else:
            out[spec.name] = est(*args, offset=off)
        if spec.upper_bound or getattr(est, "has_critic_loss", False):
            critic_inputs.append(_detached(est, args, off))
    return out, critic_inputs


def supcon_term(z1: Tensor, z2: Tensor, y: Tensor, temperature: float) -> Tensor:
    """SupCon's loss (Khosla et al.) on L2-normalised Z1, Z2 of a batch, both modalities as views,
    against the candidates of every rank."""
    gather = Gatherer()
    (z1g, off), (z2g, _) = gather(z1), gather(z2)
    yg = gather(y)[0]
    n, b = z1g.shape[0], z1.shape[0]
    anchors = torch.cat([z1, z2])
    candidates = torch.cat([z1g, z2g])
    idx = torch.arange(b, device=z1.device) + off
    scores = anchors @ candidates.T / temperature
    return bounds.supcon_loss(
        scores,
        torch.cat([y, y]),
        torch.cat([yg, yg]),
        self_index=torch.cat([idx, idx + n]),
        normalizer=gather.normalizer,
    )


def _target(spec: TermSpec, reps: Mapping[str, Tensor], views: Mapping[str, Tensor], onehot: Tensor | None) -> Tensor:
    if spec.y == "label":
        return onehot
    if spec.y.startswith("view:"):
        return views[spec.y.removeprefix("view:")]
    return reps[spec.y]


def _conditional_args(
    spec: TermSpec,
    reps: Mapping[str, Tensor],
    views: Mapping[str, Tensor],
    y: Tensor | None,
    conditioning: str,
    gather: Gatherer,
) -> tuple[tuple, int]:
    """(x, candidates, cx, cy) and the offset of a conditional term, as its conditioning takes them."""
    x, b = reps[spec.x], reps[spec.y]
    bg, off = gather(b)
    if spec.condition == "label":
        yg = gather(y)[0]
        cx, cy = (yg, None) if conditioning == "chain" else (y, yg)
    else:
        c1, c2 = views[spec.condition_keys[0]], views[spec.condition_keys[1]]
        if conditioning == "chain":  # the chain rule's condition belongs to the candidates
            cx, cy = gather(c1)[0], gather(c2)[0]
        elif conditioning == "sampled":  # one condition per local row; negatives from q
            cx, cy, bg, off = c1, c2, b, 0
        else:
            cx, cy = c1, gather(c2)[0]
    return (x, bg, cx, cy), off


def _detached(estimator: nn.Module, args: tuple, offset: int) -> CriticInput:
    detached = tuple(a.detach() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
    sampled = getattr(estimator, "conditioning", None) == "sampled"
    candidates = estimator.last_candidates if sampled else None
    return CriticInput(estimator, detached, offset, candidates)


class Gatherer:
    """Gathers candidate tensors across ranks once per tensor per step (identity without a process group)."""

    def __init__(self) -> None:
        # Keyed by id; the tensor itself is kept so that its id cannot be reused within the step.
        self._done: dict[int, tuple[Tensor, tuple[Tensor, int]]] = {}

    @property
    def normalizer(self) -> Any:
        """For estimators that average over a data-dependent subset of rows: the global count's share
        per rank under a process group (see :func:`factorcl.distributed.global_mean_normalizer`), else None."""
        return global_mean_normalizer if is_distributed() else None

    def __call__(self, t: Tensor) -> tuple[Tensor, int]:
        key = id(t)
        if key not in self._done:
            if t.is_floating_point():
                result = gather_with_grad(t)
            else:
                result = (gather_no_grad(t), get_rank() * t.shape[0])
            self._done[key] = (t, result)
        return self._done[key][1]


__all__ = ["CriticInput", "Gatherer", "build_estimators", "evaluate_terms", "supcon_term"]
