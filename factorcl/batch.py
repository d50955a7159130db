"""The batch contract: what a training or evaluation batch holds, read once from a dict or a tuple."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

FIELDS = ("x1", "x2", "y", "x1_aug", "x2_aug", "mask1", "mask2")


@dataclass
class Batch:
    """One batch of pairs: inputs ``x1``, ``x2`` ([B, ...] each), optional labels ``y``, optional
    pre-augmented views ``x1_aug`` / ``x2_aug`` (made in data-loader workers) and optional
    padding masks ``mask1`` / ``mask2`` (sequence encoders)."""

    x1: Any
    x2: Any
    y: Any = None
    x1_aug: Tensor | None = None
    x2_aug: Tensor | None = None
    mask1: Tensor | None = None
    mask2: Tensor | None = None

    @classmethod
    def from_any(cls, batch: Any) -> Batch:
        """A dict with ``x1``, ``x2`` (and any of the optional fields; other keys are ignored) or a
        tuple ``(x1, x2)`` / ``(x1, x2, y)``."""
        if isinstance(batch, Batch):
            return batch
        if isinstance(batch, Mapping):
            if "x1" not in batch or "x2" not in batch:
                raise ValueError(f"batch must hold 'x1' and 'x2', got keys {sorted(batch)}")
            return cls(**{k: batch.get(k) for k in FIELDS})
        if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
            return cls(batch[0], batch[1], batch[2] if len(batch) == 3 else None)
        raise ValueError(
            "batch must be a dict with 'x1', 'x2' (optional 'y', 'x1_aug', 'x2_aug', 'mask1', 'mask2') "
            "or a tuple (x1, x2) / (x1, x2, y)"
        )

    def check_pair(self) -> tuple[Tensor, Tensor]:
        """``(x1, x2)``, checked: non-empty tensor batches with the same batch size."""
        for name, x in (("x1", self.x1), ("x2", self.x2)):
            if not isinstance(x, Tensor):
                raise ValueError(f"{name} must be a tensor batch, got {type(x).__name__}")
            if x.dim() == 0 or x.shape[0] == 0:
                raise ValueError(f"{name} must be a non-empty batch [B, ...], got shape {tuple(x.shape)}")
        if self.x1.shape[0] != self.x2.shape[0]:
            raise ValueError(f"x1 and x2 must have the same batch size, got {self.x1.shape[0]} and {self.x2.shape[0]}")
        return self.x1, self.x2

    def class_labels(self, num_classes: int) -> Tensor:
        """``y`` as a long [B] vector on x1's device, checked: integers in [0, num_classes), one per sample."""
        y = torch.as_tensor(self.y, device=self.x1.device).reshape(-1)
        if y.is_floating_point():
            if not bool((y == y.round()).all()):
                raise ValueError("y must hold integer class labels, got non-integer values")
            y = y.long()
        if y.shape[0] != self.x1.shape[0]:
            raise ValueError(
                f"y must have one label per sample: got {y.shape[0]} labels for a batch of {self.x1.shape[0]}"
            )
        if bool((y < 0).any()) or bool((y >= num_classes).any()):
            raise ValueError(
                f"y must hold labels in [0, {num_classes}), got values in [{int(y.min())}, {int(y.max())}]"
            )
        return y

    def masks(self) -> dict[str, Tensor]:
        """The padding masks present, by keyword (``mask1`` / ``mask2``)."""
        return {k: v for k, v in (("mask1", self.mask1), ("mask2", self.mask2)) if v is not None}

    def mask(self, i: int) -> Tensor | None:
        """Modality ``i``'s padding mask (1 or 2)."""
        return self.mask1 if i == 1 else self.mask2

    def view(self, i: int) -> Tensor | None:
        """Modality ``i``'s pre-augmented view, if the batch carries one."""
        return self.x1_aug if i == 1 else self.x2_aug


__all__ = ["Batch"]
