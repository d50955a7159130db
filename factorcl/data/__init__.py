"""Datasets: paired tensors, the synthetic shared/unique benchmark data, and real data loaders.

- :class:`PairDataset`: paired tensors (items ``{"x1", "x2", "y", "mask1", "mask2"}``).
- :func:`make_synthetic`: the synthetic data of Section 4.4.1.
- :func:`load_multibench`: MultiBench affect pickles (MOSI, MOSEI, UR-FUNNY humor, MUStARD sarcasm).
- :func:`load_mimic`: MultiBench's MIMIC ``im.pk``.
- :func:`load_arrays`: generic ``.npz`` / ``.pt`` files with ``x1``, ``x2`` and optional ``y``.
- :class:`SplitDataset`: what the loaders return (train / valid / test PairDatasets).
"""

from .arrays import load_arrays, shuffled_split
from .base import SplitDataset
from .mimic import load_mimic
from .multibench import load_multibench
from .pairs import PairDataset
from .synthetic import SyntheticConfig, SyntheticData, make_labels, make_synthetic

__all__ = [
    "PairDataset",
    "SplitDataset",
    "SyntheticConfig",
    "SyntheticData",
    "load_arrays",
    "load_mimic",
    "load_multibench",
    "make_labels",
    "make_synthetic",
    "shuffled_split",
]
