"""torch.distributed helpers that also work without an initialised process group."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """Whether a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this is rank 0 (the one that logs and writes checkpoints)."""
    return get_rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient and returns this rank's slice."""

    @staticmethod
    def forward(ctx, local: Tensor) -> Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
        ctx.batch = local.shape[0]
        ctx.rank = dist.get_rank()
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(local: Tensor) -> tuple[Tensor, int]:
    """(global batch, offset of this rank's rows in it); gradients flow back to every rank's rows.

    Every rank must hold the same batch size. Without a process group: (local, 0).
    """
    if not is_distributed():
        return local, 0
    return _GatherWithGrad.apply(local), get_rank() * local.shape[0]


@torch.no_grad()
def gather_no_grad(local: Tensor) -> Tensor:
    """The concatenation of every rank's tensor (no gradient); the tensor itself without a process group."""
    if not is_distributed():
        return local
    parts = [torch.empty_like(local) for _ in range(get_world_size())]
    dist.all_gather(parts, local.contiguous())
    return torch.cat(parts, dim=0)
