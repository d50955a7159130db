"""A dataset of paired modalities (and optional labels) held as tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


class PairDataset(Dataset):
    """Items ``{"x1": x1[i], "x2": x2[i]}`` (plus ``"y"``, ``"mask1"``, ``"mask2"`` when given)."""

    def __init__(
        self, x1: Tensor, x2: Tensor, y: Tensor | None = None, mask1: Tensor | None = None, mask2: Tensor | None = None
    ) -> None:
        n = x1.shape[0] if isinstance(x1, Tensor) else None
        fields = {"x1": x1, "x2": x2, "y": y, "mask1": mask1, "mask2": mask2}
        for name, t in fields.items():
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
            if t.shape[0] != n:
                raise ValueError(f"{name} has {t.shape[0]} rows but x1 has {n}: every field needs one row per sample")
        if n == 0:
            raise ValueError("the dataset is empty (x1 has 0 rows)")
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def __len__(self) -> int:
        return self.fields["x1"].shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: v[index] for k, v in self.fields.items()}

    def tensors(self) -> dict[str, Tensor]:
        """All fields as whole tensors."""
        return dict(self.fields)

    def loader(
        self, batch_size: int, shuffle: bool = False, drop_last: bool = False, seed: int | None = None, **kwargs: Any
    ) -> DataLoader:
        """A DataLoader over this dataset; ``seed`` fixes the shuffle order independently of the global RNG."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return DataLoader(
            self, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator, **kwargs
        )
