"""Config-driven pipeline: data -> encoders -> FactorCL -> fit -> linear probe on the test split.

:func:`run_config` is what ``factorcl train --config run.yaml`` and ``benchmarks/multibench.py``
run. It writes into ``out_dir``:

- ``config.yaml``: the validated config with absolute data paths (enough to rebuild the model);
- ``checkpoint.pt`` and ``metrics.csv``: written by :func:`factorcl.fit`;
- ``results.json``: test accuracy of the linear probe on the whole representation and on each
  part (S, U1, U2 for factorised methods; Z1, Z2 otherwise), data summary, training summary.

Probe protocol (:mod:`factorcl.probe`, on the training device): features of the frozen model
(eval mode); a multinomial logistic regression is fit on the TRAIN split's features, its L2
strength chosen by accuracy on the VALID split (or on a held-out fraction of train,
``probe.select: val_fraction``), and it is scored on the TEST split.
The published code scored one experiment on its training data; nothing here ever does.

:func:`probe_run` (``factorcl probe``) rebuilds the model from ``config.yaml``, loads the
checkpoint and re-runs the same evaluation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RunConfig, load_config, resolve_data_path, save_config
from .data.arrays import SplitDataset
from .jsonio import write_json

CONFIG_NAME = "config.yaml"
RESULTS_NAME = "results.json"
PROBE_RESULTS_NAME = "probe_results.json"


# ------------------------------------------------------------------------------------- building
def build_data(config: RunConfig) -> SplitDataset:
    """Load the data of a config (relative paths: from the current folder, else from the config's folder)."""
    d, base = config.data, config.base_dir()

    def path(p: Any) -> Any:
        return resolve_data_path(d.kind, p, base)

    if d.kind == "multibench":
        from .data.multibench import load_multibench

        return load_multibench(
            path(d.path), dataset=d.dataset, modalities=d.modalities or ("vision", "text"), zero_label=d.zero_label
        )
    if d.kind == "mimic":
        from .data.mimic import load_mimic

        return load_mimic(
            path(d.path),
            task=d.task,
            modalities=d.modalities or ("static", "timeseries"),
            splits=d.splits,
            seed=10 if d.split_seed is None else d.split_seed,
        )
    if d.kind == "shards":
        from .data.shards import load_array_shards

        seed = config.train_value("seed")
        return load_array_shards(
            path(d.path),
            batch_size=int(config.train_value("batch_size")),
            train_num_samples=d.train_num_samples,
            probe_samples=d.probe_samples,
            seed=0 if seed is None else int(seed),
            num_workers=int(config.train_value("num_workers")),
        )
    if d.kind == "arrays":
        from .data.arrays import load_arrays

        return load_arrays(path(d.path), splits=d.splits, seed=0 if d.split_seed is None else d.split_seed)
    from .data.synthetic import make_synthetic

    syn = make_synthetic(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.synthetic.items()})
    return SplitDataset(
        syn.split("train"),
        syn.split("val"),
        syn.split("test"),
        name="synthetic",
        num_classes=int(syn.y.max()) + 1,  # 2, or 4 for label two_bits
        info={"config": {k: v for k, v in vars(syn.config).items()}},
    )


def build_model(config: RunConfig, data: SplitDataset, for_eval: bool = False) -> nn.Module:
    """The FactorCL model of a config for this data (encoders sized from the data's input shapes).

    ``for_eval`` builds timm encoders without downloading pretrained weights (a checkpoint will
    overwrite them).
    """
    from .encoders import build_encoder, normalize_spec
    from .model import FactorCL
    from .objectives import get_objective

    m = config.model
    objective = get_objective(m.method)
    shape1, shape2 = data.input_shapes
    specs = []
    for i in (1, 2):
        spec = normalize_spec(getattr(config.encoders, f"x{i}"), f"encoders.x{i}")
        if for_eval and spec["type"] == "timm":
            spec["pretrained"] = False
        specs.append(spec)
    enc1, dim1 = build_encoder(specs[0], shape1, "encoders.x1")
    enc2, dim2 = build_encoder(specs[1], shape2, "encoders.x2")
    aug1, aug2 = m.build_augments(shape1, shape2) if objective.needs_views else (None, None)
    num_classes = None
    if objective.supervised:
        if not data.has_labels or data.num_classes is None:
            raise ValueError(f"method {objective.name!r} is supervised but the data has no labels 'y'")
        num_classes = max(2, data.num_classes)
    return FactorCL(enc1, enc2, dim1, dim2, m.factorcl_config(num_classes), augment1=aug1, augment2=aug2)


# ----------------------------------------------------------------------------------- evaluation
def _probe_settings(probe: Any, has_valid: bool) -> tuple[dict[str, Any], bool, str]:
    """(linear_probe settings, whether the valid split chooses the L2, ``selected_on``) of a probe config."""
    grid = list(probe.l2_grid)
    settings = dict(l2_grid=grid, max_iter=probe.max_iter, seed=probe.seed)
    if probe.select == "valid" and has_valid and len(grid) > 1:
        return settings, True, "valid"
    selected_on = "val_fraction of train" if len(grid) > 1 else "fixed"
    if probe.select == "valid" and not has_valid and len(grid) > 1:
        selected_on += " (the valid split is empty)"
    return {**settings, "val_fraction": probe.val_fraction}, False, selected_on


def evaluate(
    model: nn.Module, data: SplitDataset, probe: Any, device: torch.device | str | None = None, progress: bool = False
) -> dict[str, Any]:
    """Linear-probe test accuracy of the frozen representation and its parts (see the module docstring).

    Returns ``{part: {accuracy, macro_f1, l2, val_accuracy, ...}}`` with parts ``all`` and, when
    ``probe.ablation``, ``S``/``U1``/``U2`` (factorised) or ``Z1``/``Z2``. An empty valid split
    falls back to ``val_fraction`` of train (``selected_on`` says so); a train or test split that is
    empty, or a train split with one class, is an error. Features and probes run on ``device``
    (default: the model's device; ``factorcl train`` passes the training device).
    """
    import warnings

    from .probe import extract_features, probe_parts, representation_parts

    if not data.has_labels:
        raise ValueError("the data has no labels 'y': a linear probe needs them (set probe.enabled: false)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    feats: dict[str, dict[str, torch.Tensor]] = {}
    labels: dict[str, torch.Tensor] = {}
    for name in ("train", "valid", "test"):
        ds = data.split(name)
        if ds is None or len(ds) == 0:
            if name != "valid":
                raise ValueError(
                    f"the {name} split of {data.name} is empty: the linear probe needs train and test rows"
                )
            if probe.select == "valid":
                warnings.warn(
                    f"the valid split of {data.name} is empty: the probe's L2 is chosen on a "
                    f"{probe.val_fraction} fraction of train instead",
                    stacklevel=2,
                )
            continue
        f, y = extract_features(
            model,
            ds.loader(probe.batch_size, shuffle=False),
            device=device,
            progress=f"probe: {name} features" if progress else False,
        )
        parts = representation_parts(f)
        feats[name], labels[name] = (parts if probe.ablation else {"all": parts["all"]}), y
    k = max(2, int(data.num_classes or int(max(int(v.max()) for v in labels.values())) + 1))
    settings, on_valid, selected_on = _probe_settings(probe, "valid" in feats)
    valid = dict(valid=feats["valid"], valid_labels=labels["valid"]) if on_valid else {}
    results = probe_parts(
        feats["train"],
        labels["train"],
        feats["test"],
        labels["test"],
        **valid,
        device=device,
        progress="probe: fitting" if progress else False,
        num_classes=k,
        **settings,
    )
    return {part: {**r.as_dict(), "selected_on": selected_on} for part, r in results.items()}


def _absolute_config(config: RunConfig) -> RunConfig:
    """The config with data paths made absolute and out_dir kept, so config.yaml works from anywhere."""
    data = config.to_dict()
    p = data["data"]["path"]
    base = config.base_dir()
    if p:
        data["data"]["path"] = resolve_data_path(config.data.kind, p, base)
    return load_config(data)


# -------------------------------------------------------------------------------------- running
def run_config(
    config: RunConfig | Mapping[str, Any] | str | os.PathLike,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    data: SplitDataset | None = None,
    verbose: bool = False,
    eval_every: int | None = None,
    eval_samples: int = 1000,
) -> dict[str, Any] | None:
    """Pretrain, then linear-probe on the test split; writes config.yaml, checkpoint.pt, results.json in out_dir.

    Under torchrun every rank trains and rank 0 alone evaluates and writes; the other ranks return None.

    ``config`` is a :class:`RunConfig`, raw config data or a YAML/JSON path; ``overrides`` are
    ``KEY=VALUE`` strings or a mapping of dotted keys. ``data`` skips loading (already built for
    this config). ``eval_every`` runs a k-NN probe on at most ``eval_samples`` rows of the valid
    split (the test split when there is none) every so many steps (:class:`factorcl.EvalCallback`;
    ``eval.csv``). Returns the results dict (also in ``results.json``).
    """
    from .device import seed_everything, select_device
    from .distributed import barrier, is_main_process
    from .train import fit

    cfg = load_config(config, overrides)
    cfg = _absolute_config(cfg) if cfg.data.path and cfg.data.kind != "synthetic" else cfg
    out_dir = Path(cfg.out_dir)
    main = is_main_process()  # under torchrun every rank trains; rank 0 alone evaluates and writes
    earlier = _prepare_out_dir(cfg, out_dir) if main else {}
    start = time.perf_counter()
    data = data if data is not None else build_data(cfg)
    if verbose:
        s = data.summary()
        print(
            f"data: {s['name']} {s['modalities']} shapes {s['input_shapes']} sizes {s['sizes']} "
            f"classes {s['num_classes']}"
        )
    seed = cfg.train_value("seed")
    seed_everything(0 if seed is None else int(seed))  # the model's initial weights follow train.seed
    model = build_model(cfg, data)
    batch_size = int(cfg.train_value("batch_size"))
    stream = getattr(data, "stream", None)  # data.kind shards: the train rows stream from shards
    drop_last = stream is not None or bool(cfg.train_value("drop_last")) and len(data.train) >= batch_size
    _check_before_training(cfg, data, batch_size, drop_last)
    for config, path in earlier.get("pending", []):  # only now: a run that fails to start leaves no config behind
        save_config(config, path)
    if stream is not None:
        from .data.shards import make_array_shard_loader

        loader = make_array_shard_loader(stream, num_workers=int(cfg.train_value("num_workers")))
    else:
        loader = data.train.loader(
            batch_size,
            shuffle=True,
            drop_last=drop_last,
            seed=0 if seed is None else int(seed),
            num_workers=int(cfg.train_value("num_workers")),
        )
    callbacks = []
    if eval_every:
        from .eval_callback import EvalCallback

        held = data.valid if data.valid is not None and len(data.valid) else data.test
        if not data.has_labels:
            raise ValueError("--eval-every runs a k-NN probe, which needs labels; the data has none")
        callbacks.append(
            EvalCallback(held.loader(batch_size, shuffle=False), every=eval_every, max_samples=eval_samples)
        )
    result = fit(model, loader, cfg.trainer_config(), callbacks=callbacks)
    if not main:
        barrier()  # wait while rank 0 evaluates
        return None
    results: dict[str, Any] = {
        "method": cfg.model.method,
        "dataset": data.name,
        "modalities": list(data.modalities),
        "accuracy": None,
        "probe": None,
        "train": {"steps": result.step, "epochs": result.epoch, "seconds": result.seconds, "final": result.metrics},
        "data": data.summary(),
        "checkpoint": str(out_dir / "checkpoint.pt"),
        "config": str(out_dir / CONFIG_NAME),
        "protocol": _protocol_text(cfg),
    }
    if earlier.get("config_changes"):
        results["config_changes"] = earlier["config_changes"]
    if verbose:
        print(f"trained {cfg.model.method} on {data.name}: {result.step} steps in {result.seconds:.1f} s")
    if cfg.probe.enabled and data.has_labels:
        progress = verbose and bool(cfg.train_value("progress"))
        probe = evaluate(model, data, cfg.probe, device=select_device(cfg.train_value("device")), progress=progress)
        results["probe"] = probe
        results["accuracy"] = probe["all"]["accuracy"]
    elif cfg.probe.enabled:
        results["note"] = "no labels in the data: probe skipped"
    _keep_earlier_probe(results, earlier.get("results"))
    results["seconds"] = time.perf_counter() - start
    write_json(out_dir / RESULTS_NAME, results)
    barrier()
    return results


#: Config sections a resume may not change: they decide the model, so the checkpoint would not fit it.
MODEL_SECTIONS = ("model", "encoders")
#: Files of a run folder that run_config writes besides fit's own.
RUN_CONFIG_FILES = (CONFIG_NAME, RESULTS_NAME, PROBE_RESULTS_NAME)


def _check_before_training(cfg: RunConfig, data: SplitDataset, batch_size: int, drop_last: bool) -> None:
    """Refuse what would fail only after training: a one-class probe, a last batch of one row."""
    n = len(data.train)
    if cfg.probe.enabled and data.has_labels and data.test is None:
        raise ValueError(
            f"{data.name} has no test split ({data.info.get('source')}): the linear probe needs one; give test "
            "shards (a test/ folder beside train/, or data.path {train: ..., test: ...}) or set probe.enabled: false"
        )
    if not drop_last and n % batch_size == 1:
        raise ValueError(
            f"the last training batch would hold 1 row ({n} train rows, train.batch_size {batch_size}, drop_last "
            "off): contrastive estimates need >= 2 rows; set train.drop_last: true or another batch size"
        )
    if cfg.probe.enabled and data.has_labels:
        labels = data.train.tensors().get("y")
        classes = torch.unique(torch.as_tensor(labels)) if labels is not None else None
        if classes is not None and classes.numel() < 2:
            raise ValueError(
                f"the labels 'y' of {data.name}'s train split hold a single class ({int(classes[0])}): the linear "
                "probe needs at least 2 classes; fix the labels, or set probe.enabled: false to train without it"
            )


def _prepare_out_dir(cfg: RunConfig, out_dir: Path) -> dict[str, Any]:
    """Check out_dir before anything is written. Returns the earlier run's state and, under
    ``pending``, the configs to write once the data and the model are built.

    A new run into a folder that holds one is refused (``train.overwrite`` replaces it); a folder
    with only a config.yaml (a run that failed before training) does not count as one. A resume
    keeps the original config.yaml: a changed model is refused, a changed schedule (compared with
    the latest ``config.resumed-N.yaml``, else config.yaml) needs ``train.allow_config_change`` and
    is saved as the next ``config.resumed-N.yaml`` and listed in results.json.
    """
    from . import checkpoint as ckpt_io

    ckpt_io.check_writable_dir(out_dir)
    names = ckpt_io.RUN_FILES + RUN_CONFIG_FILES
    found = [n for n in ckpt_io.existing_run_files(out_dir, names) if n != CONFIG_NAME]
    resume = cfg.train_value("resume")
    resumable = resume is not None and (out_dir / ckpt_io.CHECKPOINT_NAME).is_file()
    if resume is not None and not resumable and found:
        ckpt_io.refuse_unresumable_run(out_dir, found)
    if not resumable or not (out_dir / CONFIG_NAME).is_file():
        if found and resume is None and not cfg.train_value("overwrite"):
            ckpt_io.refuse_existing_run(out_dir, found)
        ckpt_io.clear_run(out_dir, names)
        for old in out_dir.glob("config.resumed-*.yaml"):
            old.unlink()
        return {"pending": [(cfg, out_dir / CONFIG_NAME)]}
    resumed = sorted(out_dir.glob("config.resumed-*.yaml"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    latest = resumed[-1] if resumed else out_dir / CONFIG_NAME
    earlier, now = _with_train_defaults(load_config(latest)), _with_train_defaults(cfg)
    free = frozenset({"out_dir", "probe"}) | ckpt_io.FREE_TRAIN_KEYS
    changes = ckpt_io.config_changes(earlier, now, free)
    model_changes = {k: v for k, v in changes.items() if k.split(".")[0] in MODEL_SECTIONS}
    if model_changes:
        raise ckpt_io.ConfigChangedError(
            f"config differs from the run in {out_dir} ({latest}) in the model: "
            f"{ckpt_io.format_changes(model_changes)}. A resume must build the same model; to train a new one, "
            "use --overwrite or another --out-dir"
        )
    state: dict[str, Any] = {"pending": []}
    if (out_dir / RESULTS_NAME).is_file():
        import json

        try:
            state["results"] = json.loads((out_dir / RESULTS_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state["results"] = None
    history = list((state.get("results") or {}).get("config_changes") or [])
    if changes:
        if not cfg.train_value("allow_config_change"):
            raise ckpt_io.ConfigChangedError(
                f"config differs from the run being resumed ({latest}): "
                f"{ckpt_io.format_changes(changes)}. Resume with the run's settings, allow a schedule change with "
                "--allow-config-change (it is recorded; config.yaml is kept), or start a new run in another --out-dir"
            )
        path = out_dir / f"config.resumed-{len(resumed) + 1}.yaml"
        state["pending"].append((cfg, path))
        history.append({"config": path.name, "changes": {k: list(v) for k, v in changes.items()}})
    state["config_changes"] = history
    return state


def _with_train_defaults(cfg: RunConfig) -> dict[str, Any]:
    """The config as data with every ``train`` key filled in (an unset key compares as its default)."""
    from dataclasses import fields

    from .config import LOADER_KEYS
    from .train import TrainConfig

    data = cfg.to_dict()
    keys = set(LOADER_KEYS) | {f.name for f in fields(TrainConfig)} | set(cfg.train)
    data["train"] = {k: cfg.train_value(k) for k in sorted(keys) if k != "out_dir"}
    return data


def _keep_earlier_probe(results: dict[str, Any], earlier: Mapping[str, Any] | None) -> None:
    """Never replace an earlier probe with less: keep it when this run did not probe.

    When the model was not trained further (same step), the earlier probe still describes it and
    stays as ``probe``/``accuracy``; otherwise it moves to ``earlier_probe`` with its step.
    """
    if not earlier or results.get("probe") is not None or earlier.get("probe") is None:
        return
    old_step = (earlier.get("train") or {}).get("steps")
    if old_step == results["train"]["steps"]:
        results["probe"], results["accuracy"] = earlier["probe"], earlier.get("accuracy")
        results["probe_note"] = "probe from the earlier run of this checkpoint (this run did not probe)"
    else:
        results["earlier_probe"] = {"step": old_step, "accuracy": earlier.get("accuracy"), "probe": earlier["probe"]}


def _protocol_text(cfg: RunConfig) -> str:
    sel = "the valid split" if cfg.probe.select == "valid" else f"a {cfg.probe.val_fraction} fraction of train"
    return f"linear probe fit on train features, L2 chosen on {sel}, accuracy on the test split"


def _run_dir(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path).expanduser()
    if p.is_dir():
        return p, p / "checkpoint.pt"
    if p.is_file():
        return p.parent, p
    raise FileNotFoundError(f"no run folder or checkpoint at {p}")


def load_run(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> tuple[RunConfig, nn.Module, SplitDataset]:
    """(config, model with the checkpoint's weights, data) of a finished run (its folder or checkpoint path)."""
    from . import checkpoint as ckpt_io
    from .device import select_device

    run_dir, ckpt = _run_dir(path)
    cfg_path = run_dir / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{cfg_path} not found: 'factorcl probe' needs the config.yaml that "
            "'factorcl train' writes beside the checkpoint"
        )
    cfg = load_config(cfg_path, overrides)
    data = build_data(cfg)
    model = build_model(cfg, data, for_eval=True)
    dev = select_device(device or "auto")
    state = ckpt_io.load(ckpt, map_location=dev)
    if "model" not in state:
        raise ValueError(f"{ckpt} has no 'model' weights (keys: {sorted(state)})")
    if state.get("method") not in (None, cfg.model.method):
        raise ValueError(f"{ckpt} was written by method {state['method']!r} but {cfg_path} says {cfg.model.method!r}")
    model.load_state_dict(state["model"])
    model.to(dev)
    return cfg, model, data


def probe_run(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    out: str | os.PathLike | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Re-run the evaluation of a finished run; writes ``probe_results.json`` in the run folder (or ``out``)."""
    run_dir, ckpt = _run_dir(path)
    cfg, model, data = load_run(path, device, overrides)
    if not data.has_labels:
        raise ValueError("the data has no labels 'y': nothing to probe")
    probe = evaluate(model, data, cfg.probe)
    results = {
        "method": cfg.model.method,
        "dataset": data.name,
        "checkpoint": str(ckpt),
        "accuracy": probe["all"]["accuracy"],
        "probe": probe,
        "protocol": _protocol_text(cfg),
    }
    write_json(Path(out) if out else run_dir / PROBE_RESULTS_NAME, results)
    return results


def format_probe(probe: Mapping[str, Mapping[str, Any]]) -> str:
    """A small text table of probe results (part, accuracy, macro F1, L2, valid accuracy)."""
    rows = [("part", "accuracy", "macro F1", "L2", "valid acc")]
    for part, r in probe.items():
        va = r.get("val_accuracy")
        rows.append(
            (
                part,
                f"{100 * r['accuracy']:.2f}%",
                f"{r['macro_f1']:.3f}",
                f"{r['l2']:g}",
                "-" if va is None else f"{100 * va:.2f}%",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


__all__ = ["build_data", "build_model", "evaluate", "format_probe", "load_run", "probe_run", "run_config"]
