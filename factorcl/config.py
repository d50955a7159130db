"""Run configurations for ``factorcl train --config run.yaml``: schema, validation, loading, saving.

A run config has six sections (YAML or JSON)::

    data:      {kind, path, dataset, modalities, task, zero_label, splits, split_seed, synthetic,
                train_num_samples, probe_samples}
    encoders:  {x1: SPEC, x2: SPEC}          # see factorcl.encoders.build_encoder
    model:     {method, critic, conditioning, embed_dim, augment1, augment2, ...}   # FactorCLConfig fields
    train:     {epochs, lr, batch_size, critic_steps, amp, device, seed, ...}       # TrainConfig fields
    probe:     {select, val_fraction, l2_grid, ablation, ...}
    out_dir:   runs/NAME

The schema is a set of pydantic models, one per section: unknown keys are refused, types are
strict (``"3"`` is not an integer, ``1`` is not ``true``), enumerations are ``Literal`` types
taken from the modules that own them, and each section's cross-key checks are its one
``model_validator``. The ``model`` and ``train`` sections are built from
:class:`~factorcl.model_config.FactorCLConfig` and :class:`~factorcl.train.TrainConfig`, which
also check their values, so no setting is listed twice. pydantic's errors are reworded to name
the key (``config key 'data.kind' must be one of [...], got 'mosii'``, ``unknown config key
'data.knd'; did you mean 'kind'?``) and raised as :class:`ConfigError`. :func:`config_reference`
renders the README's table from the schema.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import operator
import os
import types
import typing
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from augment import Augmentation
from augment.spec import AugmentSpec, build_augment, parse_augment

from .data.arrays import check_fractions
from .data.files import read_utf8
from .data.mimic import MIMIC_MODALITIES, parse_task
from .data.multibench import MODALITIES, ZERO_LABEL_RULES, canonical_dataset
from .data.synthetic import SyntheticConfig
from .encoders import normalize_spec
from .fileio import atomic_write
from .model_config import (
    CRITICS,
    SHARED_HEADS,
    SSL_CONDITIONINGS,
    SUP_CONDITIONINGS,
    FactorCLConfig,
    SettingError,
)
from .objectives import METHODS, get_objective
from .train import TrainConfig

DATA_KINDS = ("multibench", "mimic", "arrays", "shards", "synthetic")
PROBE_SELECT = ("valid", "val_fraction")
#: Model-section defaults that differ from :class:`FactorCLConfig`'s (configs written before keep their meaning).
RUN_MODEL_DEFAULTS: dict[str, Any] = {"embed_dim": 64}
#: FactorCL settings the run takes from the data, not from the config.
_FROM_DATA = ("num_classes",)


class ConfigError(ValueError):
    """An invalid run configuration; the message names the key."""


def _suggest(word: str, options: Sequence[str]) -> str:
    close = get_close_matches(word, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# ------------------------------------------------------------------------------ schema pieces
class _Must:
    """Field metadata: what a key must be, in words, where the words for its type would not say it."""

    def __init__(self, text: str) -> None:
        self.text = text


def _number_from_yaml(value: Any) -> Any:
    """PyYAML reads ``1e-3`` (no dot) as a string: such strings are numbers for float keys."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


#: A float key (strict: an int is taken as a float, a bool is not).
YamlFloat = Annotated[float, BeforeValidator(_number_from_yaml)]


def _schema_type(tp: Any) -> Any:
    """A dataclass annotation as a schema type: ``float`` (also in ``float | None``) becomes :data:`YamlFloat`."""
    if tp is float:
        return YamlFloat
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, [_schema_type(a) for a in typing.get_args(tp)])
    return tp


def _dataclass_fields(
    cls: type,
    skip: Sequence[str] = (),
    defaults: Mapping[str, Any] | None = None,
    notes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``create_model`` field definitions from a dataclass's fields: its types, its defaults (or ``defaults``)."""
    hints = typing.get_type_hints(cls)
    unknown = (set(defaults or {}) | set(notes or {})) - {f.name for f in dataclasses.fields(cls)}
    if unknown:  # a renamed setting: say so at import, not with a silently ignored default
        raise KeyError(f"{cls.__name__} has no fields {sorted(unknown)}")
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        note = (notes or {}).get(f.name)
        if defaults and f.name in defaults:
            info = Field(defaults[f.name], description=note)
        elif f.default is dataclasses.MISSING:
            info = Field(default_factory=f.default_factory, description=note)
        else:
            info = Field(f.default, description=note)
        out[f.name] = (_schema_type(hints[f.name]), info)
    return out


def _one_of(options: Sequence[str]) -> str:
    return ", ".join(f"`{o}`" for o in options)


class _Section(BaseModel):
    """A config section: unknown keys are errors, types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_data(cls, value: Any) -> Any:
        """What a YAML file would hold: tuples are lists, mappings are dicts, paths are strings."""
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, Mapping) and not isinstance(value, dict):
            return dict(value)
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value


# ------------------------------------------------------------------------------------ sections
class DataConfig(_Section):
    """Which data to load and how (see :mod:`factorcl.data`)."""

    kind: Literal[DATA_KINDS] = "synthetic"
    path: str | dict | None = Field(
        None,
        description="file; for `arrays` also `{train: f, valid: f, test: f}`; for `shards` a folder with "
        "`train/` (`valid/`, `test/`) shard folders, a `.tar` pattern (train only) or `{train: p, test: p}`",
    )
    dataset: str | None = Field(
        None,
        description="multibench: `mosi`, `mosei`, `humor` (`ur-funny`), `sarcasm` "
        "(`mustard`); null: from the file name",
    )
    modalities: list | None = Field(
        None,
        description="X1, X2: two of `vision`, `audio`, `text` (multibench; null: "
        "`[vision, text]`), `[static, timeseries]` in either order "
        "(mimic)",
    )
    task: str | int = Field("mortality", description="mimic: `mortality`, `mortality-binary`, `icd9-K`, or -1..19")
    zero_label: Literal[ZERO_LABEL_RULES] = Field("negative", description="multibench: the class of sentiment 0")
    splits: list = Field(
        default_factory=lambda: [0.8, 0.1, 0.1],
        description="train/valid/test fractions (mimic; arrays without a `split` array)",
    )
    split_seed: int | None = Field(None, description="null: 10 for mimic (MultiBench's split), 0 for arrays")
    synthetic: dict = Field(default_factory=dict, description="`SyntheticConfig` fields, for `kind: synthetic`")
    train_num_samples: int | None = Field(None, description="shards: samples per epoch (null: all, from `sizes.json`)")
    probe_samples: int | None = Field(
        None, description="shards: rows of each split read into memory for the probe (null: 10000)"
    )

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.kind != "synthetic" and not self.path:
            raise ConfigError(f"config key 'data.path' is required for data.kind {self.kind!r}")
        if isinstance(self.path, dict) and self.kind not in ("arrays", "shards"):
            raise ConfigError("config key 'data.path' may map splits to files only for data.kind 'arrays' or 'shards'")
        for key in ("train_num_samples", "probe_samples"):
            if getattr(self, key) is not None and self.kind != "shards":
                raise ConfigError(f"config key 'data.{key}' is only used with data.kind 'shards', not {self.kind!r}")
        for key, least in (("train_num_samples", 1), ("probe_samples", 2)):
            value = getattr(self, key)
            if value is not None and value < least:
                raise ConfigError(f"config key 'data.{key}' must be an integer >= {least} or null, got {value}")
        try:
            check_fractions(self.splits)
        except ValueError as exc:
            raise ConfigError(f"config key 'data.splits': {exc}") from None
        if self.kind == "multibench":
            if self.dataset is not None:
                try:
                    self.dataset = canonical_dataset(self.dataset)
                except ValueError as exc:
                    raise ConfigError(f"config key 'data.dataset': {exc}") from None
            m = self.modalities
            if m is not None and (len(m) != 2 or any(x not in MODALITIES for x in m) or m[0] == m[1]):
                raise ConfigError(
                    f"config key 'data.modalities' must be two different modalities of {list(MODALITIES)}, got {m!r}"
                )
        elif self.dataset is not None:
            raise ConfigError(f"config key 'data.dataset' is only used with data.kind 'multibench', not {self.kind!r}")
        if self.kind == "mimic":
            try:
                parse_task(self.task)
            except ValueError as exc:
                raise ConfigError(f"config key 'data.task': {exc}") from None
            if self.modalities is not None and sorted(self.modalities) != sorted(MIMIC_MODALITIES):
                raise ConfigError(
                    f"config key 'data.modalities' must be {list(MIMIC_MODALITIES)} in either order, "
                    f"got {self.modalities!r}"
                )
        elif self.modalities is not None and self.kind != "multibench":
            raise ConfigError(
                f"config key 'data.modalities' is only used with data.kind 'multibench' or 'mimic', not {self.kind!r}"
            )
        if self.kind == "synthetic":
            names = [f.name for f in dataclasses.fields(SyntheticConfig)]
            for key in self.synthetic:
                if key not in names:
                    raise ConfigError(
                        f"unknown config key 'data.synthetic.{key}'{_suggest(str(key), names)} "
                        f"(allowed: {', '.join(names)})"
                    )
            try:
                SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.synthetic.items()})
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"config key 'data.synthetic': {exc}") from None
        elif self.synthetic:
            raise ConfigError(f"config key 'data.synthetic' is only used with data.kind 'synthetic', not {self.kind!r}")
        return self


class EncodersConfig(_Section):
    """Encoder specs for X1 and X2 (``auto``, ``mlp``, ``gru``, ``transformer``, ``timm:NAME`` or a mapping)."""

    x1: Any = Field("auto", description="encoder spec (below)")
    x2: Any = Field("auto", description="encoder spec (below)")

    @model_validator(mode="after")
    def _check(self) -> EncodersConfig:
        for key in ("x1", "x2"):
            try:
                normalize_spec(getattr(self, key), f"encoders.{key}")
            except ValueError as exc:
                raise ConfigError(f"config key 'encoders.{key}': {exc}") from None
        return self


class _ModelSection(_Section):
    """The model section: every FactorCLConfig setting (num_classes comes from the data); ``augment1`` /
    ``augment2`` are augmentation specs (see :mod:`augment.spec`), parsed once, when the section is checked."""

    _views: tuple[AugmentSpec | None, AugmentSpec | None] = PrivateAttr(default=(None, None))

    def factorcl_config(self, num_classes: int | None = None) -> FactorCLConfig:
        """The :class:`FactorCLConfig` of this section (``num_classes`` comes from the data)."""
        values = {name: getattr(self, name) for name in FactorCLConfig.field_names() if name not in _FROM_DATA}
        return FactorCLConfig(**values, num_classes=num_classes)

    def build_augments(self, shape1: Sequence[int], shape2: Sequence[int]) -> tuple[Augmentation | None, ...]:
        """The augmentations of X1 and X2 for their per-sample shapes (augment2 null: augment1's spec, for X2)."""
        view1, view2 = self._views
        return build_augment(view1, shape1, "model.augment1"), build_augment(view2, shape2, "model.augment2")

    @model_validator(mode="after")
    def _check(self) -> _ModelSection:
        try:
            objective = get_objective(self.method)
        except ValueError as exc:
            raise ConfigError(f"config key 'model.method': {exc}") from None
        self.method = objective.name
        self._merge_options()
        try:  # validated once, by FactorCLConfig itself (labels come from the data: any valid count here)
            self.factorcl_config(num_classes=2 if objective.supervised else None)
        except SettingError as exc:
            text, key = str(exc), exc.key
            if text.startswith(key + " "):  # "critic must be one of ..." -> "config key 'model.critic' must be ..."
                raise ConfigError(f"config key 'model.{key}' {text[len(key) + 1 :]}") from None
            raise ConfigError(f"config key 'model.{key}': {text}") from None
        views = []
        for key in ("augment1", "augment2"):
            try:
                views.append(parse_augment(getattr(self, key), f"model.{key}"))
            except ValueError as exc:
                raise ConfigError(f"config key 'model.{key}': {exc}") from None
        if objective.needs_views and views[0] is None:
            raise ConfigError(
                f"config key 'model.augment1' is {self.augment1!r}, but method {objective.name!r} needs "
                "augmented views: use 'auto' or an augmentation"
            )
        self._views = (views[0], views[0] if self.augment2 is None else views[1])
        return self

    def _merge_options(self) -> None:
        """Older configs set some FactorCL settings under ``model.options``: move them into the section."""
        allowed = [n for n in FactorCLConfig.field_names() if n not in _FROM_DATA]
        for key, value in self.options.items():
            if key not in allowed:
                raise ConfigError(
                    f"unknown config key 'model.options.{key}'{_suggest(str(key), allowed)} "
                    f"(allowed: {', '.join(allowed)})"
                )
            now = getattr(self, key)
            if now != type(self).model_fields[key].default and now != value:
                raise ConfigError(
                    f"config key 'model.options.{key}' and 'model.{key}' both set it: set it once, as 'model.{key}'"
                )
            setattr(self, key, value)
        self.options = {}


#: Notes for the reference table on some FactorCL settings (FactorCLConfig checks their values).
_MODEL_NOTES = {
    "method": _one_of(METHODS),
    "critic": _one_of(CRITICS),
    "conditioning": f"null: the method's default (the first); SSL: {_one_of(SSL_CONDITIONINGS)}; "
    f"SUP: {_one_of(SUP_CONDITIONINGS)}",
    "embed_dim": "width of the heads; null: the encoders' width",
    "aux_critic_hidden": "width of the critics of the removal and conditional terms; null: critic_hidden; "
    "128 is the fast option",
    "shared_heads": _one_of(SHARED_HEADS),
}
#: The model section: FactorCLConfig's fields (built from it, so the two never drift apart), then the views.
ModelConfig = create_model(
    "ModelConfig",
    __base__=_ModelSection,
    __module__=__name__,
    __doc__=_ModelSection.__doc__,
    **_dataclass_fields(FactorCLConfig, skip=_FROM_DATA, defaults=RUN_MODEL_DEFAULTS, notes=_MODEL_NOTES),
    augment1=(Any, Field("auto", description="augmentation spec of X1 (below), for SSL methods")),
    augment2=(Any, Field(None, description="augmentation spec of X2; null: augment1's (built for X2's shape)")),
    options=(dict, Field(default_factory=dict, description="older configs' place for FactorCL settings")),
)


class _TrainSection(_Section):
    """The ``train`` section: TrainConfig's fields (but ``out_dir``, a top-level key) and the data loader's keys."""

    #: Keys that moved elsewhere: what the error says instead of "unknown key".
    moved_keys: ClassVar[dict[str, str]] = {"out_dir": "is not used: set the top-level 'out_dir'"}

    @model_validator(mode="after")
    def _check(self) -> _TrainSection:
        given = self.model_dump(exclude_unset=True)
        try:  # TrainConfig checks its own values
            TrainConfig(**{k: v for k, v in given.items() if k not in LOADER_KEYS})
        except (ValueError, TypeError) as exc:
            bad = next((k for k in given if str(exc).startswith(f"{k}=")), None)
            where = f"config key 'train.{bad}'" if bad else "config section 'train'"
            raise ConfigError(f"{where}: {exc}") from None
        return self


_LOADER_FIELDS: dict[str, Any] = {
    "batch_size": (int, Field(128, ge=1, description="batch size of the training data loader")),
    "drop_last": (bool, Field(True, description="drop the last incomplete batch (unless it is the only one)")),
    "num_workers": (int, Field(0, ge=0, description="data loader worker processes")),
}
#: Keys of the ``train`` section that configure the data loader (the rest are TrainConfig fields), with defaults.
LOADER_KEYS: dict[str, Any] = {name: info.default for name, (_, info) in _LOADER_FIELDS.items()}
TrainSection = create_model(
    "TrainSection",
    __base__=_TrainSection,
    __module__=__name__,
    __doc__=_TrainSection.__doc__,
    **_dataclass_fields(TrainConfig, skip=("out_dir",)),
    **_LOADER_FIELDS,
)

L2Strength = Annotated[YamlFloat, Field(ge=0)]


class ProbeConfig(_Section):
    """Linear-probe evaluation: fit on train features, L2 chosen on valid (or val_fraction of train), score on test."""

    enabled: bool = True
    select: Literal[PROBE_SELECT] = Field(
        "valid", description="choose the L2 on the valid split, or on `val_fraction` of train"
    )
    val_fraction: YamlFloat = Field(0.2, ge=0, lt=1, description="with `select: val_fraction`")
    l2_grid: Annotated[list[L2Strength], _Must("a non-empty list of L2 strengths >= 0")] = Field(
        default_factory=lambda: [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 0.0], min_length=1
    )
    max_iter: int = Field(200, ge=1, description="L-BFGS iterations")
    ablation: bool = Field(True, description="also probe S, U1, U2 (factorised) or Z1, Z2 separately (Table 4.4)")
    batch_size: int = Field(256, ge=1, description="feature extraction batch")
    seed: int = 0


_SECTIONS = ("data", "encoders", "model", "train", "probe")


class RunConfig(_Section):
    """A whole run: data, encoders, model, training, probe, output folder.

    ``train`` holds the keys the config sets (:meth:`train_value` adds the defaults). Two configs
    are equal when their settings are, whichever file (``source``) they were read from.
    """

    data: DataConfig = Field(default_factory=DataConfig)
    encoders: EncodersConfig = Field(default_factory=EncodersConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: dict[str, Any] = Field(default_factory=dict)  # checked by TrainSection
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    out_dir: Annotated[str, _Must("a string (a folder path)")] = Field("runs/factorcl", pattern=r"\S")
    _source: str | None = PrivateAttr(default=None)

    @field_validator(*_SECTIONS, mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # a section written with no keys

    @field_validator("train")
    @classmethod
    def _check_train(cls, value: dict[str, Any]) -> dict[str, Any]:
        return TrainSection.model_validate(value).model_dump(exclude_unset=True)

    @property
    def source(self) -> str | None:
        """The file it was read from (relative data paths are also looked up in its folder)."""
        return self._source

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunConfig) and self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what :func:`save_config` writes), without ``source``."""
        return self.model_dump()

    def train_value(self, key: str) -> Any:
        """A ``train`` key with its default (TrainConfig's, or the loader default)."""
        if key in self.train:
            return self.train[key]
        return TrainSection.model_fields[key].get_default(call_default_factory=True)

    def trainer_config(self, **overrides: Any) -> TrainConfig:
        """The :class:`factorcl.TrainConfig` of this run (out_dir included)."""
        kwargs = {k: v for k, v in self.train.items() if k not in LOADER_KEYS}
        kwargs["out_dir"] = self.out_dir
        kwargs.update(overrides)
        return TrainConfig(**kwargs)

    def base_dir(self) -> Path | None:
        """The folder of the config file (relative data paths are also looked up there)."""
        return Path(self.source).resolve().parent if self.source else None


def check_augment_spec(spec: Any, where: str = "augment") -> None:
    """Validate an augmentation spec without building it (a ValueError names the mistake; see :mod:`augment.spec`)."""
    parse_augment(spec, where)


# ------------------------------------------------------------------------------ error wording
def _type_name(tp: Any) -> str:
    """An annotation in words: ``int | None`` -> ``an integer or null``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is Literal:
        return f"one of {list(args)}"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping"
    return {
        int: "an integer",
        float: "a number",
        bool: "true/false",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(origin or tp, getattr(tp, "__name__", str(tp)))


def _bounds(info: FieldInfo) -> str:
    """A field's numeric bounds in words: ``>= 1``, ``in [0, 1)`` (empty without any)."""
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    found = {op: getattr(m, op) for m in info.metadata for op in ops if getattr(m, op, None) is not None}
    low = next((op for op in ("ge", "gt") if op in found), None)
    high = next((op for op in ("le", "lt") if op in found), None)
    if low and high:
        return f"in {'[' if low == 'ge' else '('}{found[low]}, {found[high]}{']' if high == 'le' else ')'}"
    return " and ".join(f"{ops[op]} {value}" for op, value in found.items())


def _words(info: FieldInfo) -> str:
    """What a key must be, in words: what its schema says, or its type and bounds."""
    must = next((m.text for m in info.metadata if isinstance(m, _Must)), None)
    return must or " ".join(filter(None, [_type_name(info.annotation), _bounds(info)]))


def _section_model(name: str) -> type[BaseModel] | None:
    """The model that checks a top-level key's value (None for a plain key such as out_dir)."""
    if name == "train":
        return TrainSection
    tp = RunConfig.model_fields[name].annotation if name in RunConfig.model_fields else None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _rank(error: Mapping[str, Any]) -> int:
    """Which mistake to report first: unknown sections, then keys and types, then a section's own checks."""
    if error["type"] in ("extra_forbidden", "invalid_key") and len(error["loc"]) == 1:
        return 0
    return 2 if error["type"] == "value_error" else 1


def _config_error(exc: ValidationError, data: Mapping[str, Any]) -> ConfigError:
    """pydantic's first error in our words: the dotted key, what it must be, what it got."""
    error = min(exc.errors(include_url=False), key=_rank)
    kind, loc = error["type"], error["loc"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a section's own check, already in our words
        return cause
    model, name, key, value = RunConfig, str(loc[0]), loc[0], data.get(loc[0])
    section = _section_model(name)
    if section is not None and len(loc) > 1:  # a key of a section
        model, key = section, loc[1]
        value = value.get(key) if isinstance(value, Mapping) else None
        name = f"{name}.{key}"
    if kind in ("extra_forbidden", "invalid_key"):
        moved = getattr(model, "moved_keys", {})
        if key in moved:
            return ConfigError(f"config key {name!r} {moved[key]}")
        allowed = list(model.model_fields)
        label, shown = ("sections", key) if model is RunConfig else ("allowed", name)
        return ConfigError(f"unknown config key {shown!r}{_suggest(str(key), allowed)} ({label}: {', '.join(allowed)})")
    if cause is not None:
        return ConfigError(f"config key {name!r}: {cause}")
    if model is RunConfig and section is not None:
        return ConfigError(f"config key {name!r} must be a mapping, got {type(value).__name__}")
    info = model.model_fields[key]
    if kind == "literal_error":
        options = list(typing.get_args(info.annotation))
        suggestion = _suggest(str(value), [str(o) for o in options])
        return ConfigError(f"config key {name!r} must be one of {options}, got {value!r}{suggestion}")
    bounds = _bounds(info)
    if bounds and kind.startswith(("greater", "less")):  # the type is right, the value out of bounds
        return ConfigError(f"config key {name!r} must be {bounds}, got {value}")
    return ConfigError(f"config key {name!r} must be {_words(info)}, got {value!r}")


# ---------------------------------------------------------------------------------- reference
def _inline_yaml(value: Any) -> str:
    """A default as it is written in a YAML file (inline)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(_inline_yaml, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_inline_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def config_reference() -> str:
    """The README's config reference, from the schema: a Markdown table of every key (type, default, notes)."""
    rows = ["| key | type | default | |", "|---|---|---|---|"]
    for section in RunConfig.model_fields:
        model = _section_model(section)
        fields = model.model_fields.items() if model else [("", RunConfig.model_fields[section])]
        for key, info in fields:
            default = _inline_yaml(info.get_default(call_default_factory=True))
            name = f"{section}.{key}" if key else section
            rows.append(f"| `{name}` | {_words(info)} | `{default}` | {info.description or ''} |")
    return "\n".join(rows) + "\n"


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
    text = read_utf8(p)
    try:
        data = None if not text.strip() else json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"could not parse {p}: {exc}") from None
    if data is None or data == {}:
        # An empty file (or mapping) is almost always a mistake (a failed copy, the wrong file):
        # running the defaults would silently start a job the user did not ask for.
        raise ConfigError(
            f"config file {p} is empty; write at least one section (data, encoders, model, train, "
            "probe, out_dir), e.g. 'data: {kind: synthetic}' for the built-in data"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{p} must hold a mapping of sections (data, encoders, model, train, probe, out_dir), "
            f"got {type(data).__name__}"
        )
    return dict(data)


def config_from_dict(data: Mapping[str, Any], source: str | None = None) -> RunConfig:
    """A validated :class:`RunConfig` from raw data (the sections of a config file)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a run config must be a mapping of sections, got {type(data).__name__}")
    try:
        cfg = RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise _config_error(exc, data) from None
    cfg._source = source
    return cfg


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | RunConfig,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> RunConfig:
    """A validated :class:`RunConfig` from a YAML/JSON file, raw data or a RunConfig, with optional overrides."""
    if isinstance(source, RunConfig):
        return config_from_dict(apply_overrides(source.to_dict(), overrides), source.source)
    if isinstance(source, Mapping):
        return config_from_dict(apply_overrides(source, overrides))
    return config_from_dict(apply_overrides(read_config_file(source), overrides), str(source))


def save_config(cfg: RunConfig, path: str | os.PathLike) -> Path:
    """Write a config as YAML (loadable by :func:`load_config`), atomically."""
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


def resolve_shard_spec(
    spec: str | os.PathLike | Sequence[str], base_dir: str | os.PathLike | None = None
) -> str | list[str]:
    """A shard spec (folder, ``.tar`` file, brace pattern, ``::``-joined patterns, or a list of these)
    with each local part made absolute as :func:`resolve_path` does: a pattern's folders up to the
    first one with a brace must exist. Remote URLs and ``pipe:`` commands are kept as they are."""
    if isinstance(spec, (list, tuple)):
        return [str(resolve_shard_spec(part, base_dir)) for part in spec]
    parts = []
    for part in str(spec).split("::"):
        if "://" in part or part.startswith("pipe:"):
            parts.append(part)
        elif "{" in part:
            p = Path(part).expanduser()
            fixed = next(i for i, piece in enumerate(p.parts) if "{" in piece)  # the folders before the pattern
            head = Path(*p.parts[:fixed]) if fixed else Path(".")
            parts.append(str(resolve_path(head, base_dir).joinpath(*p.parts[fixed:])))
        else:
            parts.append(str(resolve_path(part, base_dir)))
    return "::".join(parts)


def resolve_data_path(kind: str, path: Any, base_dir: str | os.PathLike | None = None) -> Any:
    """``data.path`` (one path or a mapping of splits) made absolute for ``data.kind`` ``kind``: shard
    specs by :func:`resolve_shard_spec`, files by :func:`resolve_path`, as strings."""

    def one(value: Any) -> str | list[str]:
        return resolve_shard_spec(value, base_dir) if kind == "shards" else str(resolve_path(value, base_dir))

    return {k: one(v) for k, v in path.items()} if isinstance(path, Mapping) else one(path)


__all__ = [
    "ConfigError",
    "DataConfig",
    "EncodersConfig",
    "ModelConfig",
    "ProbeConfig",
    "RunConfig",
    "apply_overrides",
    "build_augment",
    "check_augment_spec",
    "config_from_dict",
    "config_reference",
    "load_config",
    "resolve_data_path",
    "resolve_path",
    "resolve_shard_spec",
    "save_config",
]
