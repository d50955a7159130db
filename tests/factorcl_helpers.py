"""Small models and data for the factorcl tests (fast on two CPU cores)."""

from __future__ import annotations

import torch

import factorcl
from bounds.critics import mlp
from factorcl.data import make_synthetic

IN_DIM, FEAT_DIM = 20, 16


def small_data(num_samples: int = 512, seed: int = 0, unique_ratio: float = 0.5):
    return make_synthetic(
        num_samples=num_samples,
        input_dim=IN_DIM,
        shared_dim=4,
        unique1_dim=3,
        unique2_dim=3,
        unique_ratio=unique_ratio,
        seed=seed,
    )


def noise_aug(x: torch.Tensor) -> torch.Tensor:
    return x + 0.1 * torch.randn_like(x)


def small_model(method: str = "factorcl-ssl", critic: str = "separable", seed: int = 0, **kwargs) -> factorcl.FactorCL:
    torch.manual_seed(seed)
    defaults = dict(
        method=method,
        critic=critic,
        augment1=noise_aug,
        augment2=noise_aug,
        num_classes=2,
        embed_dim=8,
        critic_hidden=32,
        aux_critic_hidden=16,
        critic_embed=16,
    )
    defaults.update(kwargs)
    return factorcl.FactorCL(mlp(IN_DIM, 32, FEAT_DIM, 0), mlp(IN_DIM, 32, FEAT_DIM, 0), FEAT_DIM, FEAT_DIM, **defaults)
