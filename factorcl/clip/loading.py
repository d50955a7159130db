"""Loading an open_clip model: a built-in name (+ pretrained tag), a local checkpoint, or a local config.

:func:`load_clip` returns a :class:`ClipBundle`: the open_clip model with everything needed around
it (the architecture config, the image preprocessing config, the tokenizer and its special token
ids). Only a pretrained *tag* downloads anything; a local checkpoint or config needs no network.

Custom configs are registered in open_clip's global model-config registry only for as long as
they are needed (:func:`registered_config`), so two custom configs with the same name never see
each other and tests leave the registry as they found it.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..data.files import read_utf8, unreadable

__all__ = [
    "ClipBundle",
    "TokenIds",
    "load_clip",
    "read_config",
    "registered_config",
    "resolve_model_name",
    "token_ids",
]

_SCHEMAS = ("local-dir:", "hf-hub:")


def _factory() -> Any:
    from open_clip import factory

    return factory


@contextlib.contextmanager
def registered_config(config: Mapping[str, Any], name: str | None = None) -> Iterator[str]:
    """Register an open_clip model config under ``name`` while the block runs; yields the name.

    ``name=None`` picks a name unique to the config's content. A name that open_clip already knows
    with a *different* config is refused (it would silently replace a built-in architecture). The
    registry is restored on exit, also when the block raises.
    """
    cfg = _check_model_cfg(config, "config")
    if name is None:
        digest = hashlib.sha1(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:10]
        name = f"factorcl-custom-{digest}"
    factory = _factory()
    missing = object()
    previous = factory._MODEL_CONFIGS.get(name, missing)
    if previous is not missing and previous != cfg:
        raise ValueError(f"open_clip already has a model named {name!r} with a different config; pick another name")
    factory._MODEL_CONFIGS[name] = deepcopy(cfg)
    try:
        yield name
    finally:
        # Looked up again: open_clip.add_model_config rebinds the module's dict.
        registry = factory._MODEL_CONFIGS
        if previous is missing:
            registry.pop(name, None)
        else:
            registry[name] = previous


def _check_model_cfg(cfg: Any, what: str) -> dict[str, Any]:
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{what} must be a mapping (an open_clip model config), got {type(cfg).__name__}")
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise ValueError(
            f"{what} is not an open_clip model config: it lacks {missing} "
            "(expected keys embed_dim, vision_cfg, text_cfg)"
        )
    return dict(cfg)


def read_config(config: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_cfg, preprocess_cfg overrides) from a config dict or JSON file.

    Accepts a bare open_clip model config (``{"embed_dim", "vision_cfg", "text_cfg", ...}``, as in
    open_clip's ``model_configs/*.json``) or the ``open_clip_config.json`` layout
    (``{"model_cfg": ..., "preprocess_cfg": ...}``).
    """
    if isinstance(config, Mapping):
        data: Any = deepcopy(dict(config))
        where = "config"
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"model config file not found: {path}")
        try:
            data = json.loads(read_utf8(path))
        except json.JSONDecodeError as exc:
            raise ValueError(f"model config {path} is not valid JSON: {exc}") from exc
        where = f"model config {path}"
    if isinstance(data, Mapping) and "model_cfg" in data:
        return _check_model_cfg(data["model_cfg"], where), dict(data.get("preprocess_cfg") or {})
    return _check_model_cfg(data, where), {}


def resolve_model_name(name: str) -> str:
    """The open_clip architecture name for ``name`` (``/`` read as ``-``), or a ValueError with close matches."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if name.startswith(_SCHEMAS):
        return name
    import open_clip

    known = open_clip.list_models()
    cleaned = name.strip().replace("/", "-")
    if cleaned in known:
        return cleaned
    lower = {k.lower(): k for k in known}
    if cleaned.lower() in lower:
        return lower[cleaned.lower()]
    close = difflib.get_close_matches(cleaned, known, n=5, cutoff=0.5)
    close += [
        k for k in difflib.get_close_matches(cleaned.lower(), list(lower), n=5, cutoff=0.5) if lower[k] not in close
    ]
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ValueError(
        f"unknown open_clip model {name!r}.{hint} See open_clip.list_models() for all {len(known)} names, "
        "or pass a local config (--config FILE.json) or 'local-dir:FOLDER'."
    )


@dataclass(frozen=True)
class TokenIds:
    """Token ids text augmentations must respect: padding, special tokens (SOT/EOT/...), end of text, mask."""

    pad_id: int
    special_ids: tuple[int, ...]
    eot_id: int | None
    mask_id: int | None


def token_ids(tokenizer: Any) -> TokenIds:
    """Padding, special and end-of-text ids of an open_clip tokenizer (SimpleTokenizer, HFTokenizer, SigLIP)."""
    inner = getattr(tokenizer, "tokenizer", None)  # HFTokenizer / SigLipTokenizer wrap a transformers tokenizer
    if inner is not None and hasattr(inner, "all_special_ids"):
        pad = inner.pad_token_id if inner.pad_token_id is not None else 0
        eot = inner.eos_token_id if inner.eos_token_id is not None else inner.sep_token_id
        return TokenIds(
            int(pad),
            tuple(int(i) for i in inner.all_special_ids),
            None if eot is None else int(eot),
            getattr(inner, "mask_token_id", None),
        )
    # open_clip's SimpleTokenizer pads with 0; CLIP's BPE vocabulary has no mask token.
    specials = tuple(int(i) for i in getattr(tokenizer, "all_special_ids", ()))
    eot = getattr(tokenizer, "eot_token_id", None)
    return TokenIds(0, specials, None if eot is None else int(eot), None)


@dataclass
class ClipBundle:
    """An open_clip model with its architecture config, preprocessing config and tokenizer.

    ``name`` is what open_clip calls the architecture (a built-in name, ``local-dir:...``, or the
    name a custom config was registered under); ``builtin`` says whether open_clip knows it without
    registering ``model_cfg`` (see :meth:`registered`).
    """

    model: nn.Module
    name: str
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    tokenizer: Callable[..., Any]
    builtin: bool
    source: str = "random init"
    ids: TokenIds = field(init=False)

    def __post_init__(self) -> None:
        self.ids = token_ids(self.tokenizer)

    @property
    def embed_dim(self) -> int:
        """Width of the towers' joint embedding (both towers output ``[B, embed_dim]``)."""
        return int(self.model_cfg["embed_dim"])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) the image tower takes."""
        size = self.preprocess_cfg.get("size", 224)
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.preprocess_cfg["mean"])  # type: ignore[return-value]

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.preprocess_cfg["std"])  # type: ignore[return-value]

    @property
    def context_length(self) -> int:
        """Token sequence length of the text tower."""
        return int(getattr(self.tokenizer, "context_length", self.model_cfg["text_cfg"].get("context_length", 77)))

    def registered(self) -> contextlib.AbstractContextManager:
        """A context in which ``open_clip.create_model(self.name, ...)`` works (registers custom configs)."""
        if self.builtin:
            return contextlib.nullcontext(self.name)
        return registered_config(self.model_cfg, self.name)


def load_clip(
    model: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    name: str | None = None,
) -> ClipBundle:
    """Create an open_clip model and its tokenizer from one of three sources.

    - ``model`` (a built-in architecture, e.g. ``"ViT-B-32"``) with an optional ``pretrained``
      tag (downloaded by open_clip) or a local ``checkpoint`` file; ``"local-dir:FOLDER"`` (an
      ``open_clip_config.json`` plus weights, as :func:`factorcl.clip.export_clip_factorcl` writes)
      also works;
    - ``config``: a local open_clip config (JSON path or dict), random init or a ``checkpoint``;
      it is registered as ``name`` (default: ``model``, the file's stem, or a content hash) only
      while the model and tokenizer are made.

    Neither a checkpoint nor a config needs network access. Unknown model names raise a
    ValueError listing close matches; a pretrained tag that is neither known nor a file, too.
    """
    import open_clip

    if pretrained is not None and checkpoint is not None:
        raise ValueError("pass either pretrained (a tag) or checkpoint (a local file), not both")
    if pretrained is not None and os.path.isfile(str(pretrained)):
        pretrained, checkpoint = None, pretrained
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"CLIP checkpoint not found: {checkpoint}")
    weights = None if checkpoint is None else str(checkpoint)

    if config is not None:
        model_cfg, preprocess = read_config(config)
        if name is None and model and not model.startswith(_SCHEMAS):
            name = model
        elif name is None and not isinstance(config, Mapping):
            path = Path(config)
            name = path.parent.name if path.stem == "open_clip_config" and path.parent.name else path.stem
        if pretrained is not None:
            raise ValueError(
                "a pretrained tag needs a built-in model name, not a local config; use checkpoint= for local weights"
            )
        where = "dict" if isinstance(config, Mapping) else str(config)
        with registered_config(model_cfg, name) as reg:
            clip = _create_model(
                reg,
                weights,
                f"the model config {where}",
                device=device,
                precision=precision,
                force_preprocess_cfg=preprocess or None,
            )
            tokenizer = open_clip.get_tokenizer(reg)
        return ClipBundle(
            clip,
            reg,
            model_cfg,
            open_clip.get_model_preprocess_cfg(clip),
            tokenizer,
            builtin=False,
            source=f"checkpoint {weights}" if weights else f"config {where} (random init)",
        )

    if model is None:
        raise ValueError("pass a model name (e.g. 'ViT-B-32' or 'local-dir:FOLDER') or a local config")
    arch = resolve_model_name(model)
    if arch.startswith(_SCHEMAS):
        if pretrained is not None or weights is not None:
            raise ValueError(f"{arch!r} carries its own weights: pretrained/checkpoint cannot be combined with it")
        clip = open_clip.create_model(arch, device=device, precision=precision)
        tokenizer = open_clip.get_tokenizer(arch)
        model_cfg = open_clip.get_model_config(arch)  # hf-hub: the config was fetched by create_model already
        if model_cfg is None:
            model_cfg = {"embed_dim": _embed_dim(clip), "vision_cfg": {}, "text_cfg": {}}
        return ClipBundle(
            clip, arch, dict(model_cfg), open_clip.get_model_preprocess_cfg(clip), tokenizer, builtin=True, source=arch
        )
    if pretrained is not None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if pretrained not in tags:
            close = difflib.get_close_matches(pretrained, tags, n=5, cutoff=0.4)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise ValueError(
                f"unknown pretrained tag {pretrained!r} for {arch!r} (and no such file).{hint} "
                f"Tags for {arch}: {', '.join(tags) or 'none'}"
            )
    if weights is not None:
        clip = _create_model(arch, weights, f"the architecture {arch!r}", device=device, precision=precision)
    else:
        clip = open_clip.create_model(arch, pretrained=pretrained, device=device, precision=precision)
    tokenizer = open_clip.get_tokenizer(arch)
    source = f"pretrained tag {pretrained}" if pretrained else (f"checkpoint {weights}" if weights else "random init")
    return ClipBundle(
        clip,
        arch,
        open_clip.get_model_config(arch),
        open_clip.get_model_preprocess_cfg(clip),
        tokenizer,
        builtin=True,
        source=source,
    )


def _create_model(arch: str, weights: str | None, shown: str, **kwargs: Any) -> nn.Module:
    """``open_clip.create_model`` from a local checkpoint; a damaged or mismatched file is a ValueError naming it."""
    import open_clip

    try:
        return open_clip.create_model(arch, pretrained=weights, **kwargs)
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise
    except Exception as exc:
        if weights is None:  # random init: nothing of the user's was read
            raise
        if "Error(s) in loading state_dict" in str(exc):
            detail = " ".join(str(exc).split("\n", 2)[:2]).strip()[:300]
            raise ValueError(f"CLIP checkpoint {weights} does not fit {shown}: {detail}") from exc
        raise unreadable(weights, "checkpoint", exc) from exc


def _embed_dim(clip: nn.Module) -> int:
    proj = getattr(clip, "text_projection", None)
    if proj is not None:
        return int(proj.shape[-1] if not isinstance(proj, nn.Linear) else proj.out_features)
    return int(clip.visual.output_dim)
