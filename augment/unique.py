"""Unique augmentation: augment x2 conditioned on x1 so that what x1 refers to survives (FactorCL Eq. 4.18).

Two forms:

* :class:`UniqueAugment` wraps any augmentation ``base``: it draws K candidate augmentations of
  each x2, scores them against x1 with a cross-modal ``scorer`` (a trained critic, CLIP
  image-text similarity, ...) and keeps the best one (or a random one above a threshold).
* :class:`RelevanceMask` (features): masks only feature dimensions of low cross-modal relevance,
  relevance given as a vector or computed from the scorer's input gradient.

Scorer convention (shared by both): ``scorer(x1, candidates) -> [B, K]`` where ``x1`` is the
conditioning batch ``[B, ...]`` and ``candidates`` is ``[B, K, ...]`` (K candidate versions of each
x2); higher = x2 candidate keeps more of what x1 refers to. :func:`pair_scorer` builds one from a
function that scores aligned pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .base import (
    Augmentation,
    batch_size,
    check_floating,
    check_int,
    check_number,
    check_probability,
    check_tensor,
    floor_fraction,
    is_per_sample,
    mixes_batch,
    rand,
    shape_str,
    used_keywords,
)
from .features import _FeatureAugmentation, fill_where, valid_steps

__all__ = ["UniqueAugment", "RelevanceMask", "pair_scorer"]

Scorer = Callable[[Tensor, Tensor], Tensor]


def pair_scorer(score_pairs: Callable[[Tensor, Tensor], Tensor]) -> Scorer:
    """Turns ``score_pairs(x1 [N, ...], x2 [N, ...]) -> [N]`` (aligned pairs) into a ``[B, K]`` scorer.

    E.g. CLIP: ``pair_scorer(lambda t, img: F.cosine_similarity(t, encode_image(img), dim=-1))``
    with ``t`` the caption embeddings. All B*K pairs are scored in one call.
    """

    def scorer(x1: Tensor, candidates: Tensor) -> Tensor:
        b, k = candidates.shape[:2]
        flat = candidates.reshape(b * k, *candidates.shape[2:])
        s = score_pairs(x1.repeat_interleave(k, dim=0), flat)
        return s.reshape(b, k)

    return scorer


def _check_scores(scores: object, b: int, k: int) -> Tensor:
    if not isinstance(scores, Tensor):
        raise ValueError(f"scorer must return a [B, K] tensor, got {type(scores).__name__}")
    if scores.shape != (b, k):
        raise ValueError(f"scorer must return [B, K] = ({b}, {k}) scores, got shape {shape_str(scores.shape)}")
    return scores


def _repeat_per_sample(value: Any, k: int, b: int) -> Any:
    """Each row of a per-sample value (see :func:`~augment.base.is_per_sample`) repeated ``k`` times in place."""
    if not is_per_sample(value, b):
        return value
    if isinstance(value, Tensor):
        return value.repeat_interleave(k, dim=0)
    return [v for v in value for _ in range(k)]


class UniqueAugment(Augmentation):
    """Keeps, per sample, the candidate augmentation of x2 that the scorer rates best against x1.

    ``aug(x2, cond=x1, generator=None, **kwargs)``: ``base`` is applied once to x2 repeated
    ``num_candidates`` times (``[B*K, ...]``, one vectorised call; per-sample keyword arguments such
    as ``lengths``/``mask`` are repeated alongside), the ``[B, K, ...]`` candidates are scored with
    ``scorer(x1, candidates) -> [B, K]`` (without gradients), and one candidate per sample is kept:

    * ``mode="best"``: the highest-scoring candidate;
    * ``mode="threshold"``: a uniformly random candidate among those scoring ``>= threshold``
      (more diverse views), falling back to the best candidate when none passes.

    Works for any tensor modality ``base`` accepts, e.g. images ``[B, 3, H, W]`` with an
    :class:`~augment.images.ImageAugment` base and a CLIP scorer. Memory and base cost grow K-fold.
    ``base`` must treat samples independently: a batch-mixing base (:class:`~augment.features.Mixup`,
    also inside a container) is rejected, since it would mix candidate copies of one sample.
    """

    input_name = "x2"
    uses_cond = True

    def __init__(
        self,
        base: Callable[..., Tensor],
        scorer: Scorer,
        num_candidates: int = 8,
        mode: str = "best",
        threshold: float | None = None,
    ) -> None:
        if not callable(base):
            raise ValueError(f"base must be callable, got {type(base).__name__}")
        if not callable(scorer):
            raise ValueError(f"scorer must be callable, got {type(scorer).__name__}")
        if mixes_batch(base):
            raise ValueError(
                f"base must augment each sample on its own, got {base!r}, which mixes samples of the "
                "batch (its batch holds K candidate copies of each sample)"
            )
        self.base = base
        self.scorer = scorer
        self.num_candidates = check_int(num_candidates, "num_candidates", low=1)
        if mode not in ("best", "threshold"):
            raise ValueError(f"mode must be 'best' or 'threshold', got {mode!r}")
        self.mode = mode
        if mode == "threshold":
            if threshold is None:
                raise ValueError("threshold is required when mode='threshold'")
            self.threshold: float | None = check_number(threshold, "threshold")
        else:
            if threshold is not None:
                raise ValueError("threshold is only used with mode='threshold'")
            self.threshold = None

    def __call__(
        self,
        x: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> Tensor:
        if cond is None:
            raise ValueError("cond (the other modality, x1) is required for UniqueAugment")
        return super().__call__(x, cond=cond, generator=generator, **kwargs)

    def children(self) -> tuple[Callable[..., Any], ...]:
        return (self.base,)

    def forward(self, x: Tensor, *, cond: Tensor, generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        return self.augment_with_scores(x, cond=cond, generator=generator, **kwargs)[0]

    def augment_with_scores(
        self,
        x2: Tensor,
        *,
        cond: Tensor,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Like calling the augmentation, and also returns the ``[B, K]`` scores and the ``[B]`` chosen indices."""
        b, k = batch_size(x2), self.num_candidates
        # Sample-major repeat: rows i*K .. i*K+K-1 are the candidates of sample i.
        used = used_keywords(self.base, {"cond": cond, "generator": generator, **kwargs})
        keywords = {key: _repeat_per_sample(v, k, b) for key, v in used.items()}  # the generator is kept
        candidates = self.base(x2.repeat_interleave(k, dim=0), **keywords)
        if not isinstance(candidates, Tensor) or candidates.shape[0] != b * k:
            got = shape_str(candidates.shape) if isinstance(candidates, Tensor) else type(candidates).__name__
            raise ValueError(f"base must return a [B*K, ...] = ({b * k}, ...) tensor, got {got}")
        candidates = candidates.reshape(b, k, *candidates.shape[1:])
        with torch.no_grad():
            scores = _check_scores(self.scorer(cond, candidates), b, k)
        chosen = self._choose(scores.detach(), generator)
        out = candidates[torch.arange(b, device=candidates.device), chosen.to(candidates.device)]
        return out, scores, chosen

    def _choose(self, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        scores = scores.float()
        best = scores.argmax(dim=1)
        if self.mode == "best":
            return best
        passing = scores >= self.threshold
        # A uniform key per candidate, -1 for failing ones: argmax = uniform choice among passing.
        keys = rand(scores.shape, generator, scores.device).masked_fill_(~passing, -1.0)
        pick = keys.argmax(dim=1)
        return torch.where(passing.any(dim=1), pick, best)

    def _repr_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "base": self.base,
            "scorer": self.scorer,
            "num_candidates": self.num_candidates,
            "mode": self.mode,
        }
        if self.threshold is not None:
            params["threshold"] = self.threshold
        return params


class RelevanceMask(_FeatureAugmentation):
    """Masks feature dimensions of x2 that matter little for x1 (features ``[B, D]`` / sequences ``[B, T, D]``).

    Per sample, ``floor(p * D)`` dimensions (exact, see :func:`~augment.base.floor_fraction`)
    are set to ``value``, drawn uniformly from the
    ``max(floor(p * D), ceil(pool * D))`` dimensions of lowest relevance (``pool=p`` masks exactly
    the least relevant ones; ``pool=1`` ignores relevance). For sequences a masked dimension is
    masked at every valid step; padded steps are untouched.

    Relevance (higher = more relevant to x1), first available of:

    1. ``relevance=`` passed to the call: per sample, ``[B, D]``;
    2. ``relevance=`` given at construction: one vector for all samples, ``[D]``;
    3. ``scorer``: ``|d scorer(x1, x2[:, None]) / d x2|`` (summed over valid steps for sequences),
       which needs ``cond=x1``. A gradient is a local measure: at a stationary point of the scorer
       (e.g. a squared distance at its minimum) it is zero and all dimensions look irrelevant.
    """

    input_name = "x2"

    def __init__(
        self,
        p: float = 0.2,
        relevance: Tensor | None = None,
        scorer: Scorer | None = None,
        pool: float = 0.5,
        value: float = 0.0,
    ) -> None:
        self.p = check_probability(p, "p")
        self.pool = check_probability(pool, "pool")
        if relevance is not None:
            relevance = check_tensor(relevance, "relevance").detach()
            if relevance.dim() != 1:
                raise ValueError(
                    f"relevance given at construction must be [D] (per-sample relevance goes to the call), "
                    f"got shape {shape_str(relevance.shape)}"
                )
        if scorer is not None and not callable(scorer):
            raise ValueError(f"scorer must be callable, got {type(scorer).__name__}")
        self.relevance = relevance
        self.scorer = scorer
        self.value = check_number(value, "value")

    @property
    def uses_cond(self) -> bool:  # type: ignore[override]
        """cond is read only to compute relevance from the scorer (no relevance vector given)."""
        return self.scorer is not None and self.relevance is None

    def forward(
        self,
        x: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
        relevance: Tensor | None = None,
    ) -> Tensor:
        valid = valid_steps(x, lengths, mask, self.input_name)
        b, d = x.shape[0], x.shape[-1]
        rel = self._relevance(x, cond, valid, relevance)
        k = floor_fraction(d, self.p)
        if k == 0:
            return x.clone()
        m = max(k, floor_fraction(d, self.pool, ceil=True))
        # Dimensions by increasing relevance, ties broken at random (shuffle, then stable sort).
        shuffle = rand((b, d), generator, x.device).argsort(dim=1)
        by_rel = torch.sort(rel.gather(1, shuffle), dim=1, stable=True).indices
        low = shuffle.gather(1, by_rel)[:, :m]  # the m least relevant dims of each sample
        pick = rand((b, m), generator, x.device).argsort(dim=1)[:, :k]
        drop = torch.zeros(b, d, dtype=torch.bool, device=x.device).scatter_(1, low.gather(1, pick), True)
        if x.dim() == 3:
            drop = drop.unsqueeze(1)
            if valid is not None:
                drop = drop & valid.unsqueeze(-1)
        return fill_where(x, drop, self.value)

    def _relevance(self, x: Tensor, cond: Tensor | None, valid: Tensor | None, relevance: Tensor | None) -> Tensor:
        b, d = x.shape[0], x.shape[-1]
        if relevance is not None:
            # Call-time tensors are per sample (containers slice them with the batch), so [B, D].
            rel = check_tensor(relevance, "relevance").detach()
            if rel.shape != (b, d):
                raise ValueError(
                    f"relevance passed to the call must be [B, D] = ({b}, {d}), got shape {shape_str(rel.shape)}"
                )
            return rel.to(x.device, torch.float32)
        if self.relevance is not None:
            if self.relevance.shape != (d,):
                raise ValueError(
                    f"relevance must be [D] = ({d},) for x2 with D={d}, got shape {shape_str(self.relevance.shape)}"
                )
            return self.relevance.to(x.device, torch.float32).expand(b, d)
        if self.scorer is None:
            raise ValueError("RelevanceMask needs relevance= ([D] at construction or [B, D] at the call) or a scorer")
        if cond is None:
            raise ValueError("cond (the other modality, x1) is required to compute relevance from the scorer")
        check_floating(x, self.input_name)
        with torch.enable_grad():
            probe = x.detach().clone().requires_grad_(True)
            scores = _check_scores(self.scorer(cond, probe.unsqueeze(1)), b, 1)
            (grad,) = torch.autograd.grad(scores.sum(), probe)
        rel = grad.abs().float()
        if x.dim() == 3:
            if valid is not None:
                rel = rel * valid.unsqueeze(-1)
            rel = rel.sum(dim=1)
        return rel

    def _repr_params(self) -> dict[str, Any]:
        return {"p": self.p, "pool": self.pool, "value": self.value, "scorer": self.scorer}
