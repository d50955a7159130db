"""The augmented views X1' (captions) and X2' (images) of FactorCL-SSL on CLIP.

Following the paper (Sec. 4.3.2, Fig. 4.4), the text is augmented independently and the image gets
the *unique* augmentation: one that keeps what the caption refers to. Three image options:

- ``"unique-preset"``: :class:`augment.ImageAugment` ``"unique"`` (flip and mild colour jitter: no
  crop, no grayscale, no hue shift), cheap, caption-agnostic;
- ``"unique-scored"``: :class:`augment.UniqueAugment` over the ``"standard"`` preset: K candidate
  augmentations per image, scored against the caption with the model's *own current* image-text
  similarity (no gradients, eval mode), keeping the best (Eq. 4.18 with CLIP as the scorer);
- ``"standard"``: the ``"standard"`` preset (crop, flip, jitter, grayscale, blur), independent of
  the caption: the paper's FactorCL-IndAug ablation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import augment

from .loading import TokenIds
from .towers import eval_mode

__all__ = ["IMAGE_AUGS", "TEXT_AUGS", "ClipTextAugment", "ImageTextScorer", "image_augmentation"]

IMAGE_AUGS: tuple[str, ...] = ("unique-preset", "unique-scored", "standard")
TEXT_AUGS: tuple[str, ...] = ("delete", "mask", "none")


class ClipTextAugment:
    """Token-id augmentation of captions that never touches padding or special tokens (SOT/EOT).

    ``mode="delete"``: each content token is deleted with probability ``p`` (the rest close up,
    the end-of-text token moves left with them); ``"mask"``: replaced by ``ids.mask_id`` (CLIP's
    BPE vocabulary has no mask token: it then falls back to id 0, the padding id, which the causal
    text tower reads as an ordinary token before the end of text); ``"none"``: unchanged copy.

    The valid part of each row is everything up to its end-of-text token, so that content tokens
    that share the padding id (id 0 is also a BPE piece of CLIP's vocabulary) are kept in place,
    not mistaken for padding.
    """

    def __init__(self, ids: TokenIds, mode: str = "delete", p: float = 0.15) -> None:
        if mode not in TEXT_AUGS:
            raise ValueError(f"text augmentation must be one of {list(TEXT_AUGS)}, got {mode!r}")
        self.ids = ids
        self.mode = mode
        self.p = float(p)
        if mode == "delete":
            self.aug: Callable | None = augment.TokenDeletion(ids.pad_id, ids.special_ids, p=p)
        elif mode == "mask":
            mask_id = ids.mask_id if ids.mask_id is not None else ids.pad_id
            self.aug = augment.TokenMask(mask_id, ids.pad_id, ids.special_ids, p=p)
        else:
            self.aug = None

    def valid(self, tokens: Tensor) -> Tensor:
        """``[B, L]`` bool: True up to and including each row's end-of-text token (or its last non-padding token)."""
        pos = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        marker = tokens == self.ids.eot_id if self.ids.eot_id is not None else tokens != self.ids.pad_id
        has = marker.any(dim=1, keepdim=True)
        last = torch.where(marker, pos, torch.full_like(pos, -1)).amax(dim=1, keepdim=True)
        last = torch.where(has, last, torch.full_like(last, tokens.shape[1] - 1))
        return pos <= last

    def __call__(self, tokens: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        if self.aug is None:
            return tokens.clone()
        return self.aug(tokens, mask=self.valid(tokens), generator=generator)

    def __repr__(self) -> str:
        return f"ClipTextAugment(mode={self.mode!r}, p={self.p})"


class ImageTextScorer:
    """``scorer(tokens [B, L], candidates [B, K, 3, H, W]) -> [B, K]``: cosine of each candidate image with its caption.

    Uses the towers as they are at the call (the model's own, current similarity), without
    gradients and in eval mode (no dropout; BatchNorm statistics untouched). Each caption is
    encoded once, not once per candidate.
    """

    def __init__(self, text_tower: nn.Module, image_tower: nn.Module) -> None:
        self.text_tower = text_tower
        self.image_tower = image_tower

    @torch.no_grad()
    def __call__(self, tokens: Tensor, candidates: Tensor) -> Tensor:
        b, k = candidates.shape[:2]
        with eval_mode(self.text_tower), eval_mode(self.image_tower):
            t = F.normalize(self.text_tower(tokens).float(), dim=-1)
            i = F.normalize(self.image_tower(candidates.reshape(b * k, *candidates.shape[2:])).float(), dim=-1)
        return torch.einsum("bkd,bd->bk", i.view(b, k, -1), t)

    def __repr__(self) -> str:
        return "ImageTextScorer(CLIP cosine)"


def image_augmentation(
    kind: str,
    strength: float = 1.0,
    scorer: Callable[[Tensor, Tensor], Tensor] | None = None,
    num_candidates: int = 4,
) -> Callable[..., Tensor]:
    """The image (X2') augmentation for ``kind`` in :data:`IMAGE_AUGS` (``"unique-scored"`` needs the scorer)."""
    if kind == "unique-preset":
        return augment.ImageAugment("unique", strength=strength)
    if kind == "standard":
        return augment.ImageAugment("standard", strength=strength)
    if kind == "unique-scored":
        if scorer is None:
            raise ValueError("image augmentation 'unique-scored' needs a scorer (the model's image-text similarity)")
        return augment.UniqueAugment(
            augment.ImageAugment("standard", strength=strength), scorer, num_candidates=num_candidates, mode="best"
        )
    raise ValueError(f"image augmentation must be one of {list(IMAGE_AUGS)}, got {kind!r}")
