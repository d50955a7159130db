"""Training loop: one main step, then ``critic_steps`` NCE-CLUB critic steps on the cached features.

A cosine schedule with linear warm-up, gradient clipping, AMP, per-step CSV metrics (and
TensorBoard when installed; :mod:`factorcl.metrics_log`), atomic checkpoints and exact resume
(:class:`factorcl.checkpoint.RunState`). :meth:`Trainer.fit` reads as setup -> epoch -> micro-step
-> optimizer step -> after-step.

Two AdamW optimizers, because the two sets of parameters are trained by different losses at
different times. The main one (encoders, heads, lower-bound critics) minimises the objective
``model.loss``, which runs the NCE-CLUB critics frozen; the critic one trains those critics alone on
their own loss ``model.critic_loss()`` (their InfoNCE, maximised) over the features the last
``model.loss`` cached. Under gradient accumulation the main optimizer steps once per window of
``accumulate`` micro-batches, but the critic steps run on every micro-batch: each micro-batch's
forward replaces the cached features, so stepping the critics only at the window's end would train
them on one micro-batch in ``accumulate``. Separate optimizers also give the critics their own
Adam moments, learning rate (``critic_lr``, by default ``CRITIC_LR_FACTOR`` x ``lr``), schedule and
grad scaler, and keep the critic steps from ever touching the main gradients being accumulated.

Under torch.distributed (``torchrun``; see ``docs/distributed.md``): the main step runs through
DistributedDataParallel over ``model.loss`` (``no_sync`` on accumulation micro-batches), with the
NCE-CLUB critics left out of DDP; the critic steps all-reduce (mean) those critics' gradients
themselves. A plain DataLoader is re-built over a DistributedSampler (same per-rank batch size;
:func:`factorcl.distributed.distributed_loader`); rank 0 alone shows progress and writes metrics
and checkpoints; checkpoints keep every rank's RNG states so that a resume with the same world
size continues exactly on every rank.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

import bounds

from . import checkpoint as ckpt_io
from .checkpoint import CHECKPOINT_NAME, METRICS_NAME, SAFETENSORS_NAME, CheckpointWarning
from .device import autocast, resolve_amp, seed_everything, select_device, set_rng_state
from .distributed import (
    any_rank,
    average_gradients,
    broadcast_int,
    check_same_size,
    distributed_loader,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    launched_distributed,
    loader_seed,
    mean_over_ranks,
    wrap_loss_ddp,
)
from .metrics_log import MetricsLog
from .plot import PLOT_NAME, plot_run

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
            broken[key] = (
                f"{term}: NCE-CLUB is {-value:.3f} nats below its own critic's InfoNCE, so the critic is "
                "far from optimal and the upper bound is not one (raise critic_steps or critic_lr)"
            )
    if row.get("shared_remove", 0.0) < -BRACKET_TOLERANCE:
        broken["shared_remove"] = (
            f"shared_remove, an upper bound on a conditional MI (>= 0), reads "
            f"{row['shared_remove']:.3f} nats: its critic is far from optimal"
        )
    return broken


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; training stopped without overwriting the last good checkpoint."""


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


def adamw(params: Any, lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW with the fused kernel where the parameters' device has one, else the default one.

    Why: FactorCL has many small parameter tensors (a critic per term), and the default AdamW's
    per-tensor loop then costs a third of a CPU step; the fused kernel does every tensor in one pass
    (2.7x faster on 144 tensors, 1 CPU thread). Same update rule, so the same training up to rounding.
    """
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    devices = {p.device.type for p in tensors}
    if len(devices) == 1 and devices <= set(_FUSED_DEVICES) and all(p.is_floating_point() for p in tensors):
        try:
            return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel in this torch
            pass
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


#: Device types whose AdamW has a fused kernel (torch >= 2.4 for the CPU one).
_FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu")


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
    # An epoch of this many optimizer steps, the loader re-iterated as needed: for loaders without a
    # length (streams) or to define epochs shorter than the data. None: one pass over a sized loader.
    steps_per_epoch: int | None = None
    max_steps: int | None = None  # the run's length in steps (the schedule spans them); epochs then follow
    progress: bool = True
    tensorboard: bool = True
    wandb_project: str | None = None  # also log to Weights & Biases (pip install "factorcl[wandb]"); needs out_dir
    wandb_name: str | None = None  # the W&B run's display name
    wandb_mode: str | None = None  # "online", "offline", "disabled"; None: wandb's default (WANDB_MODE)
    plot: bool = True  # draw out_dir/training.png (every term's estimate, the evaluations) at the end
    compile: bool = False  # torch.compile the model's loss (opt-in: compiling takes time; little gain on CPU)
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
            "steps_per_epoch": self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
        }
        if self.resume is not None and self.overwrite:
            raise ValueError(
                f"resume={self.resume!r} and overwrite=True exclude each other: resume continues the run "
                "in out_dir, overwrite replaces it"
            )
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


@dataclass
class _Progress:
    """Where a run is: what flows from setup through the epochs to the result."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    skip: int = 0  # batches of ``epoch`` already done (a mid-epoch resume)
    resumed: dict[str, Any] | None = None  # the checkpoint resumed from, until its epoch's iterator is made
    position: tuple[int, int] = (0, 0)  # (epoch, batch_in_epoch) of the latest save point
    epoch_rng: dict[str, Any] | None = None  # the RNG states the current epoch's data order was drawn from
    last_saved_step: int = -1
    checkpoint: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the last step's (a finished run resumed: its last)
    history: list[dict[str, float]] = field(default_factory=list)
    warned: set[str] = field(default_factory=set)  # the broken bounds already warned about
    stop: bool = False
    start: float = 0.0


class _MicroStep(NamedTuple):
    """What one micro-step hands on to the step's metrics row."""

    loss: Tensor
    terms: dict[str, Tensor]
    critic_loss: float  # the last critic step's loss (NaN without critic steps)


class Trainer:
    """Trains a :class:`factorcl.FactorCL` (anything with ``loss(batch)``, ``critic_loss()``,
    ``main_parameters()`` and ``critic_parameters()``) on a data loader.

    ``callbacks`` are called after every optimizer step with that step's metrics row
    (step, epoch, lr, loss, every term, critic_loss, time_s); a :class:`Callback` (anything with
    ``on_step(trainer, row)``) gets the trainer too, so it can read the model, record evaluations
    (:meth:`log_eval`) and stop the run (:meth:`stop`).

    Launched by torchrun (WORLD_SIZE > 1 in the environment), it joins the process group itself
    when the script has not (:func:`factorcl.distributed.init_distributed`) and trains with DDP:
    per-rank batches against global negatives, metrics averaged over ranks (callbacks get the
    same row on every rank), rank-0-only progress, logs and checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: Iterable,
        config: TrainConfig | None = None,
        callbacks: Iterable[Callable[[dict[str, float]], None] | Callback] = (),
        **overrides: Any,
    ) -> None:
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
            loader = distributed_loader(loader, broadcast_int(loader_seed(loader, config.seed), self.device))
        self.loader = loader
        _check_stream(loader)
        self.batches_per_epoch, self.cycle = self._epoch_length(loader, config)
        # Ranks with different numbers of batches would leave the others waiting in a collective.
        check_same_size(self.batches_per_epoch, "number of batches per epoch", self.device)
        if self.batches_per_epoch == 0:
            raise ValueError(
                "loader is empty: the dataset has fewer samples than one batch (check batch_size and drop_last)"
            )
        self.amp = resolve_amp(config.amp, self.device)
        self.out_dir = Path(config.out_dir) if config.out_dir else None
        if config.wandb_project is not None and self.out_dir is None:
            raise ValueError(
                f"wandb_project={config.wandb_project!r} needs out_dir: W&B keeps its run id there, so that a "
                "resume continues the same W&B run"
            )
        self.ddp: nn.Module | None = None
        self._stop_requested = False
        self.run: _Progress | None = None
        self._bar_postfix: dict[str, str] = {}
        self._eval_postfix: dict[str, str] = {}  # the latest evaluation, shown until the next one

    # ------------------------------------------------------------------ for callbacks
    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return 0 if self.run is None else self.run.step

    def stop(self) -> None:
        """Stop after this step (a callback's early stop): the run checkpoints and ends as with ``stop_after``."""
        self._stop_requested = True

    def log_eval(self, metrics: Mapping[str, float]) -> None:
        """Record evaluation metrics at the current step: ``eval.csv``, TensorBoard, W&B (rank 0) and the
        progress bar. Names get an ``eval/`` prefix."""
        if is_main_process():
            self.metrics_log.write_eval(self.step, dict(metrics))
        self._eval_postfix.update({k.removeprefix("eval/"): f"{v:.3f}" for k, v in metrics.items()})
        self.bar.set_postfix({**self._bar_postfix, **self._eval_postfix}, refresh=False)

    def _logged_config(self) -> dict[str, Any]:
        """What W&B records as the run's config: the train settings and the model's, when it has one."""
        config: dict[str, Any] = {"train": asdict(self.cfg)}
        model_config = getattr(self.model, "config", None)
        if hasattr(model_config, "to_dict"):
            try:
                config["model"] = model_config.to_dict()
            except Exception:  # a model config with callables (custom augmentations): the train settings only
                pass
        return config

    @staticmethod
    def _rank_device(device: torch.device) -> torch.device:
        """The device of this rank: "cuda" without an index means the current (LOCAL_RANK's) GPU."""
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl" and device.type != "cuda":
            raise ValueError(
                f"the process group uses the nccl backend, which needs CUDA tensors, but device={device}; "
                "train on device='cuda' (or 'auto'), or initialise the group with backend='gloo'"
            )
        return device

    @staticmethod
    def _epoch_length(loader: Iterable, cfg: TrainConfig) -> tuple[int, bool]:
        """(batches per epoch, whether an epoch takes them from a re-iterated loader rather than one pass)."""
        try:
            length: int | None = len(loader)  # type: ignore[arg-type]
        except TypeError:
            length = None
        if cfg.steps_per_epoch is not None:
            return cfg.steps_per_epoch * cfg.accumulate, True
        if length is not None:
            return length, False
        if cfg.max_steps is not None:
            return cfg.max_steps * cfg.accumulate, True  # the whole run is one epoch of the stream
        raise ValueError(
            "the loader has no length (an IterableDataset or a stream): pass steps_per_epoch "
            "(an epoch's optimizer steps) or max_steps (the run's)"
        )

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.cfg.accumulate)

    @property
    def total_steps(self) -> int:
        if self.cfg.max_steps is not None:
            return self.cfg.max_steps
        return self.cfg.epochs * self.steps_per_epoch

    @property
    def num_epochs(self) -> int:
        """Epochs the run spans: ``epochs``, or as many as ``max_steps`` needs (the last may be cut short)."""
        if self.cfg.max_steps is not None:
            return math.ceil(self.cfg.max_steps / self.steps_per_epoch)
        return self.cfg.epochs

    # ------------------------------------------------------------------------------- fit
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
        """Setup, the epochs, then the last checkpoint and the safetensors export."""
        run = self._setup()
        self.metrics_log = MetricsLog(
            self.out_dir if is_main_process() else None,
            run.step if run.resumed else None,
            self.cfg.tensorboard,
            wandb_project=self.cfg.wandb_project,
            wandb_name=self.cfg.wandb_name,
            wandb_mode=self.cfg.wandb_mode,
            config=self._logged_config(),
        )
        self.bar = tqdm(
            total=self.total_steps,
            initial=run.step,
            disable=not (self.cfg.progress and is_main_process()),
            desc=getattr(getattr(self.model, "objective", None), "name", "train"),
            dynamic_ncols=True,
        )
        run.start = time.perf_counter()
        try:
            while run.epoch < self.num_epochs and run.step < self.total_steps and not run.stop:
                self._epoch(run)
            if run.last_saved_step != run.step:
                # The last checkpoint, or the retry of one that failed (final: a full disk now raises).
                self._save(run, final=True)
            if run.history or not (self.out_dir is None or (self.out_dir / SAFETENSORS_NAME).exists()):
                self.run_state.export_weights(run.step)
            if self.cfg.plot and self.out_dir is not None and is_main_process():
                try:
                    plot_run(self.out_dir)
                except Exception as exc:  # a derived picture: never fail a finished run over it
                    warnings.warn(f"could not draw {self.out_dir / PLOT_NAME}: {exc}", stacklevel=2)
        finally:
            self.bar.close()
            self.metrics_log.close()
            # Drop the DDP wrapper (and its gradient hooks on the model's parameters) with the run.
            self.ddp = None
        return TrainResult(
            step=run.step,
            epoch=run.epoch,
            metrics=run.metrics,
            history=run.history,
            checkpoint=run.checkpoint,
            seconds=time.perf_counter() - run.start,
        )

    # ----------------------------------------------------------------------------- setup
    def _setup(self) -> _Progress:
        """The optimizers, the resume (or the seeding of a new run) and the DDP wrapper; where the run starts."""
        self.model.to(self.device)
        self.model.train()
        self.run_state = self._build_optimizers()
        resume_path = ckpt_io.resolve_resume(self.cfg.resume, self.out_dir)
        ckpt_io.prepare_out_dir(
            self.out_dir,
            resume_path is not None,
            self.cfg.overwrite,
            self.device,
            resume_asked=self.cfg.resume is not None,
        )
        resumed = self.run_state.restore(resume_path) if resume_path is not None else None
        # After the restore (DDP broadcasts rank 0's parameters at wrap time; they already agree).
        self.ddp = wrap_loss_ddp(
            self.model,
            exclude=self.critic_params,
            device=self.device,
            find_unused_parameters=self.cfg.find_unused_parameters,
        )
        self.forward = self.ddp if self.ddp is not None else self.model.loss
        if self.cfg.compile:
            self.forward = torch.compile(self.forward)
        if resumed is None:
            if self.cfg.seed is not None:
                # seed + rank: ranks must draw different augmentations (the model's initial weights
                # are made before fit and DDP makes them rank 0's anyway).
                seed_everything(self.cfg.seed + get_rank())
            return _Progress()
        run = _Progress(
            step=resumed["step"],
            epoch=resumed["epoch"],
            skip=resumed["batch_in_epoch"],
            resumed=resumed,
            last_saved_step=resumed["step"],
            checkpoint=resume_path,
            metrics=dict(resumed.get("metrics") or {}),
        )
        if run.skip >= self.batches_per_epoch:
            run.epoch, run.skip = run.epoch + 1, 0
        run.position = (run.epoch, run.skip)
        if run.skip == 0:
            # Resuming at an epoch boundary: the next epoch starts from the RNG states saved with
            # the checkpoint (mid-epoch resumes restore theirs when the epoch's iterator is made).
            self.run_state.restore_rng(resumed)
        return run

    def _build_optimizers(self) -> ckpt_io.RunState:
        """The two optimizers (see the module docstring), their schedules and grad scalers, as the run's state."""
        cfg = self.cfg
        self.main_params = list(self.model.main_parameters())
        self.critic_params = list(self.model.critic_parameters())
        self.main_opt = adamw(self._main_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.critic_opt = (
            adamw(self.critic_params, lr=cfg.critic_lr or CRITIC_LR_FACTOR * cfg.lr, weight_decay=cfg.weight_decay)
            if self.critic_params and cfg.critic_steps > 0
            else None
        )
        self.main_sched = torch.optim.lr_scheduler.LambdaLR(self.main_opt, _lr_lambda(cfg, self.total_steps))
        self.critic_sched = (
            torch.optim.lr_scheduler.LambdaLR(self.critic_opt, _lr_lambda(cfg, self.total_steps))
            if self.critic_opt
            else None
        )
        use_scaler = self.amp == "fp16"
        self.main_scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.critic_scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        return ckpt_io.RunState(
            model=self.model,
            loader=self.loader,
            config=asdict(cfg),
            batches_per_epoch=self.batches_per_epoch,
            main_opt=self.main_opt,
            main_sched=self.main_sched,
            main_scaler=self.main_scaler,
            critic_opt=self.critic_opt,
            critic_sched=self.critic_sched,
            critic_scaler=self.critic_scaler,
            out_dir=self.out_dir,
            device=self.device,
        )

    def _main_groups(self) -> list[dict[str, Any]]:
        """The main optimizer's parameter groups: the encoders at ``encoder_lr`` (when set), the rest at ``lr``."""
        if self.cfg.encoder_lr is None or not hasattr(self.model, "encoder_parameters"):
            return [{"params": self.main_params}]
        encoder_ids = {id(p) for p in self.model.encoder_parameters()}
        encoders = [p for p in self.main_params if id(p) in encoder_ids]
        rest = [p for p in self.main_params if id(p) not in encoder_ids]
        return [g for g in ({"params": encoders, "lr": self.cfg.encoder_lr}, {"params": rest}) if g["params"]]

    # ----------------------------------------------------------------------------- epoch
    def _epoch(self, run: _Progress) -> None:
        """One epoch (its rest, after a mid-epoch resume); then its checkpoint when checkpoints are per epoch."""
        iterator = self._epoch_iterator(run)
        self.main_opt.zero_grad(set_to_none=True)
        for index, batch in enumerate(iterator, start=run.skip):
            boundary = (index + 1) % self.cfg.accumulate == 0 or index + 1 == self.batches_per_epoch
            micro = self._micro_step(run, index, batch, boundary)
            if not boundary:
                continue
            lr = self._optimizer_step(run)
            self._after_step(run, self._metrics_row(run, lr, micro), index, iterator)
            if run.stop:
                return
        run.position = (run.epoch, self.batches_per_epoch)
        if self.cfg.checkpoint_every is None and run.last_saved_step != run.step:
            self._save(run)
        run.epoch, run.skip = run.epoch + 1, 0

    def _epoch_iterator(self, run: _Progress) -> Iterator:
        """The epoch's batch iterator, past the batches a mid-epoch resume already did."""
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(run.epoch)
        dataset = getattr(self.loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(run.epoch)  # a stream (factorcl.clip.ShardDataset) orders its shards by epoch
        # A stream that can start mid-epoch skips the done batches itself, without decoding them;
        # only when an epoch is one pass over it (re-iterated passes would each skip again).
        fast_skip = run.skip if hasattr(dataset, "start_at") and not self.cycle else 0
        if fast_skip:
            dataset.start_at(fast_skip)
        # The data order of an epoch is drawn when its iterator is made (from the global RNG or the
        # loader's own generator): keep those states so a resumed run makes the same iterator, then
        # skips the batches already done.
        resumed = run.resumed if run.skip else None
        if resumed is not None:
            ckpt_io.set_epoch_rng_state(self.loader, resumed["epoch_rng"])
        run.epoch_rng = ckpt_io.epoch_rng_state(self.loader)
        if self.cycle:
            pass_seed = (0 if self.cfg.seed is None else self.cfg.seed) * 1_000_003 + run.epoch * 1_009
            iterator = _take(self.loader, self.batches_per_epoch - fast_skip, pass_seed)
        else:
            iterator = iter(self.loader)
        if fast_skip:
            dataset.start_at(0)  # the workers have read it: later epochs start at their beginning
        for _ in range(run.skip - fast_skip):
            next(iterator)
        if resumed is not None:
            set_rng_state(resumed["rng"])
        run.resumed = None
        return iterator

    # ------------------------------------------------------------------------ micro-step
    def _micro_step(self, run: _Progress, index: int, batch: Any, boundary: bool) -> _MicroStep:
        """Forward, NaN check and backward of one micro-batch (accumulated), then the critic steps on it."""
        batch = to_device(batch, self.device)
        # DDP all-reduces gradients in the backward pass: only on the optimizer step's micro-batch.
        sync = self.ddp.no_sync() if self.ddp is not None and not boundary else contextlib.nullcontext()
        with sync:
            with autocast(self.device, self.amp):
                loss, terms = self.forward(batch)
            if self._nonfinite(loss):
                raise self._nonfinite_loss(run, index, batch, loss, terms)
            self.main_scaler.scale(loss / self.cfg.accumulate).backward()
        critic_loss = self._critic_steps() if self.critic_opt is not None else float("nan")
        return _MicroStep(loss, terms, critic_loss)

    def _nonfinite(self, loss: Tensor) -> bool:
        """Whether the loss is NaN/inf here or on any rank (so that every rank stops together)."""
        bad = not bool(torch.isfinite(loss.detach()))
        return any_rank(bad, self.device) if is_distributed() else bad

    def _nonfinite_loss(
        self, run: _Progress, index: int, batch: Any, loss: Tensor, terms: Mapping[str, Tensor]
    ) -> NonFiniteLossError:
        """The error for a NaN/inf main loss: where, the term estimates, and the likely cause."""
        values = {k: round(float(v), 4) for k, v in terms.items()}
        where = f" on rank {get_rank()} (or another rank)" if is_distributed() else ""
        inputs = _nonfinite_inputs(batch)
        cause = (
            f"The inputs are not finite: {'; '.join(inputs)}. Fix or drop those rows"
            if inputs
            else "Lower the learning rate, or set grad_clip"
        )
        return NonFiniteLossError(
            f"loss is {float(loss.detach())}{where} at step {run.step + 1} (epoch {run.epoch}, "
            f"batch {index}); term estimates {values}. Training stopped and {self.run_state.last_good()}. "
            f"{cause}."
        )

    def _critic_steps(self) -> float:
        """``critic_steps`` updates of the NCE-CLUB critics on the cached features; returns the last loss."""
        value = float("nan")
        for _ in range(self.cfg.critic_steps):
            with autocast(self.device, self.amp):
                loss = self.model.critic_loss()
            if not loss.requires_grad:
                # Nothing left to train on this batch (the proposals of a lower bound are fitted on the
                # first step); every rank stops at the same step. A scaler step without gradients fails.
                break
            if self._nonfinite(loss):
                raise NonFiniteLossError(
                    f"the critic loss is {float(loss.detach())}"
                    f"{' (or not finite on another rank)' if is_distributed() else ''}; "
                    f"{self.run_state.last_good()}"
                )
            self.critic_scaler.scale(loss).backward()
            # The critics are outside DDP (model.loss runs them frozen): average their gradients here.
            average_gradients(self.critic_params)
            self._clip_and_step(self.critic_opt, self.critic_scaler, self.critic_params)
            value = float(loss.detach())
        return value

    # -------------------------------------------------------------------- optimizer step
    def _optimizer_step(self, run: _Progress) -> float:
        """The main optimizer's step at the end of an accumulation window, and both schedules'; returns its lr."""
        self._clip_and_step(self.main_opt, self.main_scaler, self.main_params)
        lr = self.main_sched.get_last_lr()[0]
        self.main_sched.step()
        if self.critic_sched is not None:
            self.critic_sched.step()
        run.step += 1
        return lr

    def _clip_and_step(self, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params: list) -> None:
        if self.cfg.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------------ after-step
    def _metrics_row(self, run: _Progress, lr: float, micro: _MicroStep) -> dict[str, float]:
        """The step's metrics row, its estimates averaged over ranks; also kept as ``run.metrics``."""
        stacked = torch.stack(
            [v.float() for v in micro.terms.values()] + [torch.tensor(micro.critic_loss, device=micro.loss.device)]
        )
        # Each rank's estimates are means over its rows: their mean over ranks is the global batch's.
        values = mean_over_ranks(stacked).tolist()
        run.metrics = dict(zip(micro.terms.keys(), values[:-1]))
        return {
            "step": run.step,
            "epoch": run.epoch,
            "lr": lr,
            **run.metrics,
            "critic_loss": values[-1],
            "time_s": time.perf_counter() - run.start,
        }

    def _after_step(self, run: _Progress, row: dict[str, float], index: int, iterator: Iterator) -> None:
        """Log the row, warn about broken bounds, call the callbacks; then checkpoint (and stop) when due."""
        run.history.append(row)
        if is_main_process():
            self.metrics_log.write(row)
            for key, why in check_bounds(row).items():
                if key not in run.warned:  # once per quantity and run: a warning, not a flood
                    run.warned.add(key)
                    warnings.warn(f"step {run.step}: {why}", bounds.BrokenBracketWarning, stacklevel=4)
        self.bar.update(1)
        self._bar_postfix = {k: f"{v:.3f}" for k, v in run.metrics.items() if "/" not in k}
        self.bar.set_postfix({**self._bar_postfix, **self._eval_postfix}, refresh=False)
        self.run = run
        for callback in self.callbacks:
            on_step = getattr(callback, "on_step", None)
            if on_step is not None:
                on_step(self, row)  # a Callback: it gets the trainer (model, log_eval, stop)
            else:
                callback(row)
        due = self.cfg.checkpoint_every is not None and run.step % self.cfg.checkpoint_every == 0
        requested, self._stop_requested = self._stop_requested, False  # a callback's trainer.stop()
        run.stop = (
            requested
            or (self.cfg.stop_after is not None and run.step >= self.cfg.stop_after)
            or (self.cfg.max_steps is not None and run.step >= self.cfg.max_steps)
        )
        if due or run.stop:
            if index + 1 == self.batches_per_epoch:
                # Exhaust the finished iterator first: samplers draw from their generator on
                # exhaustion, as an uninterrupted run's epoch does.
                next(iterator, None)
            run.position = (run.epoch, index + 1)
            self._save(run)

    def _save(self, run: _Progress, final: bool = False) -> None:
        """Checkpoint at ``run.position``; a full disk before the last checkpoint leaves ``run`` as it was.

        The checkpoint of the last step (or of ``stop_after``) is the last one: there a full disk raises.
        """
        final = final or run.stop or run.step >= self.total_steps
        saved = self.run_state.save(run.step, *run.position, run.epoch_rng, run.metrics, final=final)
        if saved is not None:
            run.checkpoint, run.last_saved_step = saved, run.step


_NOTHING = object()


def _check_stream(loader: Iterable) -> None:
    """A stream that splits itself over ranks and positions itself per epoch must be able to."""
    dataset = getattr(loader, "dataset", None)
    if not hasattr(dataset, "start_at"):
        return
    if getattr(loader, "persistent_workers", False):
        raise ValueError(
            f"the loader of a {type(dataset).__name__} has persistent_workers=True: its workers would never see "
            "the epoch or the resume position; use persistent_workers=False (factorcl.clip.make_shard_loader does)"
        )
    world = getattr(dataset, "world_size", None)
    if world is not None and world != get_world_size():
        raise ValueError(
            f"the {type(dataset).__name__} was made for {world} process(es) but this run has {get_world_size()}: "
            "every rank would read the same shards; make it after factorcl.distributed.init_distributed()"
        )


def _take(loader: Iterable, count: int, pass_seed: int) -> Iterator:
    """The next ``count`` batches of ``loader``, iterating it again whenever it ends.

    The first iterator is made now, not at the first batch: workers start (and read the dataset's
    epoch and resume position) when it is made. A later pass's iterator is made under the global
    RNG seeded with ``pass_seed + pass``: a loader without its own generator draws its order (and
    its workers' seeds) from the global RNG, whose state there depends on the training steps, which
    a resumed run's skipping does not take. Seeded, the pass is the same in both.
    """
    iterator = iter(loader)

    def batches() -> Iterator:
        nonlocal iterator
        done, passes = 0, 0
        while done < count:
            got = 0
            for batch in iterator:
                yield batch
                got += 1
                done += 1
                if done >= count:
                    return
            if got == 0:
                raise ValueError("the loader yielded no batches (an empty dataset, or fewer samples than one batch)")
            passes += 1
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(pass_seed + passes)
                # The first batch too: a sampler draws its order when the first batch is fetched.
                fresh = iter(loader)
                first = next(fresh, _NOTHING)
            iterator = fresh if first is _NOTHING else itertools.chain([first], fresh)

    return batches()


class Callback:
    """Base of the objects the Trainer calls after every optimizer step with itself and the step's row.

    The trainer gives ``trainer.model``, ``trainer.step``, ``trainer.log_eval(metrics)`` and
    ``trainer.stop()``. A plain function in ``callbacks`` gets the row alone.
    """

    def on_step(self, trainer: Trainer, row: dict[str, float]) -> None:
        """Called after each optimizer step (on every rank, with the same row)."""


def fit(
    model: nn.Module,
    loader: Iterable,
    config: TrainConfig | None = None,
    callbacks: Iterable[Callable[[dict[str, float]], None] | Callback] = (),
    **overrides: Any,
) -> TrainResult:
    """Train ``model`` on ``loader``; keywords are :class:`TrainConfig` fields (epochs, lr, critic_steps, ...).

    ``callbacks`` are called with each step's metrics row.
    """
    return Trainer(model, loader, config, callbacks=callbacks, **overrides).fit()


__all__ = [
    "CHECKPOINT_NAME",
    "Callback",
    "METRICS_NAME",
    "SAFETENSORS_NAME",
    "CheckpointWarning",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "distributed_loader",
    "fit",
    "to_device",
]
