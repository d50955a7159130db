"""Augmentation specs: the small language that names augmentations in config files, parsed once.

A spec is plain data (what a YAML or JSON file holds)::

    none                                    no augmentation (also off, "", false, null)
    NAME                                    a preset or a single augmentation, with its defaults
    {name: NAME, PARAM: VALUE, ...}         the same with parameters, e.g. {name: noise, std: 0.2}
    [SPEC, ...]                             one of them per sample, uniformly
    {choice: [SPEC, ...], weights: [...]}   one of them per sample, with these weights
    {compose: [SPEC, ...]}                  all of them, in order

Presets (:data:`RECIPES` with ``preset=True``, and ``auto``):

* ``auto``: by the per-sample shape, ``features`` for vectors, ``sequence`` for sequences
  ``(T, d)``, ``image`` for images ``(3, H, W)`` (it takes the parameters of all three).
* ``features``: per sample one of Gaussian noise ``std``, mixup ``alpha`` with the sample keeping
  the larger weight (``Mixup(dominant=True)``: the view stays a view of its sample), identity.
  Modelled on the published ``augment_embed_single``, which draws one of its transforms for the
  whole *batch* and mixes with a symmetric Beta weight, so its mixup can give a sample less than
  half of itself; here each sample draws its own.
* ``sequence``: one of time shuffle, Gaussian noise ``std``, masking a fraction ``p`` of the
  steps, identity (the published ``augment_single``).
* ``image`` / ``image_unique``: the kornia presets of :class:`~augment.images.ImageAugment`
  (``strength``).

Single augmentations: ``noise`` (``std``), ``feature_dropout`` (``p``, ``shared_over_time``),
``time_mask`` (``p`` or ``max_width``), ``time_shuffle`` (``window``), ``mixup`` (``alpha``),
``identity``. Sequence augmentations never touch padded steps (the caller passes the mask).

:func:`parse_augment` reads a spec once into an :class:`AugmentSpec` tree. It checks the names,
the keys and the values; a value is checked by the augmentation's own constructor (each named
augmentation is made once, which is cheap: nothing is imported or allocated), so the limits live
in one place. :meth:`AugmentSpec.build` then makes the augmentation for inputs of a per-sample
shape (``auto`` resolves there, and shape mismatches are reported there). Every message names
the place in the spec: ``where`` is its root (e.g. ``model.augment1``), and each node knows its
``path`` below it (e.g. ``.choice[1]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from functools import partial
from typing import Any

from .base import Augmentation, Compose, Identity, RandomChoice
from .features import FeatureDropout, GaussianNoise, Mixup, TimeMask, TimeShuffle
from .images import ImageAugment

__all__ = [
    "AUTO",
    "RECIPES",
    "AugmentSpec",
    "ChoiceSpec",
    "ComposeSpec",
    "NamedSpec",
    "Recipe",
    "build_augment",
    "is_none",
    "parse_augment",
]


# ------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """How a named augmentation is made: ``make(**params)``, with ``params`` its defaults."""

    params: Mapping[str, Any]
    make: Callable[..., Augmentation]
    rank: int | None = None  # the per-sample rank it needs (2: sequences, 3: images); None: any
    preset: bool = False  # a preset (a mixture of several augmentations) rather than a single one


def _features(std: float, alpha: float) -> Augmentation:
    return RandomChoice([GaussianNoise(std), Mixup(alpha), Identity()])


def _sequence(std: float, p: float) -> Augmentation:
    return RandomChoice([TimeShuffle(), GaussianNoise(std), TimeMask(p=p), Identity()])


#: Every named augmentation (presets first; ``auto`` is resolved by :data:`AUTO`).
RECIPES: dict[str, Recipe] = {
    "features": Recipe({"std": 0.1, "alpha": 1.0}, _features, preset=True),
    "sequence": Recipe({"std": 0.1, "p": 0.2}, _sequence, rank=2, preset=True),
    "image": Recipe({"strength": 1.0}, partial(ImageAugment, "standard"), rank=3, preset=True),
    "image_unique": Recipe({"strength": 1.0}, partial(ImageAugment, "unique"), rank=3, preset=True),
    "noise": Recipe({"std": 0.1}, GaussianNoise),
    "feature_dropout": Recipe({"p": 0.1, "shared_over_time": True}, FeatureDropout),
    "time_mask": Recipe({"p": None, "max_width": None}, TimeMask, rank=2),
    "time_shuffle": Recipe({"window": None}, TimeShuffle, rank=2),
    "mixup": Recipe({"alpha": 1.0}, Mixup),
    "identity": Recipe({}, Identity),
}
#: The preset ``auto`` stands for, by the rank of a sample (vectors, sequences, images).
AUTO: dict[int, str] = {1: "features", 2: "sequence", 3: "image"}
_AUTO_PARAMS = {k: v for name in AUTO.values() for k, v in RECIPES[name].params.items()}
_PRESETS = [*(n for n, r in RECIPES.items() if r.preset), "auto"]
_SINGLE = [n for n, r in RECIPES.items() if not r.preset]
_NEEDS = {2: "sequences (per-sample shape (T, d))", 3: "images (per-sample shape (3, H, W))"}
_NONE_WORDS = ("none", "off", "")


def is_none(spec: Any) -> bool:
    """Whether a spec means "no augmentation" (``none``, ``off``, ``""``, ``false``)."""
    return spec is False or (isinstance(spec, str) and spec.strip().lower() in _NONE_WORDS)


def _suggest(word: str, options: Sequence[str]) -> str:
    close = get_close_matches(word, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _make(name: str, params: Mapping[str, Any]) -> Augmentation:
    """The augmentation ``name`` with ``params`` over its defaults (the ones it does not take are ignored)."""
    recipe = RECIPES[name]
    return recipe.make(**{**recipe.params, **{k: v for k, v in params.items() if k in recipe.params}})


# ---------------------------------------------------------------------------------- spec trees
class AugmentSpec:
    """A parsed spec (see :func:`parse_augment`); ``path`` is its place below the spec's root."""

    path: str

    def build(self, sample_shape: Sequence[int], where: str = "augment") -> Augmentation:
        """The augmentation for inputs of per-sample shape ``sample_shape`` (``where``: the root's name)."""
        raise NotImplementedError


@dataclass(frozen=True)
class NamedSpec(AugmentSpec):
    """A preset or single augmentation (a key of :data:`RECIPES`, or ``auto``) with its given parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    def build(self, sample_shape: Sequence[int], where: str = "augment") -> Augmentation:
        shape, where = tuple(sample_shape), where + self.path
        name = self.name
        if name == "auto":
            name = AUTO.get(len(shape))
            if name is None:
                raise ValueError(f"{where}: no automatic augmentation for inputs of per-sample shape {shape}")
        rank = RECIPES[name].rank
        if rank is not None and len(shape) != rank:
            raise ValueError(f"{where}: {name!r} needs {_NEEDS[rank]}, got {shape}")
        return _make(name, self.params)


@dataclass(frozen=True)
class ChoiceSpec(AugmentSpec):
    """One of ``items`` per sample (:class:`~augment.base.RandomChoice`), uniformly or with ``weights``."""

    items: tuple[AugmentSpec, ...]
    weights: tuple[Any, ...] | None = None
    path: str = ""

    def build(self, sample_shape: Sequence[int], where: str = "augment") -> Augmentation:
        return RandomChoice([item.build(sample_shape, where) for item in self.items], weights=self.weights)


@dataclass(frozen=True)
class ComposeSpec(AugmentSpec):
    """All of ``items``, in order (:class:`~augment.base.Compose`)."""

    items: tuple[AugmentSpec, ...]
    path: str = ""

    def build(self, sample_shape: Sequence[int], where: str = "augment") -> Augmentation:
        return Compose([item.build(sample_shape, where) for item in self.items])


# ------------------------------------------------------------------------------------- parsing
def parse_augment(spec: Any, where: str = "augment") -> AugmentSpec | None:
    """The parsed ``spec``, or None for no augmentation; a ValueError names the place (``where``...) of a mistake."""
    if spec is None or is_none(spec):
        return None
    return _parse(spec, where, "")


def build_augment(spec: Any, sample_shape: Sequence[int], where: str = "augment") -> Augmentation | None:
    """The augmentation (or None) of a spec, for inputs of per-sample shape ``sample_shape``.

    ``spec`` is plain data (see the module docstring) or an :class:`AugmentSpec` already parsed.
    """
    parsed = spec if isinstance(spec, AugmentSpec) else parse_augment(spec, where)
    return None if parsed is None else parsed.build(sample_shape, where)


def _check_name(given: Any, name: str, at: str) -> None:
    if name not in RECIPES and name != "auto":
        raise ValueError(
            f"{at} must be 'none', a preset ({', '.join(_PRESETS)}) or an augmentation "
            f"({', '.join(_SINGLE)}), got {given!r}{_suggest(name, [*_PRESETS, *_SINGLE])}"
        )


def _parse(spec: Any, where: str, path: str) -> AugmentSpec:
    at = where + path
    if spec is None or is_none(spec):  # a branch of a list or choice that leaves the sample as it is
        return NamedSpec("identity", path=path)
    if isinstance(spec, str):
        name = spec.strip().lower()
        _check_name(spec, name, at)
        return NamedSpec(name, path=path)
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"{at} is an empty list: give at least one augmentation")
        return ChoiceSpec(tuple(_parse(s, where, f"{path}[{i}]") for i, s in enumerate(spec)), path=path)
    if not isinstance(spec, Mapping):
        raise ValueError(f"{at} must be a name, a mapping with 'name', or a list, got {type(spec).__name__}")
    if "choice" in spec or "compose" in spec:
        return _parse_container(spec, where, path)
    if "name" not in spec:
        raise ValueError(f"{at} must have a 'name' (or 'choice' / 'compose'), got keys {sorted(spec)}")
    name = str(spec["name"]).strip().lower()
    if not is_none(name):
        _check_name(name, name, f"{at}.name")
    allowed = _AUTO_PARAMS if name == "auto" else RECIPES[name].params if name in RECIPES else {}
    for key in spec:
        if key != "name" and key not in allowed:
            raise ValueError(
                f"unknown key {at}.{key} for augmentation {name!r}{_suggest(str(key), list(allowed))}"
                f" (allowed: {', '.join(allowed) or 'none'})"
            )
    params = {k: v for k, v in spec.items() if k != "name"}
    name = "identity" if is_none(name) else name
    for kind in AUTO.values() if name == "auto" else (name,):
        try:  # the augmentation checks its own values: made once here, so a bad one is reported at load time
            _make(kind, params)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{at}: {exc}") from None
    return NamedSpec(name, params, path)


def _parse_container(spec: Mapping[str, Any], where: str, path: str) -> AugmentSpec:
    at = where + path
    key = "choice" if "choice" in spec else "compose"
    extra = sorted(str(k) for k in set(spec) - ({key, "weights"} if key == "choice" else {key}))
    if extra:
        raise ValueError(
            f"unknown key {at}.{extra[0]} ({key!r} takes a list of augmentations"
            f"{' and optional weights' if key == 'choice' else ''})"
        )
    items = spec[key]
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{at}.{key} must be a non-empty list of augmentations")
    parsed = tuple(_parse(s, where, f"{path}.{key}[{i}]") for i, s in enumerate(items))
    if key == "compose":
        return ComposeSpec(parsed, path)
    weights = spec.get("weights")
    if weights is not None:
        try:  # RandomChoice checks its weights (count, signs); the branches do not matter for that
            weights = tuple(weights)
            RandomChoice([Identity()] * len(parsed), weights=weights)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{at}.weights: {exc}") from None
    return ChoiceSpec(parsed, weights, path)
