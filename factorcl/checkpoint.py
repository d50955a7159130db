"""Checkpoint files: atomic writes, a clear error on a full disk, and loading with ``weights_only=True``.

Every checkpoint the package writes holds tensors and primitives only (dicts, lists, tuples, str,
int, float, bool, None): model and optimizer state dicts, the step, the config as a dict and the RNG
states (numpy's as a tensor). So :func:`load` uses ``torch.load(weights_only=True)``, which cannot
run code from the file. Checkpoints written before this policy kept numpy's RNG state as a numpy
array; :func:`load` allows exactly those numpy types, nothing else.

The run folder: the names of a run's files, :func:`resolve_resume` (which checkpoint a resume reads)
and :func:`prepare_out_dir` (a run already there is never replaced silently).

The run state: :class:`RunState` builds the checkpoint of a training run (model, optimizers,
schedules, scalers, position, every rank's RNG states, config), writes it from rank 0 with the
full-disk policy of :meth:`RunState.save`, and restores it after the resume checks (method, world
size, model, config).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .device import rng_state, set_rng_state
from .distributed import (
    all_gather_object,
    any_rank,
    broadcast_int,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
)
from .fileio import DiskFullError, atomic_write

__all__ = [
    "CHECKPOINT_NAME",
    "METRICS_NAME",
    "SAFETENSORS_NAME",
    "TENSORBOARD_NAME",
    "CheckpointWarning",
    "CheckpointWriteError",
    "ConfigChangedError",
    "RunExistsError",
    "RunState",
    "check_writable_dir",
    "clear_run",
    "config_changes",
    "epoch_rng_state",
    "existing_run_files",
    "load",
    "loader_generators",
    "payload_bytes",
    "prepare_out_dir",
    "refuse_existing_run",
    "resolve_resume",
    "save_atomic",
    "save_safetensors",
    "set_epoch_rng_state",
    "state_dict_mismatch",
]


class CheckpointWriteError(DiskFullError):
    """A checkpoint could not be written because its disk is full (the message names the path and sizes)."""


class CheckpointWarning(UserWarning):
    """A checkpoint could not be written (full disk); training goes on and tries again at the next one."""


#: File overhead per tensor in a torch.save zip archive (its record, header and alignment), measured.
_BYTES_PER_TENSOR = 512


def payload_bytes(obj: Any) -> int:
    """About the size of a (nested) checkpoint payload's file: its tensors' bytes plus each one's record."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size() + _BYTES_PER_TENSOR
    if isinstance(obj, Mapping):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over it.

    A full disk raises :class:`CheckpointWriteError` (naming the path, the space the checkpoint
    needs and the free space) and leaves the previous file at ``path`` as it was.
    """
    try:
        return atomic_write(path, lambda f: torch.save(obj, f), needed=payload_bytes(obj))
    except CheckpointWriteError:
        raise
    except DiskFullError as exc:
        raise CheckpointWriteError(str(exc), exc.errno) from exc


def _numpy_rng_globals() -> list[Any]:
    """The numpy types of a legacy checkpoint's numpy RNG state (a uint32 array), for weights_only loading."""
    core = getattr(np, "_core", None) or np.core
    found = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found.append(dtypes.UInt32DType)
    return found


def load(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (``weights_only=True``), with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_rng_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch reports both a damaged file and a foreign object as UnpicklingError; the
        # "Unsupported global" line tells them apart.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise ValueError(
                f"could not read checkpoint {path}: not a complete torch checkpoint (truncated or corrupt?)"
            ) from exc
        raise ValueError(
            f"could not read checkpoint {path}: it holds Python objects ({found.group(1)}) other than "
            "tensors and primitives, which factorcl never writes, so it is not loaded"
        ) from exc
    except Exception as exc:  # a truncated or foreign file
        raise ValueError(
            f"could not read checkpoint {path}: not a complete torch checkpoint (truncated?): {exc}"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"could not read checkpoint {path}: expected a dict, got {type(state).__name__}")
    return state


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write a state dict as safetensors (weights only: no code, loadable without torch.load), atomically."""
    from safetensors.torch import save

    # safetensors refuses tensors that share memory and non-contiguous views: write plain CPU copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    data = save(tensors, metadata=dict(metadata) if metadata else None)
    try:
        return atomic_write(path, lambda f: f.write(data), needed=len(data))
    except DiskFullError as exc:
        raise CheckpointWriteError(str(exc), exc.errno) from exc


# ------------------------------------------------------------------------------ the run folder
class RunExistsError(FileExistsError):
    """``out_dir`` already holds a run and neither resume nor overwrite was asked for."""


class ConfigChangedError(ValueError):
    """A resume whose config differs from the run's in a way that is refused (the message lists the keys)."""


#: The files and the folder of a run in its out_dir.
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
SAFETENSORS_NAME = "model.safetensors"
TENSORBOARD_NAME = "tensorboard"

#: Files and folders a run of :func:`factorcl.fit` owns in its out_dir.
EVAL_NAME = "eval.csv"  # the evaluations during training (factorcl.metrics_log), one row per evaluated step
PLOT_NAME = "training.png"  # factorcl.plot's picture of a run
WANDB_ID_NAME = "wandb_run_id"  # the W&B run a resume continues (factorcl.wandb_log)
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, SAFETENSORS_NAME, EVAL_NAME, PLOT_NAME, WANDB_ID_NAME)
RUN_FOLDERS = (TENSORBOARD_NAME,)


def existing_run_files(out_dir: str | os.PathLike, names: tuple[str, ...] = RUN_FILES) -> list[str]:
    """The names of ``names`` present in ``out_dir`` (a run is there when this is non-empty)."""
    out = Path(out_dir)
    return [n for n in names if (out / n).exists()]


def refuse_existing_run(out_dir: str | os.PathLike, found: list[str]) -> None:
    """Raise :class:`RunExistsError` naming the folder, what is in it, and the three ways on."""
    raise RunExistsError(
        f"{out_dir} already holds a run ({', '.join(found)}); nothing was changed. Continue it with --resume "
        "(Python: resume='auto'), replace it with --overwrite (overwrite=True), or choose another --out-dir"
    )


def refuse_unresumable_run(out_dir: str | os.PathLike, found: list[str]) -> None:
    """Raise :class:`RunExistsError`: a resume was asked for, but the run in out_dir has no checkpoint."""
    raise RunExistsError(
        f"{out_dir} holds a run ({', '.join(found)}) but no {CHECKPOINT_NAME} to resume from (it was never written, "
        "e.g. the disk was full, or it was deleted); nothing was changed. Replace the run with --overwrite "
        "(Python: overwrite=True, without resume), or choose another --out-dir"
    )


def check_writable_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and check that files can be written in it; a clear error otherwise."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir {out} is a file, not a folder: choose a folder for the run's outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".factorcl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(
            f"out_dir {out} is not writable ({exc.strerror or exc}): choose a folder you can write to"
        ) from exc
    return out


def clear_run(
    out_dir: str | os.PathLike, names: tuple[str, ...] = RUN_FILES, folders: tuple[str, ...] = RUN_FOLDERS
) -> None:
    """Remove a run's own files (``overwrite=True``), so that no old file outlives the new run's start."""
    import shutil

    out = Path(out_dir)
    for name in names:
        (out / name).unlink(missing_ok=True)
    for name in folders:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def resolve_resume(resume: str | None, out_dir: Path | None) -> Path | None:
    """The checkpoint a run resumes from: ``resume`` itself, or for ``"auto"`` out_dir/checkpoint.pt
    when it exists (None when it does not: a new run). Every rank must see the same file."""
    if resume is None:
        return None
    if resume == "auto":
        if out_dir is None:
            raise ValueError("resume='auto' needs out_dir")
        path = out_dir / CHECKPOINT_NAME
    else:
        path = Path(resume)
    found = path.is_file()
    if is_distributed():
        # Every rank reads the checkpoint: a file that only some ranks see would split the job.
        seen = all_gather_object(found)
        if len(set(seen)) > 1:
            have = [r for r, f in enumerate(seen) if f]
            lack = [r for r, f in enumerate(seen) if not f]
            raise ValueError(
                f"checkpoint {path} exists for ranks {have} but not for ranks {lack}: every rank "
                "loads it on resume, so out_dir must be on a file system that every node shares"
            )
    if resume == "auto" and not found:
        return None
    return path


def prepare_out_dir(
    out_dir: Path | None,
    resuming: bool,
    overwrite: bool,
    device: torch.device | None = None,
    resume_asked: bool = False,
) -> None:
    """Before any training: out_dir is a writable folder, and a run already in it is never replaced silently.

    A new run (not ``resuming``) into a folder that holds one raises :class:`RunExistsError`, or
    with ``overwrite`` clears that run's files first; so does a resume that was asked for
    (``resume_asked``) but finds no checkpoint beside the run's other files. Rank 0 checks; every
    rank raises.
    """
    if out_dir is None:
        return
    error: BaseException | None = None
    if is_main_process():
        try:
            check_writable_dir(out_dir)
            found = existing_run_files(out_dir)
            if not resuming and found:
                if resume_asked:
                    refuse_unresumable_run(out_dir, found)
                if not overwrite:
                    refuse_existing_run(out_dir, found)
                clear_run(out_dir)
        except Exception as exc:  # raised below on every rank, so that none waits in a collective
            error = exc
    if is_distributed() and any_rank(error is not None, device) and error is None:
        raise RuntimeError(f"rank 0 refused out_dir {out_dir}; see its error")
    if error is not None:
        raise error


#: TrainConfig fields that do not change what a run computes: a resume may change them freely.
FREE_TRAIN_KEYS = frozenset(
    {
        "device",
        "out_dir",
        "resume",
        "progress",
        "tensorboard",
        "stop_after",
        "checkpoint_every",
        "overwrite",
        "allow_config_change",
        "safetensors",
        "find_unused_parameters",
        "wandb_project",
        "wandb_name",
        "wandb_mode",
        "plot",
        "compile",
    }
)


def config_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], free: frozenset[str] = FREE_TRAIN_KEYS, prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for the keys whose values differ (nested mappings by dotted key), minus ``free``."""
    changes: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(old) | set(new), key=str):
        if key in free:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changes.update(config_changes(a, b, free, f"{prefix}{key}."))
        elif _normalise(a) != _normalise(b):
            changes[f"{prefix}{key}"] = (a, b)
    return changes


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def format_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    """``lr: 0.001 -> 0.5, epochs: 4 -> 8``."""
    return ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())


def state_dict_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Lines describing how a saved state dict differs from the model's (missing, unexpected, shapes)."""
    lines = []
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    shapes = [
        f"{k}: {tuple(saved[k].shape)} in the checkpoint, {tuple(current[k].shape)} in the model"
        for k in current
        if k in saved and hasattr(saved[k], "shape") and saved[k].shape != current[k].shape
    ]

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")

    if missing:
        lines.append(f"not in the checkpoint: {few(missing)}")
    if unexpected:
        lines.append(f"not in the model: {few(unexpected)}")
    if shapes:
        lines.append(f"shapes differ: {few(shapes)}")
    return lines


# ------------------------------------------------------------------------------ the run state
def loader_generators(loader: Any) -> list[torch.Generator]:
    """The torch.Generators that decide a loader's order (its own, its sampler's), without duplicates."""
    found: list[torch.Generator] = []
    batch_sampler = getattr(loader, "batch_sampler", None)
    for owner in (loader, getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def _loader_rng(loader: Any) -> list[torch.Tensor]:
    return [g.get_state() for g in loader_generators(loader)]


def _set_loader_rng(loader: Any, states: list[torch.Tensor]) -> None:
    for gen, state in zip(loader_generators(loader), states):
        gen.set_state(state)


def epoch_rng_state(loader: Any) -> dict[str, Any]:
    """The RNG states that decide an epoch's data order (the global ones and ``"loader"``: the loader's
    generators'), taken just before the epoch's iterator is made: a mid-epoch resume re-makes it from them."""
    return {**rng_state(), "loader": _loader_rng(loader)}


def set_epoch_rng_state(loader: Any, state: Mapping[str, Any]) -> None:
    """Restore what :func:`epoch_rng_state` returned."""
    set_rng_state(state)
    _set_loader_rng(loader, state.get("loader", []))


def _hyperparameters(opt: torch.optim.Optimizer) -> list[tuple[float, float]]:
    """Each param group's base lr (``initial_lr``, set by its scheduler) and weight decay."""
    return [(g.get("initial_lr", g["lr"]), g["weight_decay"]) for g in opt.param_groups]


def _apply_schedule(opt: torch.optim.Optimizer, sched: Any, fresh: list[tuple[float, float]]) -> None:
    """Give a restored optimizer this run's base lrs and weight decays, and set each group's lr to
    its schedule's value at the restored step (the same value an uninterrupted run has there)."""
    sched.base_lrs = [lr for lr, _ in fresh]
    for group, (lr, decay), fn in zip(opt.param_groups, fresh, sched.lr_lambdas):
        group["initial_lr"], group["weight_decay"] = lr, decay
        group["lr"] = lr * fn(sched.last_epoch)
    sched._last_lr = [group["lr"] for group in opt.param_groups]


def _state_dict(obj: Any) -> Any:
    return None if obj is None else obj.state_dict()


#: The checkpoint keys of the objects whose ``state_dict`` it holds (the critic ones are None without critics).
STATE_DICT_KEYS = ("model", "main_opt", "critic_opt", "main_sched", "critic_sched", "main_scaler", "critic_scaler")


@dataclass(kw_only=True)
class RunState:
    """The checkpoint of a training run: what it holds, how it is written, and how a resume restores it.

    The checkpoint is a dict of tensors and primitives (so :func:`load` reads it with
    ``weights_only=True``):

    - ``model``, ``main_opt``, ``critic_opt``, ``main_sched``, ``critic_sched``, ``main_scaler``,
      ``critic_scaler``: state dicts (``critic_*`` None for a run without critic steps);
    - ``step`` (optimizer steps done), ``epoch``, ``batch_in_epoch`` (``batches_per_epoch`` when the
      epoch is complete);
    - ``rng`` and ``loader_rng``: rank 0's RNG states and its loader generators' at the save;
      ``epoch_rng``: those when the epoch's iterator was made (:func:`epoch_rng_state`);
      ``rank_rng`` (under torch.distributed only): every rank's ``{rng, epoch_rng, loader_rng}``;
    - ``world_size``, ``method``, ``config`` (the TrainConfig as a dict), ``config_changes`` (the
      changes allowed at earlier resumes), ``batches_per_epoch``, ``metrics`` (the last step's).

    A resume refuses a checkpoint of another method, world size or model, and one whose config
    (or ``batches_per_epoch``) differs unless ``config["allow_config_change"]``; allowed changes are
    appended to ``config_changes`` and so recorded in every later checkpoint.
    """

    model: nn.Module
    loader: Any
    config: dict[str, Any]  # asdict(TrainConfig)
    batches_per_epoch: int
    main_opt: torch.optim.Optimizer
    main_sched: Any
    main_scaler: torch.amp.GradScaler
    critic_opt: torch.optim.Optimizer | None
    critic_sched: Any
    critic_scaler: torch.amp.GradScaler
    out_dir: Path | None = None  # None: no checkpoints
    device: torch.device | None = None
    config_changes: list[dict[str, Any]] = field(default_factory=list)
    last_saved: tuple[Path, int] | None = None  # (path, step) of the last checkpoint written or resumed from

    @property
    def path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    @property
    def method(self) -> str | None:
        return getattr(getattr(self.model, "objective", None), "name", None)

    def last_good(self) -> str:
        """Where the run can be resumed from, for error messages."""
        if self.path is not None and self.path.exists():
            return f"the last good checkpoint is {self.path}"
        return "no checkpoint was written before this step"

    # ------------------------------------------------------------------------------- write
    def _rank_rng(self, epoch_rng: dict) -> dict[str, Any]:
        return {"rng": rng_state(), "epoch_rng": epoch_rng, "loader_rng": _loader_rng(self.loader)}

    def payload(
        self, step: int, epoch: int, batch_in_epoch: int, rng: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> dict[str, Any]:
        """The checkpoint dict (without ``rank_rng``); ``rng`` is this rank's ``{rng, epoch_rng, loader_rng}``."""
        return {
            **{key: _state_dict(getattr(self, key)) for key in STATE_DICT_KEYS},
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "rng": rng["rng"],
            "loader_rng": rng["loader_rng"],
            "epoch_rng": rng["epoch_rng"],
            "world_size": get_world_size(),
            "method": self.method,
            "config": dict(self.config),
            "config_changes": self.config_changes,
            "batches_per_epoch": self.batches_per_epoch,
            "metrics": dict(metrics),
        }

    def save(
        self,
        step: int,
        epoch: int,
        batch_in_epoch: int,
        epoch_rng: dict,
        metrics: Mapping[str, float],
        final: bool = False,
    ) -> Path | None:
        """Write the checkpoint (rank 0) and return its path on every rank once it is complete.

        A full disk does not lose the run: before the last checkpoint it warns and returns None
        (training goes on with the model in memory, and the next checkpoint tries again); at the
        last one it raises :class:`CheckpointWriteError`, which names the path, the space needed and
        the last good checkpoint. Without ``out_dir``: None.
        """
        path = self.path
        if path is None:
            return None
        # Every rank's RNG states, so that a resume continues exactly on every rank (ranks draw
        # different augmentations and data-loader worker seeds).
        rng = self._rank_rng(epoch_rng)
        ranks = all_gather_object(rng) if is_distributed() else None
        error: BaseException | None = None
        if is_main_process():
            try:
                state = self.payload(step, epoch, batch_in_epoch, rng, metrics)
                if ranks is not None:
                    state["rank_rng"] = ranks
                save_atomic(state, path)
            except BaseException as exc:  # tell the other ranks before raising, so that none waits forever
                error = exc
        # 0: written, 1: disk full, 2: another error. Also the barrier after the write: no rank goes
        # on (and may read the file) before it is complete.
        code = 0 if error is None else 1 if isinstance(error, CheckpointWriteError) else 2
        code = broadcast_int(code, self.device) if is_distributed() else code
        if code == 0:
            self.last_saved = (path, step)
            return path
        if code == 1:
            return self._disk_full(path, step, error, final)
        if error is not None:
            raise error
        raise RuntimeError(f"rank 0 failed to write the checkpoint {path}; see its error")

    def _disk_full(self, path: Path, step: int, error: BaseException | None, final: bool) -> None:
        """A full disk: warn and go on (None), or at the last checkpoint raise :class:`CheckpointWriteError`."""
        last = (
            f"the last good checkpoint is {self.last_saved[0]} (step {self.last_saved[1]})"
            if self.last_saved
            else "no checkpoint of this run was written yet"
        )
        if not final:
            if is_main_process():
                warnings.warn(
                    f"step {step}: {error}; training goes on with the model in memory and tries again "
                    f"at the next checkpoint ({last})",
                    CheckpointWarning,
                    stacklevel=3,
                )
            return None
        reason = error if error is not None else f"rank 0 could not write {path}: the disk is full"
        then = (
            "free space and resume (--resume) from it"
            if self.last_saved
            else "free space and run again with --overwrite (overwrite=True)"
        )
        message = (
            f"{reason}. Training finished (step {step}) but its last checkpoint could not be written; "
            f"{last}: {then}. From Python, the trained model object is still in memory and can be saved elsewhere"
        )
        raise CheckpointWriteError(message) from error

    def export_weights(self, step: int) -> None:
        """out_dir/model.safetensors: the weights alone, loadable without pickle (rank 0; a full disk warns)."""
        if self.out_dir is None or not self.config["safetensors"] or not is_main_process():
            return
        path = self.out_dir / SAFETENSORS_NAME
        try:
            save_safetensors(self.model.state_dict(), path, {"step": str(step), "method": str(self.method)})
        except CheckpointWriteError as exc:
            warnings.warn(f"{exc}; the weights are in {CHECKPOINT_NAME}", CheckpointWarning, stacklevel=2)

    # ------------------------------------------------------------------------------- resume
    def restore(self, path: Path) -> dict[str, Any]:
        """Load ``path`` into the model, optimizers, schedules and scalers, after the resume checks.

        Returns the checkpoint with this rank's RNG states at the top level (``rng``, ``epoch_rng``,
        ``loader_rng``; the saved top-level ones are rank 0's). The RNGs themselves are not set
        here: the epoch loop sets them where an uninterrupted run had them.
        """
        state = load(path, map_location=self.device)
        self._check_run(path, state)
        self._check_config(path, state)
        ranks = state.get("rank_rng")
        if ranks is not None:  # this rank's own RNG states (the top-level ones are rank 0's)
            state = {**state, **ranks[get_rank()]}
        self.model.load_state_dict(state["model"])
        # The optimizers' states hold the saved lr and weight decay: keep this run's (they differ
        # only after an allowed config change) and re-apply this run's schedule at the saved step.
        fresh = _hyperparameters(self.main_opt)
        self.main_opt.load_state_dict(state["main_opt"])
        self.main_sched.load_state_dict(state["main_sched"])
        _apply_schedule(self.main_opt, self.main_sched, fresh)
        if self.critic_opt is not None and state["critic_opt"] is not None:
            fresh = _hyperparameters(self.critic_opt)
            self.critic_opt.load_state_dict(state["critic_opt"])
            self.critic_sched.load_state_dict(state["critic_sched"])
            _apply_schedule(self.critic_opt, self.critic_sched, fresh)
        self.main_scaler.load_state_dict(state["main_scaler"])
        self.critic_scaler.load_state_dict(state["critic_scaler"])
        self.last_saved = (path, int(state["step"]))
        return state

    def restore_rng(self, state: Mapping[str, Any]) -> None:
        """Set the RNGs (global and the loader's) to a checkpoint's ``rng`` and ``loader_rng``."""
        set_rng_state(state["rng"])
        _set_loader_rng(self.loader, state.get("loader_rng", []))

    def _check_run(self, path: Path, state: Mapping[str, Any]) -> None:
        """The checkpoint is of this method, world size and model."""
        method = self.method
        if state.get("method") not in (None, method):
            raise ConfigChangedError(
                f"config differs from the run being resumed: checkpoint {path} was written by method "
                f"{state['method']!r}, but the model is {method!r}. A resume must build the same model; to train a "
                "new one, use --overwrite (overwrite=True) or another out_dir"
            )
        if state.get("world_size", 1) != get_world_size():
            raise ValueError(
                f"checkpoint {path} was written with world size {state['world_size']}, but this run has "
                f"{get_world_size()}; resume with the same number of processes (the data order, the per-rank "
                "RNG states and the global batch depend on it)"
            )
        mismatch = state_dict_mismatch(state["model"], self.model.state_dict())
        if mismatch:
            raise ConfigChangedError(
                f"config differs from the run in {path.parent}: its checkpoint was written by a different model "
                f"({'; '.join(mismatch)}). A resume must build the same model (method, critic, embed_dim, encoders); "
                "to train a new one, use --overwrite (overwrite=True) or another out_dir"
            )

    def _check_config(self, path: Path, state: Mapping[str, Any]) -> None:
        """Refuse a resume with a changed schedule unless ``allow_config_change``; record allowed changes."""
        self.config_changes = list(state.get("config_changes") or [])
        changes = config_changes(state.get("config") or {}, self.config)
        saved_batches = state.get("batches_per_epoch")
        if saved_batches is not None and saved_batches != self.batches_per_epoch:
            changes["batches_per_epoch (batch size or data)"] = (saved_batches, self.batches_per_epoch)
        if not changes:
            return
        if not self.config["allow_config_change"]:
            raise ConfigChangedError(
                f"config differs from the run being resumed ({path}): {format_changes(changes)}. Resume "
                "with the run's settings, allow the change with --allow-config-change (allow_config_change=True; "
                "it is recorded), or start a new run in another out_dir"
            )
        self.config_changes.append({"step": int(state["step"]), "changes": {k: list(v) for k, v in changes.items()}})
        warnings.warn(
            f"resuming {path} at step {state['step']} with a changed config: "
            f"{format_changes(changes)} (recorded in the checkpoint's config_changes)",
            stacklevel=3,
        )
