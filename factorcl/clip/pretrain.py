"""One-call continued pretraining of an open_clip model with a FactorCL method: train, export, probe.

The model around the towers is :mod:`factorcl.clip.model` (x1 = caption tokens, x2 = images).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from ..device import resolve_amp, select_device
from ..distributed import barrier, get_rank, is_main_process
from ..jsonio import write_json
from ..objectives import get_objective
from ..train import fit
from .data import ImageCaptionDataset, make_loader
from .evaluate import factorcl_features, probe_loaders
from .export import export_clip_factorcl
from .loading import load_clip
from .model import CONDITIONINGS, CRITICS, SHARED_CRITICS, ClipFactorCLConfig, build_clip_factorcl
from .split import data_summary, held_out_split, split_record

__all__ = [
    "CONDITIONINGS",
    "CRITICS",
    "SHARED_CRITICS",
    "ClipFactorCLConfig",
    "build_clip_factorcl",
    "pretrain_clip",
    "train_summary",
]


def pretrain_clip(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 1e-5,
    tower_lr: float | None = None,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    critic_steps: int = 3,
    amp: str | None = "auto",
    accumulate: int = 1,
    grad_clip: float | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    allow_config_change: bool = False,
    checkpoint_every: int | None = None,
    stop_after: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    test_fraction: float = 0.2,
    probe: bool = True,
    skip_missing: bool = False,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    image_column: str = "image",
    caption_column: str = "caption",
    label_column: str | None = "label",
    **build: Any,
) -> dict[str, Any]:
    """Continued pretraining of an open_clip model with a FactorCL method, in one call.

    Loads the model (see :func:`load_clip`), reads the image-caption file, holds out a
    ``test_fraction`` split (stratified, seeded; also with ``probe=False``, so resumed runs train
    on the same rows) when it has labels, records it (:mod:`factorcl.clip.split`: settings and
    SHA-256s of the data file and of the held-out rows, in the export and in ``results.json``, so
    that ``factorcl clip probe --export`` probes the same held-out rows), trains on the rest with
    :func:`factorcl.fit` (checkpoints and ``metrics.csv`` in ``out_dir/train``; ``resume="auto"``
    continues from there), exports the towers in open_clip's format plus the heads to
    ``out_dir/export`` (:func:`export_clip_factorcl`), runs the linear probe (train split ->
    held-out split) and writes ``out_dir/results.json``. ``build`` takes
    :class:`ClipFactorCLConfig` fields (method, shared_critic, image_aug, lock_text, ...).
    ``overwrite`` lets training replace an earlier run's checkpoint in ``out_dir/train``;
    ``allow_config_change`` lets a resume change the schedule (recorded in the checkpoint)
    (:class:`factorcl.TrainConfig`). ``log`` (e.g. ``print``) gets the training summary
    (:func:`train_summary`) as soon as training and export are done, before the probe starts.
    Returns the results dict.
    """
    out_dir = Path(out_dir)
    dev = select_device(device)
    torch.manual_seed(seed)  # the heads' and critics' initialisation
    bundle = load_clip(model, pretrained=pretrained, checkpoint=checkpoint, config=config)
    dataset = ImageCaptionDataset(
        data,
        bundle.preprocess_cfg,
        skip_missing=skip_missing,
        image_column=image_column,
        caption_column=caption_column,
        label_column=label_column,
    )
    given = build.get("model")
    objective = get_objective(build.get("method", getattr(given, "method", None) or "factorcl-ssl"))
    if objective.needs_labels:  # before the config is made: it refuses a supervised method without classes
        if dataset.num_classes is None:
            raise ValueError(f"method {objective.name!r} is supervised but {data} has no {label_column!r} column")
        build = {**build, "num_classes": dataset.num_classes}
    cfg = ClipFactorCLConfig(**build)
    # The held-out split does not depend on `probe`, so that a run resumed without probing trains
    # on the same rows; test_fraction=0 trains on every row.
    train_idx, test_idx = held_out_split(dataset, test_fraction, seed)
    split = split_record(dataset, test_idx, seed, test_fraction, skip_missing)
    train_set = Subset(dataset, train_idx)
    factor = build_clip_factorcl(bundle, cfg)
    cfg = cfg.with_model(conditioning=factor.conditioning)  # record the effective one
    loader = make_loader(train_set, bundle.tokenizer, batch_size, shuffle=True, num_workers=num_workers, seed=seed)
    result = fit(
        factor,
        loader,
        epochs=epochs,
        lr=lr,
        encoder_lr=tower_lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        critic_steps=critic_steps,
        amp=amp,
        accumulate=accumulate,
        grad_clip=grad_clip,
        device=str(dev),
        seed=seed,
        out_dir=str(out_dir / "train"),
        resume=resume,
        checkpoint_every=checkpoint_every,
        stop_after=stop_after,
        progress=progress,
        overwrite=overwrite,
        allow_config_change=allow_config_change,
    )
    if not is_main_process():
        barrier()  # under torchrun every rank trains; rank 0 alone exports, probes and writes
        return {"rank": get_rank(), "train": {"steps": result.step, "seconds": result.seconds}}
    exported = export_clip_factorcl(factor, bundle, out_dir / "export", cfg, split=split)

    results: dict[str, Any] = {
        "data": data_summary(data, dataset, train_idx, test_idx),
        "model": {
            "name": bundle.name,
            "source": bundle.source,
            "embed_dim": bundle.embed_dim,
            "image_size": list(bundle.image_size),
        },
        "split": split,
        "config": cfg.to_dict(),
        "modalities": {"x1": "text", "x2": "image"},
        "train": {
            "steps": result.step,
            "epochs": epochs,
            "lr": lr,
            "tower_lr": tower_lr,
            "batch_size": batch_size,
            "accumulate": accumulate,
            "amp": amp,
            "seconds": result.seconds,
            "final_metrics": result.metrics,
            "checkpoint": None if result.checkpoint is None else str(result.checkpoint),
        },
        "export": {k: str(v) for k, v in exported.items()},
    }
    if log is not None:
        for line in train_summary(results):
            log(line)
    if probe and test_idx:
        if log is not None:
            log(f"linear probe: features of {len(train_idx)} train and {len(test_idx)} held-out pairs")
        start = time.perf_counter()
        eval_kwargs = dict(batch_size=batch_size, num_workers=num_workers)
        train_eval = make_loader(train_set, bundle.tokenizer, shuffle=False, **eval_kwargs)
        test_eval = make_loader(Subset(dataset, test_idx), bundle.tokenizer, shuffle=False, **eval_kwargs)
        results["probe"] = probe_loaders(
            partial(factorcl_features, factor),
            train_eval,
            test_eval,
            dev,
            _eval_amp(amp, dev),
            progress,
            dataset.num_classes,
        )
        results["probe_seconds"] = time.perf_counter() - start
    else:
        results["probe"] = None
        results["probe_skipped"] = (
            "probe=False"
            if not probe
            else f"{data} has no {label_column!r} column"
            if dataset.num_classes is None
            else "test_fraction is 0"
        )
    write_json(out_dir / "results.json", results)
    barrier()
    return results


def train_summary(results: Mapping[str, Any]) -> list[str]:
    """The lines that report a finished training run of :func:`pretrain_clip`: skipped rows, steps, metrics, export."""
    train, export = results["train"], results["export"]
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in train["final_metrics"].items())
    lines = [
        f"trained {train['steps']} steps in {train['seconds']:.1f} s; final metrics {metrics}",
        f"open_clip checkpoint: {export['checkpoint']} (heads: {export['heads']})",
    ]
    skipped = {k: n for k, n in results["data"]["skipped"].items() if n}
    if skipped:
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in skipped.items())
        lines.insert(0, f"skipped rows of {results['data']['path']}: {counts}")
    return lines


def _eval_amp(amp: str | None, device: torch.device) -> str | None:
    return resolve_amp(amp, device)
