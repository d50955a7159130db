"""Faithful re-implementations of the published FactorCL reference code, kept only as baselines.

Everything here is written the way the published code wrote it, inefficiencies included, so that
benchmarks can measure what :mod:`bounds` improves on. Nothing in the library imports this module;
do not use it for anything but comparisons.
"""

from __future__ import annotations

import copy

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
    def from_concat(cls, critic: bounds.ConcatCritic) -> "PublishedConcatCritic":
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
