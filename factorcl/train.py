"""Training loop: one main step, then ``critic_steps`` NCE-CLUB critic steps on the cached features.

Two AdamW optimizers (main: encoders, heads, lower-bound critics; critic: NCE-CLUB critics), a
cosine schedule with linear warm-up, gradient clipping, AMP, per-step CSV metrics (and
TensorBoard when installed), atomic checkpoints and exact resume.

Under torch.distributed (``torchrun``; see ``docs/distributed.md``): the main step runs through
DistributedDataParallel over ``model.loss`` (``no_sync`` on accumulation micro-batches), with the
NCE-CLUB critics left out of DDP; the critic steps all-reduce (mean) those critics' gradients
themselves. A plain DataLoader is re-built over a DistributedSampler (same per-rank batch size);
rank 0 alone shows progress and writes metrics and checkpoints; checkpoints keep every rank's RNG
states so that a resume with the same world size continues exactly on every rank.
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler
from tqdm.auto import tqdm

import bounds

from . import checkpoint as ckpt_io
from .device import autocast, resolve_amp, rng_state, seed_everything, select_device, set_rng_state
from .distributed import (
    all_gather_object,
    any_rank,
    average_gradients,
    broadcast_int,
    check_same_size,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    launched_distributed,
    mean_over_ranks,
    wrap_loss_ddp,
)

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
SAFETENSORS_NAME = "model.safetensors"

#: The critics' learning rate as a multiple of the main one when ``critic_lr`` is not set.
CRITIC_LR_FACTOR = 10.0

#: A bound diagnostic below minus this many nats triggers the trainer's one-time warning.
BRACKET_TOLERANCE = 0.05


def check_bounds(row: Mapping[str, float]) -> dict[str, str]:
    """The broken bounds in one metrics row, as ``{key: explanation}``.

    ``bracket/<term>`` below 0: that NCE-CLUB term is below the InfoNCE of its own critic, so the
    critic is far from optimal and its "upper bound" is not one. ``shared_remove`` below 0: an
    upper bound on a conditional MI, which is >= 0, reads negative.
    """
    broken: dict[str, str] = {}
    for key, value in row.items():
        if key.startswith("bracket/") and value < -BRACKET_TOLERANCE:
            term = key.split("/", 1)[1]
            broken[key] = (f"{term}: NCE-CLUB is {-value:.3f} nats below its own critic's InfoNCE, so the critic is "
                           "far from optimal and the upper bound is not one (raise critic_steps or critic_lr)")
    if row.get("shared_remove", 0.0) < -BRACKET_TOLERANCE:
        broken["shared_remove"] = (f"shared_remove, an upper bound on a conditional MI (>= 0), reads "
                                   f"{row['shared_remove']:.3f} nats: its critic is far from optimal")
    return broken


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; training stopped without overwriting the last good checkpoint."""


class CheckpointWarning(UserWarning):
    """A checkpoint could not be written (full disk); training goes on and tries again at the next one."""


def _nonfinite_inputs(batch: Any, names: tuple[str, ...] = ("x1", "x2", "y")) -> list[str]:
    """``x1 contains NaN at rows [3, 17]`` for each floating tensor of a batch with NaN/inf values."""
    if isinstance(batch, Mapping):
        items = list(batch.items())
    elif isinstance(batch, (list, tuple)):
        items = [(names[i] if i < len(names) else f"batch[{i}]", v) for i, v in enumerate(batch)]
    else:
        items = [("x", batch)]
    found = []
    for name, value in items:
        if isinstance(value, Tensor) and value.is_floating_point() and value.numel():
            bad = ~torch.isfinite(value.detach())
            if bad.any():
                rows = bad.reshape(bad.shape[0], -1).any(1).nonzero().flatten().tolist() if bad.dim() else [0]
                kind = "NaN" if torch.isnan(value).any() else "inf"
                more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
                found.append(f"{name} contains {kind} at rows {rows[:8]}{more} of this batch")
    return found


@dataclass
class TrainConfig:
    """Settings of :func:`fit`; every field can also be passed to it as a keyword."""

    epochs: int = 10
    lr: float = 1e-4
    # The NCE-CLUB critics chase encoders that are trained against them: with one step at the main
    # lr they end 1.8-2.2 nats of InfoNCE short of a converged critic on the same features; three
    # steps at 10x the main lr leave 0.7 (benchmarks/critic_study.py, README "Trainer").
    critic_lr: float | None = None  # defaults to CRITIC_LR_FACTOR x lr
    encoder_lr: float | None = None  # lr of the encoders (e.g. pretrained towers); defaults to lr
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # or "constant"
    min_lr_ratio: float = 0.0  # the cosine schedule's floor, as a fraction of lr
    critic_steps: int = 3
    grad_clip: float | None = None  # max global grad norm; None: no clipping
    accumulate: int = 1  # micro-batches per optimizer step
    amp: str | None = "auto"  # "auto" (bf16 on CUDA), "bf16", "fp16", or None
    device: str = "auto"
    seed: int | None = 0
    out_dir: str | None = None  # metrics.csv, checkpoint.pt, tensorboard/
    checkpoint_every: int | None = None  # in steps; None: at the end of every epoch
    resume: str | None = None  # a checkpoint path, or "auto": out_dir/checkpoint.pt if it exists
    overwrite: bool = False  # replace a run already in out_dir (without it, fit refuses to touch one)
    allow_config_change: bool = False  # resume with a different schedule (lr, epochs, seed, ...), recorded
    safetensors: bool = True  # also write the final weights as out_dir/model.safetensors
    stop_after: int | None = None  # stop (and checkpoint) after this many steps; the schedule still spans all epochs
    progress: bool = True
    tensorboard: bool = True
    find_unused_parameters: bool = False  # DDP: only for models whose loss leaves trainable parameters unused

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "critic_lr": self.critic_lr is None or self.critic_lr > 0,
            "encoder_lr": self.encoder_lr is None or self.encoder_lr >= 0,
            "critic_steps": self.critic_steps >= 0,
            "accumulate": self.accumulate >= 1,
            "warmup_steps": self.warmup_steps >= 0,
            "schedule": self.schedule in ("cosine", "constant"),
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "checkpoint_every": self.checkpoint_every is None or self.checkpoint_every >= 1,
            "stop_after": self.stop_after is None or self.stop_after >= 1,
        }
        if self.resume is not None and self.overwrite:
            raise ValueError(f"resume={self.resume!r} and overwrite=True exclude each other: resume continues the run "
                             "in out_dir, overwrite replaces it")
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            raise ValueError(f"{name}={getattr(self, name)!r} is not valid (see TrainConfig for the allowed values)")


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves behind."""

    step: int
    epoch: int
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    seconds: float = 0.0


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """The torch.Generators that decide a loader's order (its own, its sampler's), without duplicates."""
    found: list[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


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
        raise ValueError(f"under torch.distributed the loader must be sharded over the ranks, but it uses a custom "
                         f"{kind}: build it over a torch.utils.data.DistributedSampler (or use the default sampler, "
                         "which the Trainer replaces by one)")
    sampler = DistributedSampler(loader.dataset, num_replicas=get_world_size(), rank=get_rank(),
                                 shuffle=isinstance(loader.sampler, RandomSampler), seed=seed, drop_last=True)
    kwargs: dict[str, Any] = dict(batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last,
                                  num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                                  pin_memory=loader.pin_memory, timeout=loader.timeout,
                                  worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs.update(prefetch_factor=loader.prefetch_factor, multiprocessing_context=loader.multiprocessing_context)
    if getattr(loader, "pin_memory_device", ""):
        kwargs["pin_memory_device"] = loader.pin_memory_device
    # No generator: worker seeds then come from each rank's own (seed + rank) RNG, so ranks augment differently.
    return DataLoader(loader.dataset, **kwargs)


def _loader_seed(loader: Any, seed: int | None) -> int:
    """The shuffle seed of a re-built distributed loader: the loader's own generator seed, else the run's seed."""
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        return int(gen.initial_seed()) % (2**63)
    return 0 if seed is None else int(seed)


def _lr_lambda(cfg: TrainConfig, total: int):
    def fn(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine

    return fn


class _MetricsLog:
    """metrics.csv (one row per step; rows past a resumed step are dropped) and TensorBoard."""

    def __init__(self, out_dir: Path | None, resume_step: int | None, tensorboard: bool) -> None:
        self.path = out_dir / METRICS_NAME if out_dir is not None else None
        self.columns: list[str] | None = None
        self.writer = None
        if self.path is not None and resume_step is not None and self.path.exists():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= resume_step]
            if rows:
                self.columns = list(rows[0].keys())
            with self.path.open("w", newline="") as f:
                if self.columns:
                    w = csv.DictWriter(f, fieldnames=self.columns)
                    w.writeheader()
                    w.writerows(rows)
        elif self.path is not None and self.path.exists():
            self.path.unlink()
        if out_dir is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                self.writer = None

    def write(self, row: dict[str, float]) -> None:
        if self.path is not None:
            if self.columns is None:
                self.columns = list(row.keys())
                with self.path.open("w", newline="") as f:
                    csv.DictWriter(f, fieldnames=self.columns).writeheader()
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(key, value, int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Trainer:
    """Trains a :class:`factorcl.FactorCL` (anything with ``loss(batch)``, ``critic_loss()``,
    ``main_parameters()`` and ``critic_parameters()``) on a data loader.

    ``callbacks`` are called after every optimizer step with that step's metrics row
    (step, epoch, lr, loss, every term, critic_loss, time_s).

    Launched by torchrun (WORLD_SIZE > 1 in the environment), it joins the process group itself
    when the script has not (:func:`factorcl.distributed.init_distributed`) and trains with DDP:
    per-rank batches against global negatives, metrics averaged over ranks (callbacks get the
    same row on every rank), rank-0-only progress, logs and checkpoints.
    """

    def __init__(self, model: nn.Module, loader: Iterable, config: TrainConfig | None = None,
                 callbacks: Iterable[Callable[[dict[str, float]], None]] = (), **overrides: Any) -> None:
        if config is None:
            config = TrainConfig(**overrides)
        elif overrides:
            config = TrainConfig(**{**asdict(config), **overrides})
        self.cfg = config
        self.model = model
        self.callbacks = list(callbacks)
        if launched_distributed() and not (dist.is_available() and dist.is_initialized()):
            init_distributed()  # started by torchrun from a script that did not join the group itself
        self.device = select_device(config.device)
        if is_distributed():
            self.device = self._rank_device(self.device)
            loader = distributed_loader(loader, broadcast_int(_loader_seed(loader, config.seed), self.device))
        self.loader = loader
        try:
            self.batches_per_epoch = len(loader)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("loader must have a length (a DataLoader over a sized dataset)") from None
        # Ranks with different numbers of batches would leave the others waiting in a collective.
        check_same_size(self.batches_per_epoch, "number of batches per epoch", self.device)
        if self.batches_per_epoch == 0:
            raise ValueError("loader is empty: the dataset has fewer samples than one batch (check batch_size and drop_last)")
        self.amp = resolve_amp(config.amp, self.device)
        self.out_dir = Path(config.out_dir) if config.out_dir else None
        self.ddp: nn.Module | None = None

    @staticmethod
    def _rank_device(device: torch.device) -> torch.device:
        """The device of this rank: "cuda" without an index means the current (LOCAL_RANK's) GPU."""
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl" and device.type != "cuda":
            raise ValueError(f"the process group uses the nccl backend, which needs CUDA tensors, but device={device}; "
                             "train on device='cuda' (or 'auto'), or initialise the group with backend='gloo'")
        return device

    # --------------------------------------------------------------------------------- helpers
    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.cfg.accumulate)

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.steps_per_epoch

    def _resume_path(self) -> Path | None:
        if self.cfg.resume is None:
            return None
        if self.cfg.resume == "auto":
            if self.out_dir is None:
                raise ValueError("resume='auto' needs out_dir")
            path = self.out_dir / CHECKPOINT_NAME
        else:
            path = Path(self.cfg.resume)
        found = path.is_file()
        if is_distributed():
            # Every rank reads the checkpoint: a file that only some ranks see would split the job.
            seen = all_gather_object(found)
            if len(set(seen)) > 1:
                have = [r for r, f in enumerate(seen) if f]
                lack = [r for r, f in enumerate(seen) if not f]
                raise ValueError(f"checkpoint {path} exists for ranks {have} but not for ranks {lack}: every rank "
                                 "loads it on resume, so out_dir must be on a file system that every node shares")
        if self.cfg.resume == "auto" and not found:
            return None
        return path

    def _state(self, step: int, epoch: int, batch_in_epoch: int, epoch_rng: dict) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "main_opt": self.main_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict() if self.critic_opt else None,
            "main_sched": self.main_sched.state_dict(),
            "critic_sched": self.critic_sched.state_dict() if self.critic_sched else None,
            "main_scaler": self.main_scaler.state_dict(),
            "critic_scaler": self.critic_scaler.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "rng": rng_state(),
            "loader_rng": [g.get_state() for g in _loader_generators(self.loader)],
            "epoch_rng": epoch_rng,
            "world_size": get_world_size(),
            "method": getattr(getattr(self.model, "objective", None), "name", None),
            "config": asdict(self.cfg),
            "config_changes": self.config_changes,
            "batches_per_epoch": self.batches_per_epoch,
            "metrics": dict(self.last_metrics),
        }

    def _save(self, step: int, epoch: int, batch_in_epoch: int, epoch_rng: dict, final: bool = False) -> Path | None:
        """Write the checkpoint (rank 0) and return its path on every rank once it is complete.

        A full disk does not lose the run: before the last checkpoint it warns and returns None
        (training goes on with the model in memory, and the next checkpoint tries again); at the
        last one it raises :class:`~factorcl.checkpoint.CheckpointWriteError`, which names the path,
        the space needed and the last good checkpoint.
        """
        if self.out_dir is None:
            return None
        path = self.out_dir / CHECKPOINT_NAME
        # Every rank's RNG states, so that a resume continues exactly on every rank (ranks draw
        # different augmentations and data-loader worker seeds).
        ranks = all_gather_object(self._rng_entry(epoch_rng)) if is_distributed() else None
        error: BaseException | None = None
        if is_main_process():
            try:
                state = self._state(step, epoch, batch_in_epoch, epoch_rng)
                if ranks is not None:
                    state["rank_rng"] = ranks
                ckpt_io.save_atomic(state, path)
            except BaseException as exc:  # tell the other ranks before raising, so that none waits forever
                error = exc
        # 0: written, 1: disk full, 2: another error. Also the barrier after the write: no rank goes
        # on (and may read the file) before it is complete.
        code = 0 if error is None else 1 if isinstance(error, ckpt_io.CheckpointWriteError) else 2
        code = broadcast_int(code, self.device) if is_distributed() else code
        if code == 0:
            self.last_saved = (path, step)
            return path
        if code == 1:
            last = (f"the last good checkpoint is {self.last_saved[0]} (step {self.last_saved[1]})"
                    if self.last_saved else "no checkpoint of this run was written yet")
            if not final:
                if is_main_process():
                    warnings.warn(f"step {step}: {error}; training goes on with the model in memory and tries again "
                                  f"at the next checkpoint ({last})", CheckpointWarning, stacklevel=3)
                return None
            reason = error if error is not None else f"rank 0 could not write {path}: the disk is full"
            message = (f"{reason}. Training finished (step {step}) but its last checkpoint could not be written; "
                       f"{last}. Free space and resume, or save the model (still in memory) elsewhere")
            raise ckpt_io.CheckpointWriteError(message) from error
        if error is not None:
            raise error
        raise RuntimeError(f"rank 0 failed to write the checkpoint {path}; see its error")

    def _rng_entry(self, epoch_rng: dict) -> dict[str, Any]:
        return {"rng": rng_state(), "epoch_rng": epoch_rng,
                "loader_rng": [g.get_state() for g in _loader_generators(self.loader)]}

    def _restore(self, path: Path) -> dict[str, Any]:
        state = ckpt_io.load(path, map_location=self.device)
        method = getattr(getattr(self.model, "objective", None), "name", None)
        if state.get("method") not in (None, method):
            raise ValueError(f"checkpoint {path} was written by method {state['method']!r}, but the model is {method!r}")
        if state.get("world_size", 1) != get_world_size():
            raise ValueError(
                f"checkpoint {path} was written with world size {state['world_size']}, but this run has "
                f"{get_world_size()}; resume with the same number of processes (the data order, the per-rank "
                "RNG states and the global batch depend on it)"
            )
        mismatch = ckpt_io.state_dict_mismatch(state["model"], self.model.state_dict())
        if mismatch:
            raise ckpt_io.ConfigChangedError(
                f"config differs from the run in {path.parent}: its checkpoint was written by a different model "
                f"({'; '.join(mismatch)}). A resume must build the same model (method, critic, embed_dim, encoders); "
                "to train a new one, use --overwrite (overwrite=True) or another out_dir")
        self._check_resume_config(path, state)
        ranks = state.get("rank_rng")
        if ranks is not None:  # this rank's own RNG states (the top-level ones are rank 0's)
            state = {**state, **ranks[get_rank()]}
        self.model.load_state_dict(state["model"])
        self.main_opt.load_state_dict(state["main_opt"])
        self.main_sched.load_state_dict(state["main_sched"])
        if self.critic_opt is not None and state["critic_opt"] is not None:
            self.critic_opt.load_state_dict(state["critic_opt"])
            self.critic_sched.load_state_dict(state["critic_sched"])
        self.main_scaler.load_state_dict(state["main_scaler"])
        self.critic_scaler.load_state_dict(state["critic_scaler"])
        return state

    def _export_weights(self, step: int) -> None:
        """out_dir/model.safetensors: the weights alone, loadable without pickle (rank 0; a full disk warns)."""
        if self.out_dir is None or not self.cfg.safetensors or not is_main_process():
            return
        path = self.out_dir / SAFETENSORS_NAME
        method = getattr(getattr(self.model, "objective", None), "name", None)
        try:
            ckpt_io.save_safetensors(self.model.state_dict(), path, {"step": str(step), "method": str(method)})
        except ckpt_io.CheckpointWriteError as exc:
            warnings.warn(f"{exc}; the weights are in {CHECKPOINT_NAME}", CheckpointWarning, stacklevel=3)

    def _check_out_dir(self, resume_path: Path | None) -> None:
        """Before any training: out_dir is a writable folder, and a run already in it is never replaced silently."""
        if self.out_dir is None:
            return
        error: BaseException | None = None
        if is_main_process():
            try:
                ckpt_io.check_writable_dir(self.out_dir)
                found = ckpt_io.existing_run_files(self.out_dir)
                if resume_path is None and found:
                    if not self.cfg.overwrite:
                        ckpt_io.refuse_existing_run(self.out_dir, found)
                    ckpt_io.clear_run(self.out_dir)
            except Exception as exc:  # raised below on every rank, so that none waits in a collective
                error = exc
        if is_distributed() and any_rank(error is not None, self.device) and error is None:
            raise RuntimeError(f"rank 0 refused out_dir {self.out_dir}; see its error")
        if error is not None:
            raise error

    def _check_resume_config(self, path: Path, state: Mapping[str, Any]) -> None:
        """Refuse a resume with a changed schedule unless ``allow_config_change``; record allowed changes."""
        self.config_changes = list(state.get("config_changes") or [])
        changes = ckpt_io.config_changes(state.get("config") or {}, asdict(self.cfg))
        saved_batches = state.get("batches_per_epoch")
        if saved_batches is not None and saved_batches != self.batches_per_epoch:
            changes["batches_per_epoch (batch size or data)"] = (saved_batches, self.batches_per_epoch)
        if not changes:
            return
        if not self.cfg.allow_config_change:
            raise ckpt_io.ConfigChangedError(
                f"config differs from the run being resumed ({path}): {ckpt_io.format_changes(changes)}. Resume "
                "with the run's settings, allow the change with --allow-config-change (allow_config_change=True; "
                "it is recorded), or start a new run in another out_dir")
        self.config_changes.append({"step": int(state["step"]), "changes": {k: list(v) for k, v in changes.items()}})
        warnings.warn(f"resuming {path} at step {state['step']} with a changed config: "
                      f"{ckpt_io.format_changes(changes)} (recorded in the checkpoint's config_changes)", stacklevel=3)

    def _optimizer_step(self, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params: list) -> None:
        if self.cfg.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    def _nonfinite(self, loss: Tensor) -> bool:
        """Whether the loss is NaN/inf here or on any rank (so that every rank stops together)."""
        bad = not bool(torch.isfinite(loss.detach()))
        return any_rank(bad, self.device) if is_distributed() else bad

    def _critic_steps(self) -> float:
        """``critic_steps`` updates of the NCE-CLUB critics on the cached features; returns the last loss."""
        value = float("nan")
        for _ in range(self.cfg.critic_steps):
            with autocast(self.device, self.amp):
                loss = self.model.critic_loss()
            if self._nonfinite(loss):
                raise NonFiniteLossError(f"the critic loss is {float(loss.detach())}"
                                         f"{' (or not finite on another rank)' if is_distributed() else ''}; "
                                         f"{self._last_good()}")
            self.critic_scaler.scale(loss).backward()
            # The critics are outside DDP (model.loss runs them frozen): average their gradients here.
            average_gradients(self.critic_params)
            self._optimizer_step(self.critic_opt, self.critic_scaler, self.critic_params)
            value = float(loss.detach())
        return value

    def _main_groups(self) -> list[dict[str, Any]]:
        """The main optimizer's parameter groups: the encoders at ``encoder_lr`` (when set), the rest at ``lr``."""
        if self.cfg.encoder_lr is None or not hasattr(self.model, "encoder_parameters"):
            return [{"params": self.main_params}]
        encoder_ids = {id(p) for p in self.model.encoder_parameters()}
        encoders = [p for p in self.main_params if id(p) in encoder_ids]
        rest = [p for p in self.main_params if id(p) not in encoder_ids]
        return [g for g in ({"params": encoders, "lr": self.cfg.encoder_lr}, {"params": rest}) if g["params"]]

    def _last_good(self) -> str:
        path = self.out_dir / CHECKPOINT_NAME if self.out_dir else None
        if path is not None and path.exists():
            return f"the last good checkpoint is {path}"
        return "no checkpoint was written before this step"

    # ------------------------------------------------------------------------------------- fit
    def fit(self) -> TrainResult:
        """Run (or resume) training; returns the final step, metrics and checkpoint path."""
        # The loop checks the loss for NaN/inf itself, with a message about where training stopped;
        # the estimators' per-call value checks would only add a device sync per term.
        checks = bounds.value_checks_enabled()
        bounds.set_value_checks(False)
        try:
            return self._fit()
        finally:
            bounds.set_value_checks(checks)

    def _fit(self) -> TrainResult:
        cfg, model = self.cfg, self.model
        model.to(self.device)
        model.train()
        self.main_params = list(model.main_parameters())
        self.critic_params = list(model.critic_parameters())
        self.main_opt = torch.optim.AdamW(self._main_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.critic_opt = (
            torch.optim.AdamW(self.critic_params, lr=cfg.critic_lr or CRITIC_LR_FACTOR * cfg.lr,
                              weight_decay=cfg.weight_decay)
            if self.critic_params and cfg.critic_steps > 0
            else None
        )
        total = self.total_steps
        self.main_sched = torch.optim.lr_scheduler.LambdaLR(self.main_opt, _lr_lambda(cfg, total))
        self.critic_sched = (
            torch.optim.lr_scheduler.LambdaLR(self.critic_opt, _lr_lambda(cfg, total)) if self.critic_opt else None
        )
        use_scaler = self.amp == "fp16"
        self.main_scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.critic_scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)

        self.config_changes: list[dict[str, Any]] = []
        self.last_saved: tuple[Path, int] | None = None
        self.last_metrics: dict[str, float] = {}
        resume_path = self._resume_path()
        self._check_out_dir(resume_path)
        resumed = self._restore(resume_path) if resume_path is not None else None
        if resumed is not None:
            self.last_saved = (resume_path, int(resumed["step"]))
            self.last_metrics = dict(resumed.get("metrics") or {})
        # After the restore (DDP broadcasts rank 0's parameters at wrap time; they already agree).
        self.ddp = wrap_loss_ddp(model, exclude=self.critic_params, device=self.device,
                                 find_unused_parameters=cfg.find_unused_parameters)
        forward = self.ddp if self.ddp is not None else model.loss
        step = resumed["step"] if resumed else 0
        epoch = resumed["epoch"] if resumed else 0
        skip = resumed["batch_in_epoch"] if resumed else 0
        if skip >= self.batches_per_epoch:
            epoch, skip = epoch + 1, 0
        if resumed is None:
            if cfg.seed is not None:
                # seed + rank: ranks must draw different augmentations (the model's initial weights
                # are made before fit and DDP makes them rank 0's anyway).
                seed_everything(cfg.seed + get_rank())
        elif skip == 0:
            # Resuming at an epoch boundary: the next epoch starts from the RNG states saved with
            # the checkpoint (mid-epoch resumes restore theirs in the epoch loop).
            set_rng_state(resumed["rng"])
            for gen, state in zip(_loader_generators(self.loader), resumed.get("loader_rng", [])):
                gen.set_state(state)

        log = _MetricsLog(self.out_dir if is_main_process() else None, step if resumed else None, cfg.tensorboard)
        bar = tqdm(total=total, initial=step, disable=not (cfg.progress and is_main_process()),
                   desc=getattr(getattr(model, "objective", None), "name", "train"), dynamic_ncols=True)
        history: list[dict[str, float]] = []
        warned: set[str] = set()
        metrics: dict[str, float] = dict(self.last_metrics)  # a finished run resumed returns its last metrics
        checkpoint_path: Path | None = resume_path if resumed else None
        start = time.perf_counter()
        last_saved_step = step if resumed else -1
        position = (epoch, skip)  # (epoch, batch_in_epoch) of the latest save point
        stop = False
        try:
            while epoch < cfg.epochs and not stop:
                sampler = getattr(self.loader, "sampler", None)
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
                # The data order of an epoch is drawn when its iterator is made (from the global RNG
                # or the loader's own generator): keep those states so a resumed run makes the same
                # iterator, then skips the batches already done.
                generators = _loader_generators(self.loader)
                if resumed is not None and skip:
                    set_rng_state(resumed["epoch_rng"])
                    for gen, state in zip(generators, resumed["epoch_rng"].get("loader", [])):
                        gen.set_state(state)
                epoch_rng = {**rng_state(), "loader": [g.get_state() for g in generators]}
                iterator = iter(self.loader)
                for _ in range(skip):
                    next(iterator)
                if resumed is not None and skip:
                    set_rng_state(resumed["rng"])
                resumed = None
                self.main_opt.zero_grad(set_to_none=True)
                for index, batch in enumerate(iterator, start=skip):
                    batch = to_device(batch, self.device)
                    boundary = (index + 1) % cfg.accumulate == 0 or index + 1 == self.batches_per_epoch
                    # DDP all-reduces gradients in the backward pass: only on the optimizer step's micro-batch.
                    sync = self.ddp.no_sync() if self.ddp is not None and not boundary else contextlib.nullcontext()
                    with sync:
                        with autocast(self.device, self.amp):
                            loss, terms = forward(batch)
                        if self._nonfinite(loss):
                            values = {k: round(float(v), 4) for k, v in terms.items()}
                            where = f" on rank {get_rank()} (or another rank)" if is_distributed() else ""
                            inputs = _nonfinite_inputs(batch)
                            cause = (f"The inputs are not finite: {'; '.join(inputs)}. Fix or drop those rows"
                                     if inputs else "Lower the learning rate, or set grad_clip")
                            raise NonFiniteLossError(
                                f"loss is {float(loss.detach())}{where} at step {step + 1} (epoch {epoch}, "
                                f"batch {index}); term estimates {values}. Training stopped and {self._last_good()}. "
                                f"{cause}."
                            )
                        self.main_scaler.scale(loss / cfg.accumulate).backward()
                    critic_value = self._critic_steps() if self.critic_opt is not None else float("nan")
                    if not boundary:
                        continue
                    self._optimizer_step(self.main_opt, self.main_scaler, self.main_params)
                    lr = self.main_sched.get_last_lr()[0]
                    self.main_sched.step()
                    if self.critic_sched is not None:
                        self.critic_sched.step()
                    step += 1
                    stacked = torch.stack([v.float() for v in terms.values()]
                                          + [torch.tensor(critic_value, device=loss.device)])
                    # Each rank's estimates are means over its rows: their mean over ranks is the global batch's.
                    values = mean_over_ranks(stacked).tolist()
                    metrics = dict(zip(terms.keys(), values[:-1]))
                    critic_value = values[-1]
                    row = {"step": step, "epoch": epoch, "lr": lr, **metrics, "critic_loss": critic_value,
                           "time_s": time.perf_counter() - start}
                    self.last_metrics = metrics
                    history.append(row)
                    if is_main_process():
                        log.write(row)
                        for key, why in check_bounds(row).items():
                            if key not in warned:  # once per quantity and run: a warning, not a flood
                                warned.add(key)
                                warnings.warn(f"step {step}: {why}", bounds.BrokenBracketWarning, stacklevel=2)
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items() if "/" not in k}, refresh=False)
                    for callback in self.callbacks:
                        callback(row)
                    due = cfg.checkpoint_every is not None and step % cfg.checkpoint_every == 0
                    stop = cfg.stop_after is not None and step >= cfg.stop_after
                    if due or stop:
                        if index + 1 == self.batches_per_epoch:
                            # Exhaust the finished iterator first: samplers draw from their
                            # generator on exhaustion, as an uninterrupted run's epoch does.
                            next(iterator, None)
                        position = (epoch, index + 1)
                        saved = self._save(step, *position, epoch_rng)
                        if saved is not None:
                            checkpoint_path, last_saved_step = saved, step
                    if stop:
                        break
                if not stop:
                    position = (epoch, self.batches_per_epoch)
                    if cfg.checkpoint_every is None and last_saved_step != step:
                        saved = self._save(step, *position, epoch_rng)
                        if saved is not None:
                            checkpoint_path, last_saved_step = saved, step
                    epoch, skip = epoch + 1, 0
            if last_saved_step != step:
                # The last checkpoint, or the retry of one that failed (final: a full disk now raises).
                checkpoint_path = self._save(step, *position, epoch_rng, final=True) or checkpoint_path
            if history or not (self.out_dir is None or (self.out_dir / SAFETENSORS_NAME).exists()):
                self._export_weights(step)
        finally:
            bar.close()
            log.close()
            # Drop the DDP wrapper (and its gradient hooks on the model's parameters) with the run.
            self.ddp = None
        return TrainResult(step=step, epoch=epoch, metrics=metrics, history=history, checkpoint=checkpoint_path,
                           seconds=time.perf_counter() - start)


def fit(model: nn.Module, loader: Iterable, config: TrainConfig | None = None,
        callbacks: Iterable[Callable[[dict[str, float]], None]] = (), **overrides: Any) -> TrainResult:
    """Train ``model`` on ``loader``; keywords are :class:`TrainConfig` fields (epochs, lr, critic_steps, ...).

    ``callbacks`` are called with each step's metrics row.
    """
    return Trainer(model, loader, config, callbacks=callbacks, **overrides).fit()


__all__ = ["NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer", "distributed_loader", "fit", "to_device"]

