"""FactorCL around CLIP's towers: the config (a FactorCLConfig plus the towers' settings) and the builder.

Modalities: **x1 = caption tokens** (text tower, augmented independently) and **x2 = images**
(image tower, unique augmentation conditioned on the caption), as in the paper's Fig. 4.4. So
``s1``/``u1`` are the text's shared/unique representations and ``s2``/``u2`` the image's.

``shared_critic="clip"`` (the default) makes the shared term CLIP's own objective: the shared
heads (``s1``, ``s2``; ``z1``, ``z2`` for the non-factorised methods) are identities
(``FactorCLConfig.shared_heads="identity"``), so Z_S are the towers' own embeddings, and the
shared_keep critic is :class:`ClipLogitCritic` (CLIP's scaled cosine with its learnable
``logit_scale``), symmetrised. Then ``shared_keep`` = log B - CLIP loss exactly, and the
``simclr`` method is plain CLIP fine-tuning. The heads' width is then CLIP's embedding width.
``shared_critic="learned"`` keeps FactorCL's learned heads and critic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..model import FactorCL
from ..model_config import CRITICS, SSL_CONDITIONINGS, SUP_CONDITIONINGS, FactorCLConfig
from ..objectives import get_objective
from .loading import ClipBundle
from .towers import ClipLogitCritic, ImageTower, TextTower, lock_towers, set_grad_checkpointing
from .views import IMAGE_AUGS, ClipTextAugment, ImageTextScorer, image_augmentation

__all__ = ["CONDITIONINGS", "CRITICS", "SHARED_CRITICS", "ClipFactorCLConfig", "build_clip_factorcl"]

SHARED_CRITICS: tuple[str, ...] = ("clip", "learned")
# FactorCL's conditioning choices over all methods, for the command line (FactorCL checks them per method).
CONDITIONINGS: tuple[str, ...] = tuple(dict.fromkeys(SSL_CONDITIONINGS + SUP_CONDITIONINGS))
#: The CLIP path's FactorCL defaults: heads as wide as CLIP's embeddings.
CLIP_MODEL_DEFAULTS = FactorCLConfig(embed_dim=None)


@dataclass(init=False)
class ClipFactorCLConfig:
    """How the FactorCL model is built around the towers (saved with the exported heads to rebuild it).

    ``model`` holds the FactorCL settings (method, critic, conditioning, num_classes, embed_dim,
    head_layers, ...); the other fields are the towers' and the views'. FactorCL settings may also
    be passed as keywords: ``ClipFactorCLConfig(method="simclr", lock_text=True)``.
    """

    model: FactorCLConfig
    shared_critic: str = "clip"
    image_aug: str = "unique-preset"
    image_aug_strength: float = 1.0
    num_candidates: int = 4  # K for image_aug="unique-scored"
    text_aug: str = "delete"
    text_aug_p: float = 0.15
    lock_image: bool = False
    lock_text: bool = False
    unlocked_blocks: int = 0
    grad_checkpointing: bool = False

    def __init__(self, model: FactorCLConfig | Mapping[str, Any] | str | None = None, **settings: Any) -> None:
        if isinstance(model, str):  # the earlier signature: ClipFactorCLConfig("simclr", ...)
            settings, model = {"method": model, **settings}, None
        for key, value in dict(settings.pop("factorcl_kwargs", None) or {}).items():  # the earlier place for these
            if key == "critics":
                raise TypeError(
                    "factorcl_kwargs['critics'] is no longer a setting: critics are modules; pass them "
                    "to FactorCL (build_clip_factorcl builds CLIP's own shared critic)"
                )
            settings.setdefault(key, value)
        own = {f.name: f.default for f in fields(ClipFactorCLConfig) if f.name != "model"}
        base = (
            CLIP_MODEL_DEFAULTS
            if model is None
            else (model if isinstance(model, FactorCLConfig) else CLIP_MODEL_DEFAULTS.replace(**dict(model)))
        )
        model_settings = {k: v for k, v in settings.items() if k not in own}
        unknown = sorted(set(model_settings) - set(FactorCLConfig.field_names()))
        if unknown:
            raise TypeError(
                f"ClipFactorCLConfig got unknown setting(s) {unknown}; its own are {sorted(own)}, the "
                f"model's {list(FactorCLConfig.field_names())}"
            )
        self.model = base.replace(**model_settings) if model_settings else base
        for name, default in own.items():
            setattr(self, name, settings.get(name, default))
        if self.shared_critic not in SHARED_CRITICS:
            raise ValueError(f"shared_critic must be one of {list(SHARED_CRITICS)}, got {self.shared_critic!r}")
        if self.image_aug not in IMAGE_AUGS:
            raise ValueError(f"image_aug must be one of {list(IMAGE_AUGS)}, got {self.image_aug!r}")
        if int(self.unlocked_blocks) < 0:
            raise ValueError(f"unlocked_blocks must be >= 0, got {self.unlocked_blocks}")
        if int(self.num_candidates) < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")

    def __getattr__(self, name: str) -> Any:
        # FactorCL settings read as attributes, as in the earlier flat config: config.method, .embed_dim, ...
        if name != "model" and name in FactorCLConfig.field_names() and "model" in self.__dict__:
            return getattr(self.__dict__["model"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # ... and set, which replaces (and validates again) the held FactorCLConfig.
        if name in FactorCLConfig.field_names() and "model" in self.__dict__:
            object.__setattr__(self, "model", self.__dict__["model"].replace(**{name: value}))
        else:
            object.__setattr__(self, name, value)

    def with_model(self, **changes: Any) -> ClipFactorCLConfig:
        """A copy whose FactorCL settings have ``changes``."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        return ClipFactorCLConfig(self.model.replace(**changes), **own)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``model`` nested), as exports and results.json store it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClipFactorCLConfig:
        """Build from :meth:`to_dict`'s data, or from an older export's flat dict (FactorCL settings at the
        top level, more in ``factorcl_kwargs``); keys this version does not know are ignored."""
        data = dict(data)
        own = {f.name for f in fields(cls) if f.name != "model"}
        model = dict(data.pop("model", None) or {})
        for key, value in dict(data.pop("factorcl_kwargs", None) or {}).items():
            model.setdefault(key, value)
        for key in list(data):
            if key not in own:
                model.setdefault(key, data.pop(key))
        names = FactorCLConfig.field_names()
        model = {k: v for k, v in model.items() if k in names}
        return cls(CLIP_MODEL_DEFAULTS.replace(**model), **{k: v for k, v in data.items() if k in own})


def build_clip_factorcl(bundle: ClipBundle, config: ClipFactorCLConfig | None = None, **overrides: Any) -> FactorCL:
    """A :class:`factorcl.FactorCL` on the bundle's towers (x1 = text, x2 = image); keywords are config fields
    (the towers' or FactorCL's settings).

    Applies the config's tower locking and gradient checkpointing to ``bundle.model`` in place.
    """
    if config is None:
        config = ClipFactorCLConfig(**overrides)
    elif overrides:
        own = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "model"}
        config = ClipFactorCLConfig(config.model, **{**own, **overrides})
    cfg = config
    objective = get_objective(cfg.model.method)
    clip = bundle.model
    lock_towers(clip, cfg.lock_image, cfg.lock_text, cfg.unlocked_blocks)
    if cfg.grad_checkpointing:
        set_grad_checkpointing(clip, True)
    text, image = TextTower(clip), ImageTower(clip, bundle.mean, bundle.std)
    dim = bundle.embed_dim
    settings = cfg.model
    critics: dict[str, Any] = {}
    if cfg.shared_critic == "clip":
        if settings.embed_dim not in (None, dim):
            raise ValueError(
                f"shared_critic='clip' uses the towers' own embeddings as Z_S, so embed_dim must be "
                f"CLIP's embedding width {dim} (or None), got {settings.embed_dim}"
            )
        # Z_S (or Z) are the towers' own embeddings, scored by CLIP's logit in both directions, so
        # that the shared term is CLIP's loss.
        settings = settings.replace(shared_heads="identity", symmetric_shared_keep=True)
        if "shared_keep" in objective.terms:
            critics["shared_keep"] = ClipLogitCritic(clip.logit_scale)
    augment1 = augment2 = None
    if objective.needs_views:
        augment1 = ClipTextAugment(bundle.ids, cfg.text_aug, cfg.text_aug_p)
        scorer = ImageTextScorer(text, image) if cfg.image_aug == "unique-scored" else None
        augment2 = image_augmentation(cfg.image_aug, cfg.image_aug_strength, scorer, cfg.num_candidates)
    return FactorCL(text, image, dim, dim, settings, augment1=augment1, augment2=augment2, critics=critics or None)
