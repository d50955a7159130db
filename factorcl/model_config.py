"""``FactorCLConfig``: every setting of the FactorCL model, validated once, for every front door.

``FactorCL(...)`` keywords, the ``model:`` section of a ``factorcl train`` config, the CLIP config
(which holds one next to its towers' settings) and the synthetic benchmark all build the model
from this one type. Modules and callables (encoders, augmentations, custom critics) are not
settings and stay arguments of :class:`factorcl.FactorCL`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import bounds

from .objectives import get_objective

#: Critic kinds: ``separable`` (the fast default) and ``concat`` (the paper's).
CRITICS: tuple[str, ...] = ("separable", "concat")
#: Conditionings of the SSL methods (on the augmented views); the first is the default.
SSL_CONDITIONINGS: tuple[str, ...] = ("sampled", "chain", "concat")
#: Conditionings of the SUP methods (on labels); the first is the default.
SUP_CONDITIONINGS: tuple[str, ...] = ("grouped", "concat", "chain")
#: Shared heads: an MLP per modality, or the encoder's output itself (CLIP's own embeddings as Z_S).
SHARED_HEADS: tuple[str, ...] = ("mlp", "identity")


class SettingError(ValueError):
    """An invalid FactorCL setting; ``key`` names it (the config layer turns it into ``model.<key>``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class FactorCLConfig:
    """The FactorCL model's settings.

    ``method`` picks a row of :data:`factorcl.objectives.METHODS`; ``critic`` ("separable", the
    fast default, or "concat", the paper's) builds every term's critic. ``conditioning`` says how
    the conditional terms condition on C. On the augmented views (SSL): "sampled" (default),
    I(Z1; Z2 | C) with each row's negatives drawn from a learned Gaussian q(Z2 | C) (see
    :mod:`bounds.sampled`), valid when the views fix most of each input (I(Z; C) >> log B, where
    the in-batch forms break); "chain", I(Z1; Z2, C) - I(Z1; C), a difference of two bounds
    capped at log B, valid only while I(Z1; C) << log B; or "concat", the paper's critic on
    [Z1, Z1'] and [Z2, Z2'], which with in-batch negatives estimates I(Z1, Z1'; Z2, Z2') instead
    (it rewards shared information in the unique heads). On labels (SUP): "grouped" (default,
    exact for discrete labels), "concat" or "chain". ``num_negatives`` is the number of sampled
    negatives per row of "sampled". ``embed_dim`` is every head's width (None: the encoders');
    ``head_layers`` their hidden layers; ``critic_hidden`` / ``critic_layers`` / ``critic_embed``
    size the critics. ``aux_critic_hidden`` is the hidden width of the critics, proposals and
    correction critics of the terms FactorCL adds to Cross+Self (the NCE-CLUB removal terms and
    the conditional I_NCE(Z_U1; Z_U2 | C)); None (the default) gives them ``critic_hidden``, as
    published. 128 makes a FactorCL-SSL step about 2.1x faster at the default widths, at an
    accuracy cost that depends on the data (README, "Cost of each method's objective").
    ``temperature`` is the
    separable critics' cosine temperature, ``supcon_temperature`` SupCon's.
    ``symmetric_shared_keep`` averages both directions of I_NCE(Z_S1; Z_S2), so that with CLIP's
    logit as critic the term is exactly log B minus the CLIP loss; ``shared_heads="identity"``
    makes Z_S (or Z) the encoder output itself. ``concat_views`` encodes inputs and views in one
    pass when their shapes agree; ``include_diagonal`` keeps the positive among NCE-CLUB's
    negatives (the published form).
    """

    method: str = "factorcl-ssl"
    critic: str = "separable"
    conditioning: str | None = None  # None: the method's default (sampled for SSL, grouped for SUP)
    num_classes: int | None = None  # required by supervised methods
    embed_dim: int | None = 128  # width of every head; None: the encoders' width (they must agree)
    head_layers: int = 0
    shared_heads: str = "mlp"  # "identity": Z_S (or Z) is the encoder output itself
    critic_hidden: int = 512
    aux_critic_hidden: int | None = None  # None: critic_hidden (128 is the fast option)
    critic_layers: int = 1
    critic_embed: int = 128
    critic_normalize: bool = True
    temperature: float = 0.1
    supcon_temperature: float = 0.07
    include_diagonal: bool = False
    concat_views: bool = True
    symmetric_shared_keep: bool = False
    num_negatives: int = bounds.conditional.DEFAULT_NUM_NEGATIVES

    def __post_init__(self) -> None:
        try:
            objective = get_objective(self.method)
        except ValueError as exc:
            raise SettingError("method", str(exc)) from None
        object.__setattr__(self, "method", objective.name)
        if self.critic not in CRITICS:
            raise SettingError("critic", f"critic must be one of {list(CRITICS)}, got {self.critic!r}")
        if self.shared_heads not in SHARED_HEADS:
            raise SettingError(
                "shared_heads", f"shared_heads must be one of {list(SHARED_HEADS)}, got {self.shared_heads!r}"
            )
        for name in ("temperature", "supcon_temperature"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        for name, low in (
            ("head_layers", 0),
            ("critic_hidden", 1),
            ("aux_critic_hidden", 1),
            ("critic_layers", 0),
            ("critic_embed", 1),
            ("num_negatives", 1),
            ("embed_dim", 1),
            ("num_classes", 1),
        ):
            value = getattr(self, name)
            if value is None and name in ("embed_dim", "num_classes", "aux_critic_hidden"):
                continue
            object.__setattr__(self, name, _integer(name, value, low))
        if objective.supervised and (self.num_classes is None or self.num_classes < 2):
            raise SettingError(
                "num_classes",
                f"method {objective.name!r} uses labels: num_classes must be an integer >= 2, got {self.num_classes!r}",
            )
        allowed = self.conditionings
        if self.conditioning is not None and self.conditioning not in allowed:
            kind = "labels" if objective.supervised else "augmented views"
            raise SettingError(
                "conditioning",
                f"conditioning for {objective.name!r} (conditions on {kind}) must be one of "
                f"{list(allowed)}, got {self.conditioning!r}",
            )

    @property
    def conditionings(self) -> tuple[str, ...]:
        """The conditionings this method allows (the first is its default)."""
        return SUP_CONDITIONINGS if get_objective(self.method).supervised else SSL_CONDITIONINGS

    @property
    def effective_aux_critic_hidden(self) -> int:
        """``aux_critic_hidden``, or ``critic_hidden`` when it is None."""
        return self.critic_hidden if self.aux_critic_hidden is None else self.aux_critic_hidden

    @property
    def effective_conditioning(self) -> str:
        """``conditioning``, or the method's default when it is None."""
        return self.conditioning or self.conditionings[0]

    def replace(self, **changes: Any) -> FactorCLConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for configs, checkpoints and exports)."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of every setting."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, ignore_unknown: bool = False) -> FactorCLConfig:
        """Build from plain data; unknown keys are an error naming them (or ignored: older/newer exports)."""
        names = cls.field_names()
        unknown = sorted(set(data) - set(names))
        if unknown and not ignore_unknown:
            raise ValueError(f"unknown FactorCL setting(s) {unknown}; the settings are {list(names)}")
        return cls(**{k: v for k, v in data.items() if k in names})


def _positive(name: str, value: Any) -> float:
    """``value`` as a finite float > 0 (numpy scalars and 0-dim tensors too; a string or bool is refused)."""
    if isinstance(value, (bool, str, bytes)):
        raise SettingError(name, f"{name} must be a number > 0, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(name, f"{name} must be a number > 0, got {value!r} ({type(value).__name__})") from None
    if not number > 0 or math.isinf(number):  # `not number > 0` also refuses NaN
        raise SettingError(name, f"{name} must be > 0, got {value}")
    return number


def _integer(name: str, value: Any, low: int) -> int:
    """``value`` as an int >= ``low`` (numpy integers too); a float, string or bool is refused, not rounded."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise SettingError(name, f"{name} must be an integer >= {low}, got {value!r}") from None
    if number < low:
        raise SettingError(name, f"{name} must be an integer >= {low}, got {value!r}")
    return number


__all__ = [
    "CRITICS",
    "SHARED_HEADS",
    "SSL_CONDITIONINGS",
    "SUP_CONDITIONINGS",
    "FactorCLConfig",
    "SettingError",
]
