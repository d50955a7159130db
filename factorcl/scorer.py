"""The model's own cross-modal scorer, for the unique augmentation (Eq. 4.18)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

import bounds

if TYPE_CHECKING:
    from .model import FactorCL


def shared_scorer(model: FactorCL) -> Callable[[Tensor, Tensor], Tensor]:
    """``scorer(x1 [B, ...], candidates [B, K, ...]) -> [B, K]`` for :class:`augment.UniqueAugment`.

    The score is the model's shared critic on (Z_S1(x1_i), Z_S2(candidate_ik)), or on (Z1, Z2)
    without factorisation: higher means the candidate keeps more of what x1 refers to. It runs
    without gradients, in eval mode.
    """
    if "shared_keep" not in model.estimators:
        raise ValueError(f"method {model.objective.name!r} has no shared critic (shared_keep) to score with")
    k1, k2 = ("s1", "s2") if model.objective.factorized else ("z1", "z2")

    @torch.no_grad()
    def scorer(x1: Tensor, candidates: Tensor) -> Tensor:
        b, k = candidates.shape[:2]
        was_training = model.training
        model.eval()
        try:
            z1 = model.heads[k1](model.encode(1, x1))
            z2 = model.heads[k2](model.encode(2, candidates.reshape(b * k, *candidates.shape[2:])))
            return bounds.score_candidates(model.estimators["shared_keep"].critic, z1, z2.view(b, k, -1))
        finally:
            model.train(was_training)

    return scorer


__all__ = ["shared_scorer"]
