"""CLIP's two towers as FactorCL encoders, tower locking, gradient checkpointing, and CLIP's logit as a critic.

Both wrappers hold the same open_clip model (so its parameters, e.g. ``logit_scale``, are shared
and appear once in ``parameters()``; ``torch.save`` stores shared tensors once, so the duplicate
state-dict keys cost no disk space).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ClipLogitCritic",
    "ImageTower",
    "TextTower",
    "eval_mode",
    "lock_towers",
    "set_grad_checkpointing",
]


class ImageTower(nn.Module):
    """``[B, 3, H, W]`` float images in [0, 1] at the model's input size -> CLIP image embeddings ``[B, D]``.

    Applies CLIP's mean/std normalisation itself, so that augmentations run before it on [0, 1]
    images (kornia, on device).
    """

    def __init__(self, clip: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.clip = clip
        # Not persistent: they come from the preprocessing config, not from training.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
        x = (images.float() - self.mean) / self.std
        return self.clip.encode_image(x)


class TextTower(nn.Module):
    """Token ids ``[B, L]`` (LongTensor, from the model's tokenizer) -> CLIP text embeddings ``[B, D]``."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        # ``mask`` is accepted for FactorCL's calling convention; CLIP's text tower finds the end
        # of the text from the ids (EOT / padding) itself.
        if tokens.dim() != 2 or tokens.is_floating_point():
            raise ValueError(
                f"tokens must be a [B, L] integer tensor, got shape {tuple(tokens.shape)}, dtype {tokens.dtype}"
            )
        return self.clip.encode_text(tokens)


class ClipLogitCritic(nn.Module):
    """CLIP's own critic: ``scores[i, j] = exp(logit_scale) * cos(x_i, y_j)``, with CLIP's learnable ``logit_scale``.

    Shares the parameter with the open_clip model (training it trains CLIP's temperature, as CLIP
    training does). The scale is capped at ``max_scale`` (100, as open_clip's training clamps it).
    The scores are computed in float32 even under autocast: at a scale of 100 bfloat16's rounding
    of the cosine would move a logit by up to about 0.4.
    """

    def __init__(self, logit_scale: nn.Parameter, max_scale: float = 100.0) -> None:
        super().__init__()
        self.logit_scale = logit_scale
        self.max_log_scale = math.log(max_scale)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            scale = self.logit_scale.float().clamp(max=self.max_log_scale).exp()
            return scale * F.normalize(x.float(), dim=-1) @ F.normalize(y.float(), dim=-1).T


def lock_towers(clip: nn.Module, lock_image: bool = False, lock_text: bool = False, unlocked_blocks: int = 0) -> None:
    """Freeze (``requires_grad=False``) the image and/or text tower, except their last ``unlocked_blocks`` blocks.

    With ``unlocked_blocks=N > 0`` a locked tower keeps its last N transformer blocks, its final
    LayerNorm and its projection trainable (open_clip's ``lock_*_tower`` with N + 1 groups, whose
    last group is the projection alone). ``logit_scale`` belongs to neither tower and stays
    trainable. Frozen parameters get no gradient, so the trainer's AdamW leaves them unchanged.
    """
    n = int(unlocked_blocks)
    if n < 0:
        raise ValueError(f"unlocked_blocks must be >= 0, got {unlocked_blocks}")
    groups = 0 if n == 0 else n + 1
    if lock_image:
        clip.lock_image_tower(unlocked_groups=groups)
    if lock_text:
        clip.lock_text_tower(unlocked_layers=groups)


def set_grad_checkpointing(clip: nn.Module, enable: bool = True) -> None:
    """Recompute the towers' transformer blocks in the backward pass (less activation memory, ~30% more compute)."""
    clip.set_grad_checkpointing(enable)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block, then restore every submodule's own training flag."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag
