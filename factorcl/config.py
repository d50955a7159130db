"""Run configurations for ``factorcl train --config run.yaml``: schema, validation, loading, saving.

A run config has six sections (YAML or JSON)::

    data:      {kind, path, dataset, modalities, task, zero_label, splits, split_seed, synthetic}
    encoders:  {x1: SPEC, x2: SPEC}          # see factorcl.encoders.build_encoder
    model:     {method, critic, conditioning, embed_dim, augment1, augment2, ...}
    train:     {epochs, lr, batch_size, critic_steps, amp, device, seed, ...}   # TrainConfig fields
    probe:     {select, val_fraction, l2_grid, ablation, ...}
    out_dir:   runs/NAME

Every key is checked: unknown keys, wrong types and invalid values raise ``ValueError`` naming
the key (``config key 'data.kind' must be one of [...], got 'mosii'``). See the README section "Real multimodal data"
for the reference.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml

from .model_config import FactorCLConfig, SettingError

DATA_KINDS = ("multibench", "mimic", "arrays", "synthetic")
PROBE_SELECT = ("valid", "val_fraction")
#: Keys of the ``train`` section that configure the data loader (the rest are TrainConfig fields).
LOADER_KEYS: dict[str, Any] = {"batch_size": 128, "drop_last": True, "num_workers": 0}


class ConfigError(ValueError):
    """An invalid run configuration; the message names the key."""


def _suggest(word: str, options: Sequence[str]) -> str:
    close = get_close_matches(word, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# ------------------------------------------------------------------------------------ sections
@dataclass
class DataConfig:
    """Which data to load and how (see :mod:`factorcl.data`)."""

    kind: str = "synthetic"  # multibench | mimic | arrays | synthetic
    path: str | dict | None = None  # file (or {train: f, valid: f, test: f} for arrays)
    dataset: str | None = None  # multibench: mosi | mosei | humor | sarcasm (default: from the file name)
    modalities: list | None = None  # multibench: two of vision/audio/text; mimic: static/timeseries order
    task: str | int = "mortality"  # mimic: mortality | mortality-binary | icd9-K | -1..19
    zero_label: str = "negative"  # multibench sentiment exactly 0: negative | positive | drop
    splits: list = field(default_factory=lambda: [0.8, 0.1, 0.1])  # mimic / arrays: train, valid, test
    split_seed: int | None = None  # default: 10 for mimic (MultiBench's split), 0 for arrays
    synthetic: dict = field(default_factory=dict)  # synthetic: SyntheticConfig fields


@dataclass
class EncodersConfig:
    """Encoder specs for X1 and X2 (``"auto"``, ``"mlp"``, ``"gru"``, ``"transformer"``, ``"timm:NAME"`` or a mapping)."""

    x1: Any = "auto"
    x2: Any = "auto"


#: Model-section defaults that differ from :class:`FactorCLConfig`'s (configs written before keep their meaning).
RUN_MODEL_DEFAULTS: dict[str, Any] = {"embed_dim": 64}
#: FactorCL settings the run takes from the data, not from the config.
_FROM_DATA = ("num_classes",)


def _model_section() -> type:
    """``ModelConfig``: the fields of :class:`FactorCLConfig` (minus what the data decides) plus the
    augmentation specs; built from FactorCLConfig so that the two can never drift apart."""
    specs: list[tuple[str, Any, Any]] = [
        (f.name, f.type, field(default=RUN_MODEL_DEFAULTS.get(f.name, f.default)))
        for f in dataclasses.fields(FactorCLConfig) if f.name not in _FROM_DATA
    ]
    specs += [("augment1", "Any", field(default="auto")),
              ("augment2", "Any", field(default=None)),  # None: the same spec as augment1 (built for X2's shape)
              ("options", "dict", field(default_factory=dict))]  # older configs' place for FactorCL settings

    def factorcl_config(self, num_classes: int | None = None) -> FactorCLConfig:
        """The :class:`FactorCLConfig` of this section (``num_classes`` comes from the data)."""
        values = {name: getattr(self, name) for name in FactorCLConfig.field_names() if name not in _FROM_DATA}
        return FactorCLConfig(**values, num_classes=num_classes)

    cls = dataclasses.make_dataclass("ModelConfig", specs, namespace={"factorcl_config": factorcl_config})
    cls.__module__ = __name__
    cls.__doc__ = ("The model section: every FactorCLConfig setting (num_classes comes from the data); "
                   "``augment1`` / ``augment2`` are augmentation specs (see :func:`build_augment`).")
    return cls


ModelConfig = _model_section()


@dataclass
class ProbeConfig:
    """Linear-probe evaluation: fit on train features, L2 chosen on valid (or a val_fraction of train), score on test."""

    enabled: bool = True
    select: str = "valid"  # valid | val_fraction
    val_fraction: float = 0.2
    l2_grid: list = field(default_factory=lambda: [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 0.0])
    max_iter: int = 200
    ablation: bool = True  # also probe S, U1, U2 (factorised) or Z1, Z2 separately (Table 4.4)
    batch_size: int = 256
    seed: int = 0


@dataclass
class RunConfig:
    """A whole run: data, encoders, model, training, probe, output folder."""

    data: DataConfig = field(default_factory=DataConfig)
    encoders: EncodersConfig = field(default_factory=EncodersConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: dict = field(default_factory=dict)  # TrainConfig fields + batch_size, drop_last, num_workers
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    out_dir: str = "runs/factorcl"
    source: str | None = field(default=None, compare=False)  # the file it was read from (resolves relative paths)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what :func:`save_config` writes), without ``source``."""
        d = asdict(self)
        d.pop("source", None)
        return d

    def train_value(self, key: str) -> Any:
        """A ``train`` key with its default (TrainConfig's, or the loader default)."""
        if key in self.train:
            return self.train[key]
        if key in LOADER_KEYS:
            return LOADER_KEYS[key]
        return _train_defaults()[key]

    def trainer_config(self, **overrides: Any):
        """The :class:`factorcl.TrainConfig` of this run (out_dir included)."""
        from .train import TrainConfig

        kwargs = {k: v for k, v in self.train.items() if k not in LOADER_KEYS}
        kwargs["out_dir"] = self.out_dir
        kwargs.update(overrides)
        return TrainConfig(**kwargs)

    def base_dir(self) -> Path | None:
        """The folder of the config file (relative data paths are also looked up there)."""
        return Path(self.source).resolve().parent if self.source else None


# ------------------------------------------------------------------------------------- typing
def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any value"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return {list: "a list", dict: "a mapping"}.get(origin, str(tp))
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string", list: "a list",
            dict: "a mapping"}.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is not None:
        tp = origin
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is list:
        return isinstance(value, (list, tuple))
    if tp is dict:
        return isinstance(value, Mapping)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _accepts_float(tp: Any) -> bool:
    if tp is float:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and float in typing.get_args(tp)


def _yaml_float(value: Any, tp: Any) -> Any:
    """PyYAML reads ``1e-3`` (no dot) as a string: accept such numbers for float keys."""
    if isinstance(value, str) and _accepts_float(tp):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(value: Any, tp: Any) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key {prefix!r} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}.{key}'{_suggest(str(key), names)} (allowed: {', '.join(names)})")
        tp = hints[key]
        value = _yaml_float(value, tp)
        if not _matches(value, tp):
            raise ConfigError(f"config key '{prefix}.{key}' must be {_type_name(tp)}, got {value!r}")
        kwargs[key] = _coerce(value, tp)
    return cls(**kwargs)


def _merge_model_options(m: Any) -> None:
    """Older configs set some FactorCL settings under ``model.options``: move them into the section."""
    allowed = [n for n in FactorCLConfig.field_names() if n not in _FROM_DATA]
    for key, value in dict(m.options).items():
        if key not in allowed:
            raise ConfigError(f"unknown config key 'model.options.{key}'{_suggest(str(key), allowed)} "
                              f"(allowed: {', '.join(allowed)})")
        default = RUN_MODEL_DEFAULTS.get(key, getattr(FactorCLConfig, key))
        if getattr(m, key) != default and getattr(m, key) != value:
            raise ConfigError(f"config key 'model.options.{key}' and 'model.{key}' both set it: set it once, "
                              f"as 'model.{key}'")
        setattr(m, key, value)
    m.options = {}


def _train_defaults() -> dict[str, Any]:
    from .train import TrainConfig

    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _check_train(train: Any) -> dict[str, Any]:
    from .train import TrainConfig

    if train is None:
        return {}
    if not isinstance(train, Mapping):
        raise ConfigError(f"config key 'train' must be a mapping, got {type(train).__name__}")
    hints = typing.get_type_hints(TrainConfig)
    allowed = [n for n in hints if n != "out_dir"] + list(LOADER_KEYS)
    out: dict[str, Any] = {}
    for key, value in train.items():
        if key == "out_dir":
            raise ConfigError("config key 'train.out_dir' is not used: set the top-level 'out_dir'")
        if key not in allowed:
            raise ConfigError(f"unknown config key 'train.{key}'{_suggest(str(key), allowed)} (allowed: {', '.join(allowed)})")
        tp = hints.get(key, {"batch_size": int, "drop_last": bool, "num_workers": int}.get(key))
        value = _yaml_float(value, tp)
        if not _matches(value, tp):
            raise ConfigError(f"config key 'train.{key}' must be {_type_name(tp)}, got {value!r}")
        out[key] = _coerce(value, tp)
    if out.get("batch_size", 1) < 1:
        raise ConfigError(f"config key 'train.batch_size' must be >= 1, got {out['batch_size']}")
    if out.get("num_workers", 0) < 0:
        raise ConfigError(f"config key 'train.num_workers' must be >= 0, got {out['num_workers']}")
    try:
        TrainConfig(**{k: v for k, v in out.items() if k not in LOADER_KEYS})
    except (ValueError, TypeError) as exc:
        bad = next((k for k in out if str(exc).startswith(f"{k}=")), None)
        where = f"config key 'train.{bad}'" if bad else "config section 'train'"
        raise ConfigError(f"{where}: {exc}") from None
    return out


# --------------------------------------------------------------------------------- validation
def _one_of(value: Any, options: Sequence[str], key: str) -> None:
    if value not in options:
        raise ConfigError(f"config key {key!r} must be one of {list(options)}, got {value!r}"
                          f"{_suggest(str(value), options)}")


def _validate(cfg: RunConfig) -> RunConfig:
    from .data.arrays import check_fractions
    from .data.mimic import MIMIC_MODALITIES, parse_task
    from .data.multibench import MODALITIES, ZERO_LABEL_RULES, canonical_dataset
    from .data.synthetic import SyntheticConfig
    from .encoders import normalize_spec
    from .objectives import get_objective

    d = cfg.data
    _one_of(d.kind, DATA_KINDS, "data.kind")
    if d.kind != "synthetic" and not d.path:
        raise ConfigError(f"config key 'data.path' is required for data.kind {d.kind!r}")
    if isinstance(d.path, dict) and d.kind != "arrays":
        raise ConfigError("config key 'data.path' may map splits to files only for data.kind 'arrays'")
    try:
        check_fractions(d.splits)
    except ValueError as exc:
        raise ConfigError(f"config key 'data.splits': {exc}") from None
    if d.kind == "multibench":
        if d.dataset is not None:
            try:
                d.dataset = canonical_dataset(d.dataset)
            except ValueError as exc:
                raise ConfigError(f"config key 'data.dataset': {exc}") from None
        if d.modalities is not None and (len(d.modalities) != 2 or any(m not in MODALITIES for m in d.modalities)
                                         or d.modalities[0] == d.modalities[1]):
            raise ConfigError(f"config key 'data.modalities' must be two different modalities of {list(MODALITIES)}, "
                              f"got {d.modalities!r}")
        _one_of(d.zero_label, ZERO_LABEL_RULES, "data.zero_label")
    elif d.dataset is not None:
        raise ConfigError(f"config key 'data.dataset' is only used with data.kind 'multibench', not {d.kind!r}")
    if d.kind == "mimic":
        try:
            parse_task(d.task)
        except ValueError as exc:
            raise ConfigError(f"config key 'data.task': {exc}") from None
        if d.modalities is not None and sorted(d.modalities) != sorted(MIMIC_MODALITIES):
            raise ConfigError(f"config key 'data.modalities' must be {list(MIMIC_MODALITIES)} in either order, "
                              f"got {d.modalities!r}")
    elif d.modalities is not None and d.kind != "multibench":
        raise ConfigError(f"config key 'data.modalities' is only used with data.kind 'multibench' or 'mimic', not {d.kind!r}")
    if d.kind == "synthetic":
        names = [f.name for f in dataclasses.fields(SyntheticConfig)]
        for key in d.synthetic:
            if key not in names:
                raise ConfigError(f"unknown config key 'data.synthetic.{key}'{_suggest(str(key), names)} "
                                  f"(allowed: {', '.join(names)})")
        try:
            SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.synthetic.items()})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"config key 'data.synthetic': {exc}") from None
    elif d.synthetic:
        raise ConfigError(f"config key 'data.synthetic' is only used with data.kind 'synthetic', not {d.kind!r}")

    for i in (1, 2):
        try:
            normalize_spec(getattr(cfg.encoders, f"x{i}"), f"encoders.x{i}")
        except ValueError as exc:
            raise ConfigError(f"config key 'encoders.x{i}': {exc}") from None

    m = cfg.model
    try:
        objective = get_objective(m.method)
    except ValueError as exc:
        raise ConfigError(f"config key 'model.method': {exc}") from None
    m.method = objective.name
    _merge_model_options(m)
    try:  # validated once, by FactorCLConfig itself (labels come from the data: any valid count here)
        m.factorcl_config(num_classes=2 if objective.supervised else None)
    except SettingError as exc:
        text, key = str(exc), exc.key
        if text.startswith(key + " "):  # "critic must be one of ..." -> "config key 'model.critic' must be ..."
            raise ConfigError(f"config key 'model.{key}' {text[len(key) + 1:]}") from None
        raise ConfigError(f"config key 'model.{key}': {text}") from None
    for key in ("augment1", "augment2"):
        try:
            check_augment_spec(getattr(m, key), f"model.{key}")
        except ValueError as exc:
            raise ConfigError(f"config key 'model.{key}': {exc}") from None
    if objective.needs_views and is_none_augment(m.augment1):
        raise ConfigError(f"config key 'model.augment1' is {m.augment1!r}, but method {objective.name!r} needs "
                          "augmented views: use 'auto' or an augmentation")

    cfg.train = _check_train(cfg.train)

    p = cfg.probe
    _one_of(p.select, PROBE_SELECT, "probe.select")
    if not 0.0 <= p.val_fraction < 1.0:
        raise ConfigError(f"config key 'probe.val_fraction' must be in [0, 1), got {p.val_fraction}")
    p.l2_grid = [_yaml_float(v, float) for v in p.l2_grid]
    if not p.l2_grid or any(not _matches(v, float) or v < 0 for v in p.l2_grid):
        raise ConfigError(f"config key 'probe.l2_grid' must be a non-empty list of L2 strengths >= 0, got {p.l2_grid!r}")
    p.l2_grid = [float(v) for v in p.l2_grid]
    for key in ("max_iter", "batch_size"):
        if getattr(p, key) < 1:
            raise ConfigError(f"config key 'probe.{key}' must be >= 1, got {getattr(p, key)}")
    if not str(cfg.out_dir).strip():
        raise ConfigError("config key 'out_dir' must be a folder path")
    return cfg


# ------------------------------------------------------------------------------- augmentations
_PRESETS = {"features": {"std": 0.1, "alpha": 1.0}, "sequence": {"std": 0.1, "p": 0.2},
            "image": {"strength": 1.0}, "image_unique": {"strength": 1.0}, "auto": {"std": 0.1, "p": 0.2, "alpha": 1.0,
                                                                                     "strength": 1.0}}
_SINGLE = {"noise": {"std": 0.1}, "feature_dropout": {"p": 0.1, "shared_over_time": True},
           "time_mask": {"p": None, "max_width": None}, "time_shuffle": {"window": None}, "mixup": {"alpha": 1.0},
           "identity": {}}


def is_none_augment(spec: Any) -> bool:
    """Whether an augmentation spec means "no augmentation"."""
    return spec is False or (isinstance(spec, str) and spec.strip().lower() in ("none", "off", ""))


def check_augment_spec(spec: Any, where: str = "augment") -> None:
    """Validate an augmentation spec without building it (see :func:`build_augment`)."""
    if spec is None or is_none_augment(spec):
        return
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name not in _PRESETS and name not in _SINGLE:
            options = [*_PRESETS, *_SINGLE]
            raise ValueError(f"{where} must be 'none', a preset ({', '.join(_PRESETS)}) or an augmentation "
                             f"({', '.join(_SINGLE)}), got {spec!r}{_suggest(name, options)}")
        return
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"{where} is an empty list: give at least one augmentation")
        for i, item in enumerate(spec):
            check_augment_spec(item, f"{where}[{i}]")
        return
    if isinstance(spec, Mapping):
        if "choice" in spec or "compose" in spec:
            key = "choice" if "choice" in spec else "compose"
            extra = sorted(str(k) for k in set(spec) - ({key, "weights"} if key == "choice" else {key}))
            if extra:
                raise ValueError(f"unknown key {where}.{extra[0]} ({key!r} takes a list of augmentations"
                                 f"{' and optional weights' if key == 'choice' else ''})")
            items = spec[key]
            if not isinstance(items, (list, tuple)) or not items:
                raise ValueError(f"{where}.{key} must be a non-empty list of augmentations")
            for i, item in enumerate(items):
                check_augment_spec(item, f"{where}.{key}[{i}]")
            if spec.get("weights") is not None:
                import augment as A

                try:
                    A.RandomChoice([A.Identity()] * len(items), weights=spec["weights"])
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{where}.weights: {exc}") from None
            return
        if "name" not in spec:
            raise ValueError(f"{where} must have a 'name' (or 'choice' / 'compose'), got keys {sorted(spec)}")
        name = str(spec["name"]).strip().lower()
        check_augment_spec(name, f"{where}.name")
        params = _PRESETS.get(name, _SINGLE.get(name, {}))
        for key in spec:
            if key != "name" and key not in params:
                raise ValueError(f"unknown key {where}.{key} for augmentation {name!r}{_suggest(str(key), list(params))}"
                                 f" (allowed: {', '.join(params) or 'none'})")
        # Values are checked by building the augmentation now (cheap: nothing is imported or
        # allocated), so a bad one is reported with its config key at load time, not mid-run.
        given = {k: v for k, v in spec.items() if k != "name"}
        for kind in _AUTO_KINDS.values() if name == "auto" else (name,):
            try:
                _make(kind, {k: v for k, v in given.items() if k in _PRESETS.get(kind, _SINGLE.get(kind, {}))})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}: {exc}") from None
        return
    raise ValueError(f"{where} must be a name, a mapping with 'name', or a list, got {type(spec).__name__}")


_AUTO_KINDS = {1: "features", 2: "sequence", 3: "image"}  # "auto" by the rank of a sample


def _make(name: str, params: Mapping[str, Any]):
    """The augmentation ``name`` with ``params`` over its defaults (no shape checks: see :func:`build_augment`)."""
    import augment as A

    p = {**_PRESETS.get(name, {}), **_SINGLE.get(name, {}), **params}
    if name == "features":
        # Per sample one of noise, mixup, identity (see build_augment for how this differs from
        # the published augment_embed_single).
        return A.RandomChoice([A.GaussianNoise(p["std"]), A.Mixup(p["alpha"]), A.Identity()])
    if name == "sequence":
        return A.RandomChoice([A.TimeShuffle(), A.GaussianNoise(p["std"]), A.TimeMask(p=p["p"]), A.Identity()])
    if name in ("image", "image_unique"):
        return A.ImageAugment("standard" if name == "image" else "unique", strength=p["strength"])
    if name == "noise":
        return A.GaussianNoise(p["std"])
    if name == "feature_dropout":
        return A.FeatureDropout(p["p"], shared_over_time=p["shared_over_time"])
    if name == "time_mask":
        return A.TimeMask(p=p["p"], max_width=p["max_width"])
    if name == "time_shuffle":
        return A.TimeShuffle(p["window"])
    if name == "mixup":
        return A.Mixup(p["alpha"])
    return A.Identity()


def build_augment(spec: Any, sample_shape: Sequence[int], where: str = "augment"):
    """An augmentation (or None) from a spec, for inputs of per-sample shape ``sample_shape``.

    Specs: ``"none"``; presets ``"auto"`` (by shape: ``features`` for vectors, ``sequence`` for
    sequences, ``image`` for images), ``"features"`` (per sample, uniformly, one of Gaussian noise
    ``std``, mixup ``alpha`` with the sample keeping the larger weight (``Mixup(dominant=True)``:
    the view stays a view of its sample), identity. Modelled on the published
    ``augment_embed_single``, which draws one of its transforms for the whole *batch* and mixes
    with a symmetric Beta weight, so its mixup can give a sample less than half of itself; here
    each sample draws its own), ``"sequence"`` (one of
    time shuffle, Gaussian noise ``std``, masking a fraction ``p`` of steps, identity: the
    published ``augment_single``), ``"image"`` / ``"image_unique"`` (kornia presets, ``strength``);
    single augmentations ``noise``, ``feature_dropout``, ``time_mask``, ``time_shuffle``,
    ``mixup``, ``identity`` with their parameters (``{"name": "noise", "std": 0.2}``); a list (or
    ``{"choice": [...], "weights": [...]}``) picks one per sample; ``{"compose": [...]}`` chains.
    Sequence augmentations never touch padded steps (the model passes the mask).
    """
    import augment as A

    check_augment_spec(spec, where)
    if spec is None or is_none_augment(spec):
        return None
    rank = len(tuple(sample_shape))
    if isinstance(spec, (list, tuple)):
        return A.RandomChoice([build_augment(s, sample_shape, f"{where}[{i}]") or A.Identity() for i, s in enumerate(spec)])
    if isinstance(spec, Mapping) and ("choice" in spec or "compose" in spec):
        if "choice" in spec:
            items = [build_augment(s, sample_shape, f"{where}.choice[{i}]") or A.Identity() for i, s in enumerate(spec["choice"])]
            return A.RandomChoice(items, weights=spec.get("weights"))
        return A.Compose([build_augment(s, sample_shape, f"{where}.compose[{i}]") or A.Identity()
                          for i, s in enumerate(spec["compose"])])
    params = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    name = str(params.pop("name")).strip().lower()
    if name == "auto":
        name = _AUTO_KINDS.get(rank)
        if name is None:
            raise ValueError(f"{where}: no automatic augmentation for inputs of per-sample shape {tuple(sample_shape)}")
        params = {k: v for k, v in params.items() if k in _PRESETS[name]}
    seq_only = name in ("sequence", "time_mask", "time_shuffle")
    if seq_only and rank != 2:
        raise ValueError(f"{where}: {name!r} needs sequences (per-sample shape (T, d)), got {tuple(sample_shape)}")
    if name in ("image", "image_unique") and rank != 3:
        raise ValueError(f"{where}: {name!r} needs images (per-sample shape (3, H, W)), got {tuple(sample_shape)}")
    return _make(name, params)


# ------------------------------------------------------------------------------ load and save
def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {dotted!r}: config key {k!r} is not a mapping")
        node = nxt
    node[keys[-1]] = value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of raw config data with ``KEY=VALUE`` overrides (dotted keys, YAML values) applied."""
    import copy

    out = copy.deepcopy(dict(data))
    if not overrides:
        return out
    items = overrides.items() if isinstance(overrides, Mapping) else []
    if not isinstance(overrides, Mapping):
        parsed = []
        for text in overrides:
            if "=" not in text:
                raise ConfigError(f"override {text!r} must look like KEY=VALUE (e.g. train.epochs=5)")
            key, raw = text.split("=", 1)
            parsed.append((key.strip(), yaml.safe_load(raw) if raw.strip() else None))
        items = parsed
    for key, value in items:
        _set_dotted(out, key, value)
    return out


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Raw data of a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    from .data.files import read_utf8

    text = read_utf8(p)
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"could not parse {p}: {exc}") from None
    if data is None:
        # An empty file is almost always a mistake (a failed copy, the wrong file): running the
        # defaults would silently start a job the user did not ask for.
        raise ConfigError(f"config file {p} is empty; write at least one section (data, encoders, model, train, "
                          "probe, out_dir), e.g. 'data: {kind: synthetic}' for the built-in data")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p} must hold a mapping of sections (data, encoders, model, train, probe, out_dir), "
                          f"got {type(data).__name__}")
    return dict(data)


def config_from_dict(data: Mapping[str, Any], source: str | None = None) -> RunConfig:
    """A validated :class:`RunConfig` from raw data (the sections of a config file)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a run config must be a mapping of sections, got {type(data).__name__}")
    sections = ["data", "encoders", "model", "train", "probe", "out_dir"]
    for key in data:
        if key not in sections:
            raise ConfigError(f"unknown config key {key!r}{_suggest(str(key), sections)} (sections: {', '.join(sections)})")
    out_dir = data.get("out_dir", RunConfig.out_dir)
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ConfigError(f"config key 'out_dir' must be a string (a folder path), got {out_dir!r}")
    cfg = RunConfig(
        data=_build(DataConfig, data.get("data"), "data"),
        encoders=_build(EncodersConfig, data.get("encoders"), "encoders"),
        model=_build(ModelConfig, data.get("model"), "model"),
        train=data.get("train") or {},
        probe=_build(ProbeConfig, data.get("probe"), "probe"),
        out_dir=str(out_dir),
        source=source,
    )
    return _validate(cfg)


def load_config(source: str | os.PathLike | Mapping[str, Any] | RunConfig,
                overrides: Sequence[str] | Mapping[str, Any] | None = None) -> RunConfig:
    """A validated :class:`RunConfig` from a YAML/JSON file, raw data or a RunConfig, with optional overrides."""
    if isinstance(source, RunConfig):
        if not overrides:
            return _validate(source)
        return config_from_dict(apply_overrides(source.to_dict(), overrides), source.source)
    if isinstance(source, Mapping):
        return config_from_dict(apply_overrides(source, overrides))
    return config_from_dict(apply_overrides(read_config_file(source), overrides), str(source))


def save_config(cfg: RunConfig, path: str | os.PathLike) -> Path:
    """Write a config as YAML (loadable by :func:`load_config`), atomically."""
    from .fileio import atomic_write

    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    return atomic_write(path, lambda f: f.write(text), binary=False)


def resolve_path(path: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> Path:
    """An absolute data path: as given when absolute or found from the current folder, else from ``base_dir``.

    A relative path found in neither is a FileNotFoundError listing every folder searched. (An
    absolute path is returned as it is: the loader names it when it is missing.)
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p.resolve()
    folders = {Path.cwd().resolve(): "the current folder"}
    if base_dir is not None:
        folders.setdefault(Path(base_dir).resolve(), "the config's folder")
    for folder in folders:
        if (folder / p).exists():
            return (folder / p).resolve()
    searched = " and ".join(f"{name} {folder}" for folder, name in folders.items())
    raise FileNotFoundError(f"data file not found: {p} (relative paths are looked up in {searched})")


__all__ = ["ConfigError", "DataConfig", "EncodersConfig", "ModelConfig", "ProbeConfig", "RunConfig", "apply_overrides",
           "build_augment", "check_augment_spec", "config_from_dict", "load_config", "resolve_path", "save_config"]
