"""Datasets: paired tensors, and the synthetic shared/unique benchmark data."""

from .pairs import PairDataset
from .synthetic import SyntheticConfig, SyntheticData, make_labels, make_synthetic

__all__ = ["PairDataset", "SyntheticConfig", "SyntheticData", "make_labels", "make_synthetic"]
