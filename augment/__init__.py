"""Unimodal and unique (cross-modal-conditioned) augmentations.

One calling convention: ``aug(x, generator=None) -> x_aug`` (unimodal) and
``aug(x2, cond=x1, generator=None) -> x2_aug`` (unique); containers hand each child only the
call-time keywords it uses (:func:`accepts_keyword`). Batched and vectorised over the batch,
never modifies the input, keeps device/dtype/shape, reproducible with a ``torch.Generator``.
See :mod:`augment.base` for the conventions.
"""

from .base import Augmentation, Compose, Identity, RandomApply, RandomChoice, accepts_keyword, seeded_global_rng
from .features import FeatureDropout, GaussianNoise, Mixup, TimeMask, TimeShuffle, valid_steps
from .images import PRESETS, ImageAugment, albumentations_pipeline
from .text import TokenDeletion, TokenMask, WordDeletion, WordMask, WordSwap
from .unique import RelevanceMask, UniqueAugment, pair_scorer

__all__ = [
    "Augmentation",
    "Compose",
    "RandomChoice",
    "RandomApply",
    "Identity",
    "accepts_keyword",
    "seeded_global_rng",
    "GaussianNoise",
    "FeatureDropout",
    "TimeMask",
    "TimeShuffle",
    "Mixup",
    "valid_steps",
    "ImageAugment",
    "albumentations_pipeline",
    "PRESETS",
    "WordDeletion",
    "WordSwap",
    "WordMask",
    "TokenMask",
    "TokenDeletion",
    "UniqueAugment",
    "RelevanceMask",
    "pair_scorer",
]
