"""Faithful re-implementations of the published FactorCL reference code, kept only as baselines.

Everything here is written the way the published code wrote it, inefficiencies included, so that
benchmarks can measure what :mod:`bounds` improves on. Nothing in the library imports this module;
do not use it for anything but comparisons.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor, nn

import bounds


class PublishedConcatCritic(nn.Module):
    """The published ``ConcatCritic``: tile every (x, y) pair into ``[B*B, dx+dy]``, run the MLP on each.

    Slow and memory-hungry on purpose: it materialises the tiled inputs and runs the full first
    layer on all B^2 pairs, where :class:`bounds.ConcatCritic` computes the two halves of the
    first layer once per sample. It exists only as the baseline of the speed/memory benchmarks.

    The MLP is ``bounds.mlp(x_dim + y_dim, hidden_dim, 1, layers, activation)`` stored as
    ``self.net`` (the published code calls it ``self._f``; same layout), so state dicts are
    interchangeable with :class:`bounds.ConcatCritic`.

    Orientation: ``x_tiled = stack([x] * B, dim=0)`` gives ``x_tiled[i, j] = x_j`` and
    ``y_tiled = stack([y] * B, dim=1)`` gives ``y_tiled[i, j] = y_i``, so before the final ``.t()``
    the reshaped matrix holds ``f(x_j, y_i)`` at ``[i, j]``; the ``.t()`` turns it into
    ``scores[i, j] = f(x_i, y_j)``, the same convention as :mod:`bounds` (positives on the diagonal,
    rows indexed by x). Like the original, it needs ``x`` and ``y`` to have the same batch size.
    """

    def __init__(
        self, x_dim: int, y_dim: int, hidden_dim: int = 512, layers: int = 2, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.x_dim, self.y_dim = int(x_dim), int(y_dim)
        self.net = bounds.mlp(x_dim + y_dim, hidden_dim, 1, layers, activation)

    @classmethod
    def from_concat(cls, critic: bounds.ConcatCritic) -> PublishedConcatCritic:
        """A tiled twin of ``critic``: a copy of its MLP (same weights, device and dtype)."""
        out = cls(critic.x_dim, critic.y_dim, hidden_dim=1, layers=0)
        out.net = copy.deepcopy(critic.net)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Scores [B, B] with scores[i, j] = MLP([x_i; y_j]), computed the published (tiled) way."""
        batch_size = x.size(0)
        # Tile all possible combinations of x and y
        x_tiled = torch.stack([x] * batch_size, dim=0)
        y_tiled = torch.stack([y] * batch_size, dim=1)
        # xy is [batch_size * batch_size, x_dim + y_dim]
        xy_pairs = torch.reshape(torch.cat((x_tiled, y_tiled), dim=2), [batch_size * batch_size, -1])
        # Compute scores for each x_i, y_j pair.
        scores = self.net(xy_pairs)
        return torch.reshape(scores, [batch_size, batch_size]).t()


# --------------------------------------------------------------------------------------------
# The published FactorCL-SSL model and training step (synthetic_model.py / Synthetic/dataset.py)
# --------------------------------------------------------------------------------------------


def published_mlp(dim: int, hidden_dim: int, output_dim: int, layers: int, activation: str = "relu") -> nn.Sequential:
    """The published ``mlp`` (PyTorch's default initialisation)."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    seq: list[nn.Module] = [nn.Linear(dim, hidden_dim), act()]
    for _ in range(layers):
        seq += [nn.Linear(hidden_dim, hidden_dim), act()]
    seq.append(nn.Linear(hidden_dim, output_dim))
    return nn.Sequential(*seq)


class PublishedInfoNCECritic(nn.Module):
    """The published ``InfoNCECritic``: returns -I_NCE from tiled pairs (plus the positives scored again)."""

    def __init__(self, a_dim: int, b_dim: int, hidden_dim: int, layers: int, activation: str = "relu") -> None:
        super().__init__()
        self._f = published_mlp(a_dim + b_dim, hidden_dim, 1, layers, activation)

    def forward(self, x_samples: Tensor, y_samples: Tensor) -> Tensor:
        sample_size = y_samples.shape[0]
        x_tile = x_samples.unsqueeze(0).repeat((sample_size, 1, 1))
        y_tile = y_samples.unsqueeze(1).repeat((1, sample_size, 1))
        t0 = self._f(torch.cat([x_samples, y_samples], dim=-1))
        t1 = self._f(torch.cat([x_tile, y_tile], dim=-1))
        lower_bound = t0.mean() - (t1.logsumexp(dim=1).mean() - math.log(sample_size))
        return -lower_bound


class PublishedCLUBInfoNCECritic(nn.Module):
    """The published ``CLUBInfoNCECritic``: all-pairs NCE-CLUB in ``forward``, -I_NCE in ``learning_loss``."""

    def __init__(self, a_dim: int, b_dim: int, hidden_dim: int, layers: int, activation: str = "relu") -> None:
        super().__init__()
        self._f = published_mlp(a_dim + b_dim, hidden_dim, 1, layers, activation)

    def _scores(self, x_samples: Tensor, y_samples: Tensor) -> tuple[Tensor, Tensor]:
        sample_size = y_samples.shape[0]
        x_tile = x_samples.unsqueeze(0).repeat((sample_size, 1, 1))
        y_tile = y_samples.unsqueeze(1).repeat((1, sample_size, 1))
        t0 = self._f(torch.cat([y_samples, x_samples], dim=-1))
        t1 = self._f(torch.cat([y_tile, x_tile], dim=-1))
        return t0, t1

    def forward(self, x_samples: Tensor, y_samples: Tensor) -> Tensor:
        t0, t1 = self._scores(x_samples, y_samples)
        return t0.mean() - t1.mean()

    def learning_loss(self, x_samples: Tensor, y_samples: Tensor) -> Tensor:
        t0, t1 = self._scores(x_samples, y_samples)
        lower_bound = t0.mean() - (t1.logsumexp(dim=1).mean() - math.log(y_samples.shape[0]))
        return -lower_bound


def _published_swap(x: Tensor) -> Tensor:
    mid = x.shape[0] // 2
    return torch.cat([x[mid:], x[:mid]])


def _published_noise(x: Tensor) -> Tensor:
    return x + torch.randn(x.shape).to(x.device) * 0.01  # the published code adds .cuda() here


def _published_random_drop(x: Tensor) -> Tensor:
    drop_num = x.shape[0] // 10
    drop_idxs = np.random.choice(x.shape[0], drop_num, replace=False)
    x_aug = torch.clone(x)
    x_aug[drop_idxs] = 0.0
    return x_aug


def published_augment_single(x_batch: Tensor) -> Tensor:
    """The published ``augment_single``: one of swap / noise / drop / identity per sample, in a Python loop."""
    v2 = torch.clone(x_batch)
    transforms = [_published_swap, _published_noise, _published_random_drop, lambda x: x]
    for i in range(x_batch.shape[0]):
        t = transforms[np.random.choice(4, 1, replace=False)[0]]
        v2[i] = t(v2[i])
    return v2


class PublishedFactorCLSSL(nn.Module):
    """The published ``FactorCLSSL``: a head set per term, six tiled critics, the self-concatenation bug kept."""

    def __init__(
        self,
        x1_dim: int,
        x2_dim: int,
        hidden_dim: int,
        embed_dim: int,
        layers: int = 2,
        critic_hidden_dim: int = 512,
        critic_layers: int = 1,
        lr: float = 1e-4,
    ) -> None:
        super().__init__()
        e, h, cl = embed_dim, critic_hidden_dim, critic_layers
        self.lr = lr
        self.backbones = nn.ModuleList(
            [published_mlp(x1_dim, hidden_dim, e, layers), published_mlp(x2_dim, hidden_dim, e, layers)]
        )
        head = lambda: published_mlp(e, e, e, 1)  # noqa: E731
        self.linears_infonce_x1x2 = nn.ModuleList([head(), head()])
        self.linears_club_x1x2_cond = nn.ModuleList([head(), head()])
        self.linears_infonce_x1y = head()
        self.linears_infonce_x2y = head()
        self.linears_infonce_x1x2_cond = nn.ModuleList([head(), head()])
        self.linears_club_x1x2 = nn.ModuleList([head(), head()])
        self.infonce_x1x2 = PublishedInfoNCECritic(e, e, h, cl)
        self.club_x1x2_cond = PublishedCLUBInfoNCECritic(2 * e, 2 * e, h, cl)
        self.infonce_x1y = PublishedInfoNCECritic(e, e, h, cl)
        self.infonce_x2y = PublishedInfoNCECritic(e, e, h, cl)
        self.infonce_x1x2_cond = PublishedInfoNCECritic(2 * e, 2 * e, h, cl)
        self.club_x1x2 = PublishedCLUBInfoNCECritic(e, e, h, cl)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        x1_aug, x2_aug = published_augment_single(x1), published_augment_single(x2)
        x1_embed, x2_embed = self.backbones[0](x1), self.backbones[1](x2)
        x1_aug_embed, x2_aug_embed = self.backbones[0](x1_aug), self.backbones[1](x2_aug)
        uncond = [
            self.infonce_x1x2(self.linears_infonce_x1x2[0](x1_embed), self.linears_infonce_x1x2[1](x2_embed)),
            self.club_x1x2(self.linears_club_x1x2[0](x1_embed), self.linears_club_x1x2[1](x2_embed)),
            self.infonce_x1y(self.linears_infonce_x1y(x1_embed), self.linears_infonce_x1y(x1_aug_embed)),
            self.infonce_x2y(self.linears_infonce_x2y(x2_embed), self.linears_infonce_x2y(x2_aug_embed)),
        ]
        c = self.linears_infonce_x1x2_cond
        k = self.linears_club_x1x2_cond
        cond = [
            self.infonce_x1x2_cond(
                torch.cat([c[0](x1_embed), c[0](x1_aug_embed)], dim=1),
                torch.cat([c[1](x2_embed), c[1](x2_aug_embed)], dim=1),
            ),
            # The published bug, kept: x1's embedding concatenated with itself, not with its view.
            self.club_x1x2_cond(
                torch.cat([k[0](x1_embed), k[0](x1_embed)], dim=1), torch.cat([k[1](x2_embed), k[1](x2_embed)], dim=1)
            ),
        ]
        return sum(uncond) + sum(cond)

    def learning_loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        x1_embed, x2_embed = self.backbones[0](x1), self.backbones[1](x2)  # the encoders run again
        k = self.linears_club_x1x2_cond
        return self.club_x1x2.learning_loss(
            self.linears_club_x1x2[0](x1_embed), self.linears_club_x1x2[1](x2_embed)
        ) + self.club_x1x2_cond.learning_loss(
            torch.cat([k[0](x1_embed), k[0](x1_embed)], dim=1), torch.cat([k[1](x2_embed), k[1](x2_embed)], dim=1)
        )

    def get_optims(self) -> tuple[list[torch.optim.Optimizer], list[torch.optim.Optimizer]]:
        """The published 11 + 2 separate Adam optimizers."""
        non_club = [
            self.backbones,
            self.infonce_x1x2,
            self.infonce_x1y,
            self.infonce_x2y,
            self.infonce_x1x2_cond,
            self.linears_infonce_x1x2,
            self.linears_infonce_x1y,
            self.linears_infonce_x2y,
            self.linears_infonce_x1x2_cond,
            self.linears_club_x1x2_cond,
            self.linears_club_x1x2,
        ]
        club = [self.club_x1x2_cond, self.club_x1x2]
        return (
            [torch.optim.Adam(m.parameters(), lr=self.lr) for m in non_club],
            [torch.optim.Adam(m.parameters(), lr=self.lr) for m in club],
        )


def published_train_step(
    model: PublishedFactorCLSSL, optims: tuple[list, list], x1: Tensor, x2: Tensor, num_club_iter: int = 1
) -> float:
    """One published training step: main loss over 11 optimizers, then CLUB critic steps (encoders re-run)."""
    non_club, club = optims
    loss = model(x1, x2)
    for opt in non_club:
        opt.zero_grad()
    loss.backward()
    for opt in non_club:
        opt.step()
    for _ in range(num_club_iter):
        learning_loss = model.learning_loss(x1, x2)  # the published code samples another batch here
        for opt in club:
            opt.zero_grad()
        learning_loss.backward()
        for opt in club:
            opt.step()
    return float(loss.detach())
