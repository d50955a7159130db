"""Shared setup of the CLIP tests (``tests/test_clip_*.py``): the tiny random-init model and one batch of demo data.

The demo data itself comes from the ``clip_demo`` fixture in ``conftest.py`` (made once per size).
"""

from __future__ import annotations

from pathlib import Path

import torch

from factorcl.clip import ClipBundle, ImageCaptionDataset, load_clip, make_loader, tiny_config


def tiny(seed: int = 0, name: str = "clip-test-tiny") -> ClipBundle:
    """factorcl's tiny CLIP architecture, random init from ``seed``."""
    torch.manual_seed(seed)
    return load_clip(config=tiny_config(), name=name)


def batch_of(bundle: ClipBundle, data: Path, n: int = 8) -> dict[str, torch.Tensor]:
    """The first ``n`` pairs of ``data`` as a FactorCL batch (``x1`` tokens, ``x2`` images, ``y``)."""
    ds = ImageCaptionDataset(data, bundle.preprocess_cfg)
    return next(iter(make_loader(ds, bundle.tokenizer, n, shuffle=False)))
