"""Augmentations for feature vectors ``[B, D]`` and feature sequences ``[B, T, D]``.

Sequences may be padded. Pass either ``lengths=`` (``[B]`` integers; the first ``lengths[i]``
steps of sample ``i`` are valid, i.e. end padding) or ``mask=`` (``[B, T]`` bool, True = valid
step; any layout, e.g. the front padding of MultiBench sequences). Padded steps are never written:
they come out bit-identical to the input, and no valid step receives values from a padded one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import (
    Augmentation,
    check_floating,
    check_int,
    check_number,
    check_probability,
    check_rank,
    check_tensor,
    floor_fraction,
    rand,
    randn,
    seeded_global_rng,
    shape_str,
)

__all__ = ["GaussianNoise", "FeatureDropout", "TimeMask", "TimeShuffle", "Mixup", "valid_steps"]

_FEATURES = "[B, D] or [B, T, D]"
_SEQUENCES = "[B, T, D]"


def valid_steps(
    x: Tensor,
    lengths: Tensor | None = None,
    mask: Tensor | None = None,
    name: str = "x",
) -> Tensor | None:
    """The ``[B, T]`` bool mask of valid steps of ``x`` from ``lengths`` or ``mask`` (None = all valid)."""
    if lengths is None and mask is None:
        return None
    if lengths is not None and mask is not None:
        raise ValueError("pass either lengths or mask, not both")
    if x.dim() != 3:
        which = "lengths" if lengths is not None else "mask"
        raise ValueError(f"{which} is only valid for sequences {_SEQUENCES}, but {name} has shape {shape_str(x.shape)}")
    b, t = x.shape[:2]
    if lengths is not None:
        lengths = check_tensor(lengths, "lengths")
        if lengths.shape != (b,):
            raise ValueError(f"lengths must be [B] = ({b},), got shape {shape_str(lengths.shape)}")
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
        lengths = lengths.to(x.device)
        if bool(((lengths < 0) | (lengths > t)).any()):
            raise ValueError(f"lengths must be in [0, T={t}], got min {int(lengths.min())} max {int(lengths.max())}")
        return torch.arange(t, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    mask = check_tensor(mask, "mask")
    if mask.shape != (b, t):
        raise ValueError(f"mask must be [B, T] = ({b}, {t}), got shape {shape_str(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = valid step), got dtype {mask.dtype}")
    return mask.to(x.device)


def fill_steps(x: Tensor, drop: Tensor, value: float) -> Tensor:
    """A copy of ``x [B, T, D]`` with the time steps where ``drop [B, T]`` is True set to ``value``."""
    if x.device.type == "cpu":
        # A broadcast masked_fill/where over [B, T, 1] is several times slower on CPU than filling
        # whole rows of the flattened [B*T, D] copy (one contiguous memset per dropped step).
        out = x.clone(memory_format=torch.contiguous_format)
        rows = drop.reshape(-1).nonzero().squeeze(1)
        return out.view(-1, x.shape[-1]).index_fill_(0, rows, value).view(x.shape)
    return x.masked_fill(drop.unsqueeze(-1), value)


def fill_where(x: Tensor, drop: Tensor, value: float) -> Tensor:
    """A copy of ``x`` with entries where ``drop`` (broadcastable to ``x``) is True set to ``value``."""
    # torch.where with a 0-dim fill is faster than a broadcast masked_fill on CPU, same on GPU.
    return torch.where(drop, torch.tensor(value, dtype=x.dtype, device=x.device), x)


class _FeatureAugmentation(Augmentation):
    """Shared input checks: rank, optional float requirement, and the padding mask."""

    ranks: tuple[int, ...] = (2, 3)
    uses_cond = False
    needs_float: bool = False

    def _check_input(self, x: Any) -> None:
        super()._check_input(x)
        layout = _FEATURES if self.ranks == (2, 3) else _SEQUENCES
        check_rank(x, self.input_name, self.ranks, layout)
        if self.needs_float:
            check_floating(x, self.input_name)

    def forward(
        self,
        x: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        valid = valid_steps(x, lengths, mask, self.input_name)
        return self._augment(x, valid, generator)

    def _augment(self, x: Tensor, valid: Tensor | None, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError


class GaussianNoise(_FeatureAugmentation):
    """Adds i.i.d. Gaussian noise with standard deviation ``std`` to every valid entry."""

    needs_float = True

    def __init__(self, std: float = 0.1) -> None:
        self.std = check_number(std, "std", low=0.0)

    def _augment(self, x: Tensor, valid: Tensor | None, generator: torch.Generator | None) -> Tensor:
        noise = randn(x.shape, generator, x.device, x.dtype)
        out = noise.mul_(self.std).add_(x)  # reuse the noise buffer: one allocation
        if valid is not None:
            out = torch.where(valid.unsqueeze(-1), out, x)
        return out

    def _repr_params(self) -> dict[str, Any]:
        return {"std": self.std}


class FeatureDropout(_FeatureAugmentation):
    """Sets each feature dimension to ``value`` with probability ``p``.

    For sequences, ``shared_over_time=True`` drops the same dimensions at every step of a sample
    (a feature channel disappears); ``False`` drops entries independently per step. No rescaling
    by ``1 / (1 - p)``: the view keeps the input's scale.
    """

    needs_float = True

    def __init__(self, p: float = 0.1, shared_over_time: bool = True, value: float = 0.0) -> None:
        self.p = check_probability(p, "p")
        self.shared_over_time = bool(shared_over_time)
        self.value = check_number(value, "value")

    def _augment(self, x: Tensor, valid: Tensor | None, generator: torch.Generator | None) -> Tensor:
        shape = list(x.shape)
        if x.dim() == 3 and self.shared_over_time:
            shape[1] = 1
        drop = rand(shape, generator, x.device) < self.p
        if valid is not None:
            drop = drop & valid.unsqueeze(-1)
        return fill_where(x, drop, self.value)

    def _repr_params(self) -> dict[str, Any]:
        return {"p": self.p, "shared_over_time": self.shared_over_time, "value": self.value}


class TimeMask(_FeatureAugmentation):
    """Sets whole time steps of a sequence ``[B, T, D]`` to ``value``.

    One of (neither given means ``p=0.2``):

    * ``p``: masks ``floor(p * n_valid)`` valid steps per sample, chosen uniformly without
      replacement (the published FactorCL ``drop`` augmentation is ``p=0.2``);
    * ``max_width``: masks one contiguous run of valid steps per sample, of width uniform in
      ``[0, max_width]`` (clipped to the number of valid steps) at a uniform position.
    """

    ranks = (3,)

    def __init__(self, p: float | None = None, max_width: int | None = None, value: float = 0.0) -> None:
        if p is not None and max_width is not None:
            raise ValueError("pass either p or max_width, not both")
        self.p: float | None = None
        self.max_width: int | None = None
        if max_width is not None:
            self.max_width = check_int(max_width, "max_width", low=0)
        else:
            self.p = check_probability(0.2 if p is None else p, "p")
        self.value = check_number(value, "value")

    def _augment(self, x: Tensor, valid: Tensor | None, generator: torch.Generator | None) -> Tensor:
        b, t = x.shape[:2]
        if valid is None:
            valid = torch.ones(b, t, dtype=torch.bool, device=x.device)
        n_valid = valid.sum(1)
        if self.p is not None:
            # Random keys, padded steps pushed last; a step is masked when its rank among the
            # sample's valid steps is below the per-sample count (exact count, no per-sample loop).
            keys = rand((b, t), generator, x.device).masked_fill_(~valid, 2.0)
            ranks = keys.argsort(dim=1).argsort(dim=1)
            count = floor_fraction(n_valid, self.p)  # exact: floor(100 * 0.29) is 29, not 28
            drop = ranks < count.unsqueeze(1)
        else:
            width = torch.floor(rand((b,), generator, x.device, torch.float64) * (self.max_width + 1)).long()
            width = torch.minimum(width, n_valid)
            start = torch.floor(rand((b,), generator, x.device, torch.float64) * (n_valid - width + 1)).long()
            vrank = valid.long().cumsum(1) - 1  # position among the valid steps
            drop = valid & (vrank >= start.unsqueeze(1)) & (vrank < (start + width).unsqueeze(1))
        return fill_steps(x, drop, self.value)

    def _repr_params(self) -> dict[str, Any]:
        if self.p is not None:
            return {"p": self.p, "value": self.value}
        return {"max_width": self.max_width, "value": self.value}


class TimeShuffle(_FeatureAugmentation):
    """Permutes the valid time steps of each sequence ``[B, T, D]`` (an independent permutation per sample).

    ``window=None`` shuffles the whole sequence (the published FactorCL ``permute``); an integer
    ``window`` only shuffles within consecutive blocks of ``window`` valid steps, keeping the
    coarse order. Padded steps stay where they are.
    """

    ranks = (3,)

    def __init__(self, window: int | None = None) -> None:
        self.window = None if window is None else check_int(window, "window", low=1)

    def _augment(self, x: Tensor, valid: Tensor | None, generator: torch.Generator | None) -> Tensor:
        b, t, d = x.shape
        keys = rand((b, t), generator, x.device)
        if self.window is not None:
            # Sort key = block index + uniform jitter: steps only move within their block.
            vrank = (valid.long().cumsum(1) - 1) if valid is not None else torch.arange(t, device=x.device).expand(b, t)
            keys = keys + torch.div(vrank, self.window, rounding_mode="floor").to(keys.dtype)
        if valid is None:
            src = keys.argsort(dim=1)
        else:
            # order[j]: the j-th valid step in a random order; slots[j]: the j-th valid step in
            # time order. Padded steps sort last in both (stable sort keeps them in time order), so
            # sending order[j] to slots[j] permutes valid steps among themselves and fixes padding.
            keys = keys.masked_fill(~valid, float(t + 2))  # above any valid key (< T + 1)
            order = torch.sort(keys, dim=1, stable=True).indices
            pos = torch.arange(t, device=x.device, dtype=keys.dtype).expand(b, t)
            slots = torch.sort(pos.masked_fill(~valid, float(t)), dim=1, stable=True).indices
            src = torch.empty_like(order).scatter_(1, slots, order)
        # Move whole steps: row gather on the flattened [B*T, D] view (much faster than an
        # element-wise gather with a [B, T, D] index).
        rows = (src + torch.arange(b, device=x.device).unsqueeze(1) * t).reshape(-1)
        return x.reshape(b * t, d).index_select(0, rows).view(b, t, d)

    def _repr_params(self) -> dict[str, Any]:
        return {"window": self.window}


class Mixup(_FeatureAugmentation):
    """Mixes each sample with a random partner from the same batch: ``lam * x + (1 - lam) * x[partner]``.

    ``lam ~ Beta(alpha, alpha)`` per sample; with ``dominant=True`` it is replaced by
    ``max(lam, 1 - lam)`` so the sample keeps the larger weight and the view stays a view of it.
    For padded sequences only steps valid in both the sample and its partner are mixed.
    A batch-level augmentation: it cannot be the base of a
    :class:`~augment.unique.UniqueAugment` (whose batch holds K copies of each sample).
    """

    needs_float = True
    mixes_batch = True

    def __init__(self, alpha: float = 1.0, dominant: bool = True) -> None:
        self.alpha = check_number(alpha, "alpha", low=0.0, low_inclusive=False)
        self.dominant = bool(dominant)

    def _augment(self, x: Tensor, valid: Tensor | None, generator: torch.Generator | None) -> Tensor:
        b = x.shape[0]
        partner = rand((b,), generator, "cpu").argsort()
        # torch.distributions takes no generator: sample it under a seed drawn from the generator.
        with seeded_global_rng(generator, "cpu"):
            lam = torch.distributions.Beta(
                torch.tensor(self.alpha, dtype=torch.float64), torch.tensor(self.alpha, dtype=torch.float64)
            ).sample((b,))
        if self.dominant:
            lam = torch.maximum(lam, 1.0 - lam)
        partner = partner.to(x.device)
        lam = lam.to(device=x.device, dtype=x.dtype).view(b, *([1] * (x.dim() - 1)))
        other = x.index_select(0, partner)
        out = torch.lerp(other, x, lam)  # lam * x + (1 - lam) * other
        if valid is not None:
            both = valid & valid.index_select(0, partner)
            out = torch.where(both.unsqueeze(-1), out, x)
        return out

    def _repr_params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "dominant": self.dominant}
