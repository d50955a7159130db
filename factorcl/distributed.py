"""torch.distributed helpers that also work without an initialised process group.

Every helper is a no-op (or the identity) in a single process, so the same code runs on one
device, under ``torchrun`` and under SLURM's ``srun`` (one task per GPU). The gradient conventions
(see ``docs/distributed.md``):

- each rank's loss is the mean over its own rows, scored against candidates gathered from every
  rank with :func:`gather_with_grad`;
- the backward of that gather sums every rank's gradient before taking this rank's slice, so a
  rank's input gradient is ``world_size`` times the gradient of the global-batch loss;
- averaging parameter gradients over ranks (what DistributedDataParallel does, and
  :func:`average_gradients`) then gives exactly the gradient of one process on the
  concatenated batch.

Data: :func:`distributed_loader` shards a DataLoader over the ranks (the Trainer calls it).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler

# ------------------------------------------------------------------------------ process group


def is_distributed() -> bool:
    """Whether a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_local_rank() -> int:
    """This process's index on its node (LOCAL_RANK, which :func:`init_distributed` sets under SLURM; else 0)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Whether this is rank 0 (the one that logs and writes checkpoints)."""
    return get_rank() == 0


def launched_distributed() -> bool:
    """Whether the environment describes a job of more than one process (torchrun's, or an srun step's).

    torchrun's WORLD_SIZE decides when it is set; otherwise a SLURM step of more than one task
    (see :func:`slurm_environment`). Malformed values count as not distributed.
    """
    try:
        if "WORLD_SIZE" in os.environ:
            return int(os.environ["WORLD_SIZE"]) > 1
        return _slurm_tasks(os.environ) > 1
    except ValueError:
        return False


# --------------------------------------------------------------------------------- SLURM

_HOST_GROUP = re.compile(r"(?:[^\[\],\s]+|\[[^\[\]]*\])+")  # name parts and [ranges], no top-level comma
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_PORT_BASE, _PORT_SPAN = 10000, 20000  # derived ports stay below Linux's ephemeral range (32768+)


def _split_hostlist(nodelist: str) -> list[str]:
    """The comma-separated groups of a hostlist (commas inside brackets separate ranges, not groups)."""
    groups, depth, start = [], 0, 0
    for i, char in enumerate(nodelist):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            groups.append(nodelist[start:i])
            start = i + 1
        if depth not in (0, 1):
            raise ValueError(f"invalid SLURM hostlist {nodelist!r}: unbalanced or nested brackets")
    if depth:
        raise ValueError(f"invalid SLURM hostlist {nodelist!r}: unclosed '['")
    return groups + [nodelist[start:]]


def _first_in_brackets(ranges: str, nodelist: str) -> str:
    """The first index of a bracket's ``01-04,07`` after checking every range, zero padding kept."""
    matches = [_RANGE.fullmatch(item) for item in ranges.split(",")]
    for match in matches:
        if match is None or (match.group(2) is not None and int(match.group(1)) > int(match.group(2))):
            raise ValueError(
                f"invalid SLURM hostlist {nodelist!r}: [{ranges}] must hold indices or ascending ranges "
                "such as [01-04,07]"
            )
    return matches[0].group(1)  # type: ignore[union-attr]  # checked above


def _first_of_group(group: str, nodelist: str) -> str:
    """The first host of one group such as ``rack[1-2]-node[01-02]``."""
    if _HOST_GROUP.fullmatch(group) is None:
        raise ValueError(
            f"invalid SLURM hostlist {nodelist!r}: group {group!r} is not a host name with optional "
            "[ranges] (e.g. node[01-04])"
        )
    return _BRACKET.sub(lambda m: _first_in_brackets(m.group(1), nodelist), group)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM hostlist, e.g. ``node[01-04,07],gpu5`` -> ``node01``.

    Understands SLURM's compressed syntax: comma-separated groups, each a name with any number of
    bracketed index lists (``rack[1-2]-node[01-02]`` -> ``rack1-node01``); the zero padding of the
    first index is kept (``node[008-010]`` -> ``node008``). Raises ValueError, naming the value, on
    anything else (empty groups, unbalanced or nested brackets, descending or non-numeric ranges).
    """
    nodelist = nodelist.strip()
    if not nodelist:
        raise ValueError("invalid SLURM hostlist '': it is empty")
    # Every group is checked, not only the first, so that a truncated or mangled list fails here.
    return [_first_of_group(group, nodelist) for group in _split_hostlist(nodelist)][0]


def _slurm_int(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def _slurm_tasks(env: Mapping[str, str]) -> int:
    """The number of tasks of the srun step this process is one of; 0 when it is not one, or torchrun's vars are set."""
    if "WORLD_SIZE" in env or "RANK" in env:
        return 0  # torchrun (or the user) describes the group, also when torchrun runs inside a SLURM job
    # SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: srun sets it for the tasks it starts, while SLURM_NTASKS
    # describes the allocation and is also set, with SLURM_PROCID=0, in the sbatch script itself, where
    # a plain `python ...` is one process that would wait forever for the others.
    if "SLURM_PROCID" not in env or "SLURM_STEP_NUM_TASKS" not in env:
        return 0
    return _slurm_int(env, "SLURM_STEP_NUM_TASKS")


def slurm_environment(env: Mapping[str, str]) -> dict[str, str] | None:
    """torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) for an srun task.

    Returns None unless ``env`` is that of one task of an ``srun`` step of more than one task
    (SLURM_PROCID and SLURM_STEP_NUM_TASKS set, the latter > 1), and None whenever WORLD_SIZE or
    RANK is set: torchrun's variables win, including torchrun started by srun inside a job. The
    mapping: SLURM_PROCID -> RANK, SLURM_STEP_NUM_TASKS -> WORLD_SIZE (not SLURM_NTASKS, which the
    sbatch script itself has too), SLURM_LOCALID -> LOCAL_RANK;
    MASTER_ADDR and MASTER_PORT are kept when set, else MASTER_ADDR is the first host of
    SLURM_STEP_NODELIST (or SLURM_NODELIST, SLURM_JOB_NODELIST), where srun starts task 0, and
    MASTER_PORT is ``10000 + SLURM_JOB_ID % 20000``, the same for every task of the job. A variable
    that cannot be derived is left out (init_distributed then names it). Pure: reads only ``env``.

    >>> slurm_environment({"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
    ...                    "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"})
    {'RANK': '5', 'WORLD_SIZE': '8', 'LOCAL_RANK': '1', 'MASTER_ADDR': 'gpu07', 'MASTER_PORT': '13456'}
    """
    world = _slurm_tasks(env)
    if world <= 1:
        return None
    out = {"RANK": str(_slurm_int(env, "SLURM_PROCID")), "WORLD_SIZE": str(world)}
    if "SLURM_LOCALID" in env:
        out["LOCAL_RANK"] = str(_slurm_int(env, "SLURM_LOCALID"))
    nodelist = next((env[n] for n in ("SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST") if n in env), None)
    if env.get("MASTER_ADDR"):
        out["MASTER_ADDR"] = env["MASTER_ADDR"]
    elif nodelist is not None:
        out["MASTER_ADDR"] = first_host(nodelist)
    job = next((n for n in ("SLURM_JOB_ID", "SLURM_JOBID") if n in env), None)
    if env.get("MASTER_PORT"):
        out["MASTER_PORT"] = env["MASTER_PORT"]
    elif job is not None:
        out["MASTER_PORT"] = str(_PORT_BASE + _slurm_int(env, job) % _PORT_SPAN)
    return out


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} is set but {name} is not: launch with torchrun "
            "(which sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT) or srun"
        )
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"environment variable {name} must be an integer, got {value!r}") from None


def init_distributed(
    backend: str | None = None, init_method: str | None = None, timeout: datetime.timedelta | None = None
) -> bool:
    """Join the process group that torchrun or srun describes in the environment; returns :func:`is_distributed`.

    Reads RANK, WORLD_SIZE and LOCAL_RANK (and, with the default ``init_method="env://"``,
    MASTER_ADDR and MASTER_PORT). Without torchrun's variables, in one task of an ``srun`` step of
    several tasks, it first sets those of them that are not set in ``os.environ`` from SLURM's
    (:func:`slurm_environment`), so that :func:`get_local_rank`, subprocesses and ``env://`` see
    them too. ``backend`` defaults to "nccl" when CUDA is available and "gloo" otherwise; with CUDA
    the current device is set to LOCAL_RANK first, so that ``device="cuda"`` (and ``"auto"``) means
    this rank's GPU. Idempotent: a second call, or a call
    when a process group already exists, changes nothing. Without those variables (a plain
    ``python`` launch, a single-task ``srun`` or ``salloc`` shell, the sbatch script itself) or with
    WORLD_SIZE=1 there is nothing to join and it returns False.
    """
    if dist.is_available() and dist.is_initialized():
        return is_distributed()
    if not launched_distributed():
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
    for name, value in (slurm_environment(os.environ) or {}).items():
        os.environ.setdefault(name, value)
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not 0 <= rank < world:
        raise RuntimeError(f"RANK={rank} is outside [0, WORLD_SIZE={world})")
    init_method = init_method or "env://"
    if init_method == "env://":
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise RuntimeError(
                f"{' and '.join(missing)} not set: launch with torchrun, or set MASTER_ADDR and "
                "MASTER_PORT (or pass init_method); under srun they come from SLURM_STEP_NODELIST and SLURM_JOB_ID"
            )
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    kwargs: dict[str, Any] = {}
    if cuda:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but this node has {count} visible CUDA device(s): start at "
                f"most {count} processes per node (torchrun --nproc_per_node={count}, or srun with "
                f"--ntasks-per-node={count} and every task seeing all of the node's GPUs: --gpus-per-node, "
                "not --gpus-per-task)"
            )
        torch.cuda.set_device(local_rank)
        if backend == "nccl":
            kwargs["device_id"] = torch.device("cuda", local_rank)  # binds the group to this rank's GPU
    elif backend == "nccl":
        raise RuntimeError("backend 'nccl' needs CUDA devices; use backend='gloo' on CPUs")
    if timeout is not None:
        kwargs["timeout"] = timeout
    dist.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=world, **kwargs)
    return is_distributed()


@contextlib.contextmanager
def distributed_session(timeout: datetime.timedelta | None = None) -> Iterator[bool]:
    """Join torchrun's (or srun's) process group for the length of a command and leave it afterwards.

    Yields :func:`is_distributed`. Outside torchrun and srun (or when a group already exists, which is then
    left alone) it does nothing else.
    """
    joined = not (dist.is_available() and dist.is_initialized()) and init_distributed(timeout=timeout)
    try:
        yield is_distributed()
    finally:
        if joined:
            cleanup()


def cleanup() -> None:
    """Leave the process group (a no-op without one): call it at the end of a distributed script."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (a no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def _collective_device(reference: Tensor | torch.device | None = None) -> torch.device:
    """Where small bookkeeping tensors must live for the backend (NCCL: this rank's GPU)."""
    if isinstance(reference, Tensor):
        return reference.device
    if isinstance(reference, torch.device):
        return reference
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------------- gathering


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
        # Every rank's loss depends on this rank's rows: their gradient is the sum over ranks.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(local: Tensor) -> tuple[Tensor, int]:
    """(global batch, offset of this rank's rows in it); gradients flow back to every rank's rows.

    Every rank must hold the same batch size (see :func:`check_same_size`). Without a process
    group: (local, 0).
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


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_int(value: int, device: torch.device | None = None) -> int:
    """Rank 0's ``value`` on every rank (the value itself without a process group)."""
    if not is_distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_collective_device(device))
    dist.broadcast(t, src=0)
    return int(t.item())


# ------------------------------------------------------------------------------- reductions


def sum_over_ranks(t: Tensor) -> Tensor:
    """The sum of ``t`` over ranks, without gradient (``t`` itself without a process group)."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def mean_over_ranks(t: Tensor) -> Tensor:
    """The mean of ``t`` over ranks, without gradient (``t`` itself without a process group)."""
    if not is_distributed():
        return t
    return sum_over_ranks(t) / get_world_size()


def any_rank(flag: bool, device: torch.device | None = None) -> bool:
    """Whether ``flag`` is true on any rank, so that every rank takes the same branch (no hangs)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def global_mean_normalizer(count: Tensor) -> Tensor:
    """For estimators that average over a data-dependent subset of rows (grouped NCE-CLUB, SupCon).

    Given this rank's number of contributing rows, returns the number its sum must be divided by
    so that the mean over ranks of the rank values is the mean over every contributing row of the
    global batch: (sum of the counts over ranks) / world size. Pass it as ``normalizer``.
    """
    return sum_over_ranks(count.to(torch.float32)) / get_world_size()


def check_same_size(size: int, what: str = "batch size", device: torch.device | Tensor | None = None) -> None:
    """Raise a clear error on every rank when ranks disagree on ``size`` (a no-op without a process group).

    Gathering candidates across ranks needs the same batch size on every rank; a mismatch would
    otherwise fail deep inside all_gather (or hang on NCCL).
    """
    if not is_distributed():
        return
    t = torch.tensor([int(size)], dtype=torch.int64, device=_collective_device(device))
    parts = [torch.empty_like(t) for _ in range(get_world_size())]
    dist.all_gather(parts, t)
    sizes = [int(p.item()) for p in parts]
    if len(set(sizes)) > 1:
        listing = ", ".join(f"rank {r} has {s}" for r, s in enumerate(sizes))
        raise ValueError(
            f"ranks disagree on the {what} ({listing}); every rank must use the same {what} "
            "(give each rank a DataLoader with the same batch_size over a DistributedSampler, "
            "with drop_last=True when the last batch could be smaller)"
        )


# ------------------------------------------------------------------------------- gradients


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """All-reduce (mean) the ``.grad`` of ``params`` over ranks, one collective per device and dtype.

    For parameters trained outside DistributedDataParallel (the NCE-CLUB critics, trained on
    cached features). Every rank must hold gradients for the same parameters (the same graph),
    which the same code on every rank guarantees. A no-op without a process group.
    """
    if not is_distributed():
        return
    buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        if p.grad is not None:
            buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    world = get_world_size()
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        start = 0
        for g in grads:
            g.copy_(flat[start : start + g.numel()].view_as(g))
            start += g.numel()


def broadcast_parameters(params: Iterable[Tensor], src: int = 0) -> None:
    """Copy rank ``src``'s values of ``params`` to every rank (a no-op without a process group)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=src)


class _LossForward(nn.Module):
    """Makes ``model.loss(batch)`` the ``forward`` that DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> Any:
        return self.model.loss(batch)


def wrap_loss_ddp(
    model: nn.Module,
    exclude: Sequence[nn.Parameter] = (),
    device: torch.device | None = None,
    find_unused_parameters: bool = False,
) -> nn.Module | None:
    """DistributedDataParallel over ``model.loss``: calling the result with a batch returns ``model.loss(batch)``
    and its backward averages the gradients of the other trainable parameters over ranks.

    ``exclude`` are parameters DDP must leave alone: those trained by a separate loss (FactorCL's
    NCE-CLUB critics, which ``model.loss`` runs frozen and :meth:`critic_loss` trains; average
    their gradients with :func:`average_gradients`). They are broadcast from rank 0 here, as DDP
    does with the rest. Returns None without a process group, or when nothing is left to train.
    """
    if not is_distributed():
        return None
    from torch.nn.parallel import DistributedDataParallel

    wrapper = _LossForward(model)
    skip = {id(p) for p in exclude}
    ignored = [name for name, p in wrapper.named_parameters() if id(p) in skip]
    broadcast_parameters([p for p in model.parameters() if id(p) in skip])
    if not any(p.requires_grad for name, p in wrapper.named_parameters() if id(p) not in skip):
        return None
    # Documented for exactly this use (parameters synchronised by other means) and used by torch's own wrappers.
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapper, ignored)
    device = device if device is not None else next(model.parameters()).device
    device_ids = None  # CPU (gloo): DDP takes no device ids
    if device.type == "cuda":
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(wrapper, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


# ------------------------------------------------------------------------------ data loaders
def distributed_loader(loader: Any, seed: int = 0) -> Any:
    """``loader`` sharded over the ranks of the process group (``loader`` itself without one).

    A DataLoader over a map-style dataset with the default sampler (shuffled or not) is re-built
    over a :class:`~torch.utils.data.DistributedSampler` (``drop_last=True``: every rank gets the
    same number of samples, so the same number of batches of the same sizes) with the same batch
    size, which is per rank: the global batch is ``batch_size * world_size``. Its order follows
    ``seed`` and the epoch, the same on every rank. Loaders that already shard (a
    DistributedSampler, an IterableDataset, anything that is not a DataLoader) are returned as they
    are; a custom sampler raises.
    """
    if not is_distributed() or not isinstance(loader, DataLoader):
        return loader
    inner = getattr(loader.batch_sampler, "sampler", None)
    if isinstance(loader.sampler, DistributedSampler) or isinstance(inner, DistributedSampler):
        return loader
    if isinstance(loader.dataset, IterableDataset):
        return loader  # the dataset shards itself; the Trainer checks that every rank has as many batches
    if loader.batch_size is None or not isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
        kind = type(loader.batch_sampler if loader.batch_size is None else loader.sampler).__name__
        raise ValueError(
            f"under torch.distributed the loader must be sharded over the ranks, but it uses a custom "
            f"{kind}: build it over a torch.utils.data.DistributedSampler (or use the default sampler, "
            "which the Trainer replaces by one)"
        )
    sampler = DistributedSampler(
        loader.dataset,
        num_replicas=get_world_size(),
        rank=get_rank(),
        shuffle=isinstance(loader.sampler, RandomSampler),
        seed=seed,
        drop_last=True,
    )
    kwargs: dict[str, Any] = dict(
        batch_size=loader.batch_size,
        sampler=sampler,
        drop_last=loader.drop_last,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers,
    )
    if loader.num_workers > 0:
        kwargs.update(prefetch_factor=loader.prefetch_factor, multiprocessing_context=loader.multiprocessing_context)
    if getattr(loader, "pin_memory_device", ""):
        kwargs["pin_memory_device"] = loader.pin_memory_device
    # No generator: worker seeds then come from each rank's own (seed + rank) RNG, so ranks augment differently.
    return DataLoader(loader.dataset, **kwargs)


def loader_seed(loader: Any, seed: int | None) -> int:
    """The shuffle seed of a re-built distributed loader: the loader's own generator seed, else the run's seed."""
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        return int(gen.initial_seed()) % (2**63)
    return 0 if seed is None else int(seed)


__all__ = [
    "all_gather_object",
    "any_rank",
    "average_gradients",
    "barrier",
    "broadcast_int",
    "broadcast_parameters",
    "check_same_size",
    "cleanup",
    "distributed_loader",
    "first_host",
    "gather_no_grad",
    "gather_with_grad",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "global_mean_normalizer",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "launched_distributed",
    "loader_seed",
    "mean_over_ranks",
    "slurm_environment",
    "sum_over_ranks",
    "wrap_loss_ddp",
]
