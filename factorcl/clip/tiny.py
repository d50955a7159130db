"""A tiny open_clip architecture (random init) for tests, smoke runs and ``--quick`` benchmarks on CPU.

ViT with 32x32 images, 8x8 patches, width 64, 2 layers, 2 heads; text with context 16, CLIP's real
vocabulary (49408 tokens, so the real tokenizer works), width 64, 2 layers, 2 heads; embeddings
of width 32. About 3.4M parameters, most of them the token embedding.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

__all__ = ["TINY_CONFIG", "tiny_config"]

TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A fresh copy of :data:`TINY_CONFIG`; top-level keys can be overridden."""
    cfg = deepcopy(TINY_CONFIG)
    cfg.update(overrides)
    return cfg
