"""One-call continued pretraining of an open_clip model with a FactorCL method: train, export, probe.

The model around the towers is :mod:`factorcl.clip.model` (x1 = caption tokens, x2 = images).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint as ckpt_io
from ..device import resolve_amp, select_device
from ..distributed import barrier, get_rank, is_main_process
from ..jsonio import write_json
from ..objectives import get_objective
from ..train import fit
from .evaluate import clip_features, factorcl_features, probe_loaders
from .export import export_clip_factorcl
from .held_out import eval_table, evaluate_towers
from .loading import load_clip
from .model import CONDITIONINGS, CRITICS, SHARED_CRITICS, ClipFactorCLConfig, build_clip_factorcl
from .sources import open_clip_data

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
    val_data: str | os.PathLike | None = None,
    train_num_samples: int | None = None,
    probe_samples: int = 10000,
    evaluate: bool = True,
    templates: str | os.PathLike | Sequence[str] | None = None,
    eval_every: int | None = None,
    eval_samples: int = 1000,
    max_steps: int | None = None,
    compile: bool = False,
    wandb_project: str | None = None,
    wandb_name: str | None = None,
    train_options: Mapping[str, Any] | None = None,
    eval_pairs: int | None = 10000,
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

    ``data`` may also be webdataset shards (``shards/{00000..00099}.tar``, a list, or a folder;
    :mod:`factorcl.clip.sources`): ``train_num_samples`` is then the epoch length, ``val_data``
    the held-out shards (default: the last ``test_fraction`` of the shards) and ``probe_samples``
    the most training pairs the linear probe fits on. A resume must keep the split (recorded in
    ``out_dir/train/split.json``; a different one is a ValueError unless ``allow_config_change``).

    With ``evaluate`` (default), zero-shot top-1/top-5 from class-name prompts (``templates``:
    ``"openai"`` (default), ``"simple"``, a file or a list) and retrieval R@1/5/10 both ways run
    on the held-out pairs, for the pretrained towers before training and for the trained ones
    after: ``results["eval"]``. ``eval_every`` runs a held-out evaluation (k-NN probe, zero-shot,
    retrieval on at most ``eval_samples`` pairs) every so many steps during training; the final
    evaluations use at most ``eval_pairs`` held-out pairs (None: all)
    (:class:`factorcl.clip.eval_callback.ClipEvalCallback`), into ``train/eval.csv``.
    ``max_steps``, ``compile``, ``wandb_project``/``wandb_name`` and ``train_options`` (any other
    :class:`factorcl.TrainConfig` field) go to the trainer.
    """
    out_dir = Path(out_dir)
    dev = select_device(device)
    torch.manual_seed(seed)  # the heads' and critics' initialisation
    bundle = load_clip(model, pretrained=pretrained, checkpoint=checkpoint, config=config)
    source = open_clip_data(
        data,
        bundle,
        batch_size=batch_size,
        seed=seed,
        test_fraction=test_fraction,
        num_workers=num_workers,
        skip_missing=skip_missing,
        image_column=image_column,
        caption_column=caption_column,
        label_column=label_column,
        val_data=val_data,
        train_num_samples=train_num_samples,
        probe_samples=probe_samples,
    )
    given = build.get("model")
    objective = get_objective(build.get("method", getattr(given, "method", None) or "factorcl-ssl"))
    if objective.needs_labels:  # before the config is made: it refuses a supervised method without classes
        if source.num_classes is None:
            raise ValueError(f"method {objective.name!r} is supervised but {data} has no {label_column!r} labels")
        build = {**build, "num_classes": source.num_classes}
    cfg = ClipFactorCLConfig(**build)
    split = source.split
    factor = build_clip_factorcl(bundle, cfg)
    cfg = cfg.with_model(conditioning=factor.conditioning)  # record the effective one
    eval_amp = resolve_amp(amp, dev)
    chosen = _templates(templates)

    def evaluate_held_out(extract: Callable[..., Any]) -> dict[str, Any]:
        """Zero-shot and retrieval of the towers ``extract`` runs, on at most ``eval_pairs`` held-out pairs."""
        loader = source.held_out(eval_pairs)  # type: ignore[misc]
        return evaluate_towers(extract, loader, bundle, source.classes, chosen, dev, eval_amp, progress)

    train_dir = out_dir / "train"
    resuming = ckpt_io.resolve_resume(resume, train_dir) is not None  # on every rank: it may be collective
    # What a resume must keep: the split (else held-out pairs could be trained on) and the
    # pretrained towers' evaluation, which only a new run can measure.
    evaluation: dict[str, Any] = {}
    if resuming:
        _check_same_split(train_dir / SPLIT_NAME, split, allow_config_change)
        if (train_dir / PRETRAINED_EVAL_NAME).is_file():
            evaluation["pretrained"] = json.loads((train_dir / PRETRAINED_EVAL_NAME).read_text(encoding="utf-8"))
    writable = is_main_process() and not resuming and (overwrite or not ckpt_io.existing_run_files(train_dir))
    if writable:  # a new run (fit refuses an existing one without overwrite before it changes anything)
        write_json(train_dir / SPLIT_NAME, split)
        (train_dir / PRETRAINED_EVAL_NAME).unlink(missing_ok=True)
    if evaluate and source.held_out is not None and is_main_process() and not resuming:
        # The pretrained towers, before training changes them in place.
        evaluation["pretrained"] = evaluate_held_out(partial(clip_features, bundle))
        if writable:
            write_json(train_dir / PRETRAINED_EVAL_NAME, evaluation["pretrained"])
    callbacks = []
    if eval_every:
        from .eval_callback import ClipEvalCallback

        if source.held_out is None:
            raise ValueError(f"eval_every needs a held-out set, and there is none: {source.no_held_out}")
        callbacks.append(
            ClipEvalCallback(source.held_out, bundle, source.classes, chosen, every=eval_every, max_pairs=eval_samples)
        )
    result = fit(
        factor,
        source.train_loader,
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
        callbacks=callbacks,
        max_steps=max_steps,
        compile=compile,
        wandb_project=wandb_project,
        wandb_name=wandb_name,
        **(train_options or {}),
    )
    if not is_main_process():
        barrier()  # under torchrun every rank trains; rank 0 alone exports, probes and writes
        return {"rank": get_rank(), "train": {"steps": result.step, "seconds": result.seconds}}
    exported = export_clip_factorcl(factor, bundle, out_dir / "export", cfg, split=split)
    summary = {**source.summary, "skipped": source.skipped()}
    results: dict[str, Any] = {
        "data": summary,
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
            "epochs": epochs,  # as given; max_steps, when set, decided the length
            "max_steps": max_steps,
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
    if evaluate and source.held_out is not None:
        start = time.perf_counter()
        evaluation["trained"] = evaluate_held_out(partial(factorcl_features, factor))
        results["eval"] = {**evaluation, "templates": _template_record(templates, chosen)}
        results["eval_seconds"] = time.perf_counter() - start
        if summary.get("test") is None:
            summary["test"] = evaluation["trained"]["pairs"]
        if log is not None:
            for line in eval_table(evaluation):
                log(line)
    else:
        results["eval"] = None
        results["eval_skipped"] = "evaluate=False" if not evaluate else source.no_held_out
    if probe and source.held_out is not None:
        if log is not None:
            n_train = summary["train"] if source.kind == "captions" else min(summary["train"], probe_samples)
            n_test = "the" if summary["test"] is None else summary["test"]  # shards: counted as they are read
            log(f"linear probe: features of {n_train} train and {n_test} held-out pairs")
        start = time.perf_counter()
        results["probe"] = probe_loaders(
            partial(factorcl_features, factor),
            source.probe_train(),
            source.held_out(),
            dev,
            eval_amp,
            progress,
            source.num_classes,
        )
        results["probe_seconds"] = time.perf_counter() - start
    else:
        results["probe"] = None
        results["probe_skipped"] = "probe=False" if not probe else source.no_held_out
    if source.num_classes is None and probe and source.held_out is not None:
        results["probe"], results["probe_skipped"] = None, "the data has no labels"
    write_json(out_dir / "results.json", results)
    barrier()
    return results


SPLIT_NAME = "split.json"  # in out_dir/train: the split a resume must keep
PRETRAINED_EVAL_NAME = "pretrained_eval.json"  # in out_dir/train: the towers' evaluation before training


def _check_same_split(path: Path, split: Mapping[str, Any], allow_change: bool) -> None:
    """A resume must hold out the pairs the run held out: else it trains on them, or scores on trained ones."""
    if not path.is_file():
        return  # a run from before the split was recorded there
    recorded = json.loads(path.read_text(encoding="utf-8"))
    current = json.loads(json.dumps(split))  # the same JSON types as the recorded one (lists, not tuples)
    changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    if not changed:
        return
    if allow_change:
        warnings.warn(
            f"resuming with a different split ({', '.join(changed)}); allowed by allow_config_change", stacklevel=3
        )
        return
    detail = "; ".join(f"{k}: {recorded.get(k)!r} at the start, {current.get(k)!r} now" for k in changed[:3])
    raise ValueError(
        f"the run in {path.parent} was trained with another split ({detail}): resuming would train on pairs it "
        "held out, or score on pairs it trained on. Use the original --test-fraction/--val-data/--seed/"
        "--train-num-samples, or pass --allow-config-change"
    )


def _templates(templates: str | os.PathLike | Sequence[str] | None) -> list[Any]:
    """The prompt templates: open_clip's (``"openai"``, ``"simple"``, default ``"openai"``), a file, or a list."""
    from .zeroshot import TEMPLATE_KINDS, default_templates, read_templates

    if templates is None:
        return default_templates("openai")
    if isinstance(templates, str) and templates in TEMPLATE_KINDS:
        return default_templates(templates)
    if isinstance(templates, (str, os.PathLike)):
        return read_templates(templates)
    return list(templates)


def _template_record(templates: Any, chosen: Sequence[Any]) -> dict[str, Any]:
    name = "openai" if templates is None else templates if isinstance(templates, (str, os.PathLike)) else "list"
    return {"source": str(name), "count": len(chosen)}


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
