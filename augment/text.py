"""Text augmentations: on raw strings (a ``list[str]`` batch) and on token-id tensors ``[B, L]``.

String augmentations take a list (or tuple) of strings, split on whitespace and join with single
spaces. They loop over the batch in Python (string work has no tensor form) but draw all their
random numbers in one call from the ``generator`` (a ``torch.Generator``, an ``int`` seed, or None
for the global RNG; like every augmentation, also inside containers).

Token-id augmentations are vectorised and never change padding (``pad_id``, or steps that
``mask=`` marks False) or special tokens (``special_ids``, e.g. CLS/SEP/BOS/EOS).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import (
    Augmentation,
    check_int,
    check_nonempty_batch,
    check_probability,
    check_rank,
    rand,
    shape_str,
)

__all__ = ["WordDeletion", "WordSwap", "WordMask", "TokenMask", "TokenDeletion"]


# --------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------


class _StringAugmentation(Augmentation):
    """A batch of strings in, a new list of strings out."""

    input_name = "texts"
    uses_cond = False

    def _check_input(self, x: Any) -> None:
        if isinstance(x, str) or not isinstance(x, (list, tuple)):
            raise ValueError(f"{self.input_name} must be a list of strings, got {type(x).__name__}")
        check_nonempty_batch(x, self.input_name)
        for i, t in enumerate(x):
            if not isinstance(t, str):
                raise ValueError(f"{self.input_name}[{i}] must be a str, got {type(t).__name__}")

    def forward(self, x: Sequence[str], *, cond: Any = None, generator: torch.Generator | None = None) -> list[str]:
        words = [t.split() for t in x]
        # One draw for the whole batch (reproducible and cheap), then split per text.
        n = [self._draws_per_text(len(w)) for w in words]
        u = rand((sum(n),), generator, "cpu").tolist()
        out, start = [], 0
        for w, k in zip(words, n):
            out.append(" ".join(self._augment_words(w, u[start : start + k])))
            start += k
        return out

    def _draws_per_text(self, n_words: int) -> int:
        return n_words

    def _augment_words(self, words: list[str], u: list[float]) -> list[str]:
        raise NotImplementedError


class WordDeletion(_StringAugmentation):
    """Deletes each word with probability ``p``, keeping at least one word of a non-empty text."""

    def __init__(self, p: float = 0.1) -> None:
        self.p = check_probability(p, "p")

    def _augment_words(self, words: list[str], u: list[float]) -> list[str]:
        kept = [w for w, r in zip(words, u) if r >= self.p]
        if not kept and words:
            # Keep the word with the largest draw so an all-deleted text stays non-empty.
            kept = [words[max(range(len(words)), key=u.__getitem__)]]
        return kept

    def _repr_params(self) -> dict[str, Any]:
        return {"p": self.p}


class WordSwap(_StringAugmentation):
    """Swaps ``n_swaps`` random pairs of word positions in each text."""

    def __init__(self, n_swaps: int = 1) -> None:
        self.n_swaps = check_int(n_swaps, "n_swaps", low=0)

    def _draws_per_text(self, n_words: int) -> int:
        return 2 * self.n_swaps if n_words >= 2 else 0

    def _augment_words(self, words: list[str], u: list[float]) -> list[str]:
        words = list(words)
        n = len(words)
        for k in range(0, len(u), 2):
            i = min(int(u[k] * n), n - 1)
            j = min(int(u[k + 1] * (n - 1)), n - 2)
            j = j + 1 if j >= i else j  # a second position different from i
            words[i], words[j] = words[j], words[i]
        return words

    def _repr_params(self) -> dict[str, Any]:
        return {"n_swaps": self.n_swaps}


class WordMask(_StringAugmentation):
    """Replaces each word with ``mask_word`` with probability ``p``."""

    def __init__(self, p: float = 0.15, mask_word: str = "[MASK]") -> None:
        self.p = check_probability(p, "p")
        if not isinstance(mask_word, str) or not mask_word or mask_word.split() != [mask_word]:
            raise ValueError(f"mask_word must be a single non-empty word, got {mask_word!r}")
        self.mask_word = mask_word

    def _augment_words(self, words: list[str], u: list[float]) -> list[str]:
        return [self.mask_word if r < self.p else w for w, r in zip(words, u)]

    def _repr_params(self) -> dict[str, Any]:
        return {"p": self.p, "mask_word": self.mask_word}


# --------------------------------------------------------------------------------------------
# Token ids
# --------------------------------------------------------------------------------------------


def _check_ids(ids: Iterable[int] | None, name: str) -> tuple[int, ...]:
    if ids is None:
        return ()
    if isinstance(ids, (int, Tensor)) and not isinstance(ids, bool):
        ids = [ids] if isinstance(ids, int) else ids.flatten().tolist()
    try:
        return tuple(check_int(i, f"{name}[{k}]") for k, i in enumerate(ids))
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integer token ids, got {ids!r}") from None


class _TokenAugmentation(Augmentation):
    """Shared checks and the ``[B, L]`` mask of tokens that may be changed."""

    input_name = "tokens"
    uses_cond = False

    def __init__(self, pad_id: int, special_ids: Iterable[int] | None, p: float) -> None:
        self.pad_id = check_int(pad_id, "pad_id")
        self.special_ids = _check_ids(special_ids, "special_ids")
        self.p = check_probability(p, "p")

    def _check_input(self, x: Any) -> None:
        super()._check_input(x)
        check_rank(x, self.input_name, (2,), "[B, L] token ids")
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{self.input_name} must be an integer tensor of token ids, got dtype {x.dtype}")

    def _editable(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """True where a token is content: not padding, not special."""
        content = x != self.pad_id
        if self.special_ids:
            content &= ~torch.isin(x, torch.tensor(self.special_ids, dtype=x.dtype, device=x.device))
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.shape != x.shape or mask.dtype != torch.bool:
                got = shape_str(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
                raise ValueError(f"mask must be a bool [B, L] = {shape_str(x.shape)} tensor (True = valid), got {got}")
            content &= mask.to(x.device)
        return content


class TokenMask(_TokenAugmentation):
    """Replaces each content token (not padding, not special) with ``mask_id`` with probability ``p``."""

    def __init__(self, mask_id: int, pad_id: int, special_ids: Iterable[int] | None = None, p: float = 0.15) -> None:
        super().__init__(pad_id, special_ids, p)
        self.mask_id = check_int(mask_id, "mask_id")

    def forward(
        self,
        x: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        hit = (rand(x.shape, generator, x.device) < self.p) & self._editable(x, mask)
        return x.masked_fill(hit, self.mask_id)

    def _repr_params(self) -> dict[str, Any]:
        return {"mask_id": self.mask_id, "pad_id": self.pad_id, "special_ids": self.special_ids, "p": self.p}


class TokenDeletion(_TokenAugmentation):
    """Deletes each content token with probability ``p``.

    The kept tokens close up and the freed slots become ``pad_id``.

    Padding and special tokens are never deleted (special tokens keep their order relative to the
    kept content); with ``mask=``, steps it marks False count as padding and come out as
    ``pad_id``. ``padding_side="right"`` packs kept tokens to the left and pads at the end;
    ``"left"`` packs them to the right and pads at the front.
    """

    def __init__(
        self,
        pad_id: int,
        special_ids: Iterable[int] | None = None,
        p: float = 0.1,
        padding_side: str = "right",
    ) -> None:
        super().__init__(pad_id, special_ids, p)
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.padding_side = padding_side

    def forward(
        self,
        x: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        b, length = x.shape
        delete = (rand(x.shape, generator, x.device) < self.p) & self._editable(x, mask)
        present = x != self.pad_id if mask is None else mask.to(x.device)
        keep = present & ~delete
        pos = keep.long().cumsum(1) - 1  # new index of each kept token, packed to the left
        if self.padding_side == "left":
            pos = pos + (length - keep.sum(1, keepdim=True))
        # Dropped tokens go to an extra scratch column that is cut off afterwards.
        pos = torch.where(keep, pos, torch.full_like(pos, length))
        out = torch.full((b, length + 1), self.pad_id, dtype=x.dtype, device=x.device)
        out.scatter_(1, pos, x)
        return out[:, :length].contiguous()

    def _repr_params(self) -> dict[str, Any]:
        return {"pad_id": self.pad_id, "special_ids": self.special_ids, "p": self.p, "padding_side": self.padding_side}
