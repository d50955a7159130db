"""Shared test settings: deterministic, small, one torch thread, and shared fixtures."""

import pytest
import torch

# One thread: the tests' ops are tiny, and on the shared two-core CI machine a second OpenMP thread
# mostly spin-waits (tiny models ran up to 100x slower with two).
torch.set_num_threads(1)


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def clip_demo(tmp_path_factory):
    """``clip_demo(n, seed=0)``: the captions file of a generated CLIP demo dataset, made once per ``(n, seed)``.

    Shared by the test session: tests may add files beside it but must not change it.
    """
    made = {}

    def make(n: int, seed: int = 0):
        if (n, seed) not in made:
            from factorcl.clip import write_demo_dataset

            made[(n, seed)] = write_demo_dataset(tmp_path_factory.mktemp(f"clip-demo-{n}-{seed}"), n=n, seed=seed)
        return made[(n, seed)]

    return make
