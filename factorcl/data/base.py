"""What every data loader shares: the :class:`SplitDataset` it returns, the split names, a shape formatter.

The bottom of ``factorcl.data``: it imports only torch and :mod:`.pairs`, and each loader module
(:mod:`.arrays`, :mod:`.mimic`, :mod:`.multibench`) imports from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .pairs import PairDataset

__all__ = ["SPLIT_ALIASES", "SPLIT_NAMES", "SplitDataset", "shape_str"]

SPLIT_NAMES = ("train", "valid", "test")
#: Every accepted spelling of a split name (lower case) -> its name in :data:`SPLIT_NAMES`.
SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}


def shape_str(shape: Sequence[int] | torch.Size) -> str:
    """``(3,)`` / ``(2, 5)``: a shape written the way Python writes tuples (as in ``augment``'s messages)."""
    return str(tuple(int(s) for s in shape))


@dataclass
class SplitDataset:
    """Train / valid / test :class:`PairDataset` splits of one paired dataset, and what describes them.

    ``valid`` may be None (too few rows to hold one out); ``num_classes`` is None for unlabelled
    data. ``modalities`` names what X1 and X2 are (e.g. ``("vision", "text")``); ``info`` records
    what preprocessing did (rows dropped, values replaced, label rule).
    """

    train: PairDataset
    valid: PairDataset | None
    test: PairDataset
    name: str = "data"
    modalities: tuple[str, str] = ("x1", "x2")
    num_classes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> PairDataset | None:
        """A split by name: ``train``, ``valid`` (or ``val``) or ``test``."""
        key = SPLIT_ALIASES.get(str(name).lower())
        if key is None:
            raise ValueError(f"split must be one of {list(SPLIT_NAMES)}, got {name!r}")
        return getattr(self, key)

    @property
    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per-sample shapes of X1 and X2 (e.g. ``(T, d)`` for sequences, ``(d,)`` for vectors)."""
        f = self.train.fields
        return tuple(f["x1"].shape[1:]), tuple(f["x2"].shape[1:])

    @property
    def dims(self) -> tuple[int, int]:
        """Feature sizes (last axis) of X1 and X2."""
        s1, s2 = self.input_shapes
        return int(s1[-1]) if s1 else 1, int(s2[-1]) if s2 else 1

    @property
    def has_labels(self) -> bool:
        """Whether every split carries labels ``y``."""
        return all("y" in ds.fields for ds in (self.train, self.valid, self.test) if ds is not None)

    def summary(self) -> dict[str, Any]:
        """Sizes, shapes, class counts per split and the preprocessing record (JSON-friendly)."""
        out: dict[str, Any] = {
            "name": self.name,
            "modalities": list(self.modalities),
            "input_shapes": [list(s) for s in self.input_shapes],
            "num_classes": self.num_classes,
            "sizes": {},
            "class_counts": {},
        }
        for name in SPLIT_NAMES:
            ds = getattr(self, name)
            out["sizes"][name] = 0 if ds is None else len(ds)
            if ds is not None and "y" in ds.fields:
                out["class_counts"][name] = torch.bincount(ds.fields["y"], minlength=self.num_classes or 0).tolist()
        out["info"] = self.info
        return out
