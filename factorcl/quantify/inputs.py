"""A dataset split as estimator inputs: one vector per row and modality, and the labels."""

from __future__ import annotations

import numpy as np
import torch

from ..data.pairs import PairDataset

__all__ = ["split_arrays"]


def _pooled(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """[N, T, d] sequences -> [N, d] masked time means; [N, d] passes through; [N] -> [N, 1]."""
    if x.dim() == 1:
        return x[:, None]
    if x.dim() == 2:
        return x
    flat = x.reshape(x.shape[0], x.shape[1], -1).float()
    if mask is None:
        return flat.mean(dim=1)
    w = mask.reshape(mask.shape[0], -1).float()[:, :, None]
    return (flat * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def split_arrays(ds: PairDataset, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """x1 [N, d1], x2 [N, d2], y [N] of a split, and how the inputs were made (sequences: masked time mean)."""
    f = ds.fields
    if "y" not in f:
        raise ValueError(f"the {split!r} split has no labels 'y': the PID decomposes the information about a label")
    how = []
    out = []
    for k in ("1", "2"):
        x = f[f"x{k}"]
        if x.dim() >= 3:
            how.append(f"x{k}: {tuple(x.shape[1:])} sequences summarised by their masked time mean")
        out.append(_pooled(x, f.get(f"mask{k}")).double().numpy())
    return out[0], out[1], f["y"].numpy(), "; ".join(how) or "vector inputs as given"
