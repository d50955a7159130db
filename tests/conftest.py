"""Shared test settings: deterministic, small, two threads (the CI machine has two cores)."""

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(0)

