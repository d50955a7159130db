"""Saving the trained towers in open_clip's own checkpoint format, and the FactorCL heads beside them.

:func:`export_clip_factorcl` writes a folder that open_clip loads without factorcl::

    EXPORT/
      open_clip_pytorch_model.bin   the CLIP state dict: open_clip.create_model(NAME, pretrained=this file)
      open_clip_config.json         {"model_cfg", "preprocess_cfg"}: open_clip.create_model("local-dir:EXPORT")
      NAME.json                     custom configs only: open_clip.add_model_config(this file) registers NAME
      factorcl_heads.pt             heads + critics + how to rebuild the FactorCL model (load_clip_factorcl),
                                    and the held-out split of the training run (export_split)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import load as load_checkpoint_file
from ..checkpoint import save_atomic
from ..jsonio import write_json
from ..model import FactorCL
from .loading import ClipBundle, load_clip
from .model import ClipFactorCLConfig, build_clip_factorcl

__all__ = [
    "CHECKPOINT_NAME",
    "CONFIG_NAME",
    "HEADS_NAME",
    "export_clip_factorcl",
    "export_split",
    "load_clip_factorcl",
    "save_heads",
    "save_open_clip_checkpoint",
]

CHECKPOINT_NAME = "open_clip_pytorch_model.bin"  # the name open_clip's local-dir loader prefers
CONFIG_NAME = "open_clip_config.json"
HEADS_NAME = "factorcl_heads.pt"  # .pt: open_clip's local-dir loader only looks at .bin/.pth/.safetensors
_ENCODERS = ("encoder1.", "encoder2.")


def save_open_clip_checkpoint(clip: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``clip``'s state dict (on the CPU) so that ``open_clip.create_model(name, pretrained=path)`` loads it.

    Written atomically (a crash never leaves a half-written file).
    """
    state = {k: v.detach().cpu() for k, v in clip.state_dict().items()}
    return save_atomic(state, path)


def save_heads(
    model: FactorCL,
    path: str | os.PathLike,
    config: ClipFactorCLConfig,
    bundle: ClipBundle,
    split: Mapping[str, Any] | None = None,
) -> Path:
    """Save everything of ``model`` but the towers (heads, critics), with the config that rebuilds it.

    ``split`` is the training run's held-out split record (:func:`factorcl.clip.split.split_record`).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith(_ENCODERS)}
    # The effective conditioning, not None: the rebuilt critics must have the same shapes even if
    # FactorCL's default changes.
    config = config.with_model(conditioning=model.conditioning)
    payload = {
        "format": "factorcl-clip-heads/2",  # 2: config["model"] holds the FactorCLConfig
        "state_dict": state,
        "config": config.to_dict(),
        "model_name": bundle.name,
        "embed_dim": bundle.embed_dim,
        "modalities": {"x1": "text", "x2": "image"},
        "split": None if split is None else dict(split),
    }
    return save_atomic(payload, path)


def export_clip_factorcl(
    model: FactorCL,
    bundle: ClipBundle,
    folder: str | os.PathLike,
    config: ClipFactorCLConfig,
    split: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the export folder (see the module docstring); returns the written paths by kind.

    ``split``: the held-out split the model was trained without (recorded for the probe).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"checkpoint": save_open_clip_checkpoint(bundle.model, folder / CHECKPOINT_NAME)}
    paths["config"] = write_json(
        folder / CONFIG_NAME, {"model_cfg": bundle.model_cfg, "preprocess_cfg": bundle.preprocess_cfg}
    )
    if not bundle.builtin:
        paths["model_config"] = write_json(folder / f"{bundle.name}.json", bundle.model_cfg)
    paths["heads"] = save_heads(model, folder / HEADS_NAME, config, bundle, split)
    return paths


def _heads_payload(folder: Path, map_location: str = "cpu") -> dict[str, Any]:
    heads_path = folder / HEADS_NAME
    if not (folder / CONFIG_NAME).is_file() or not heads_path.is_file():
        raise FileNotFoundError(f"{folder} is not a factorcl CLIP export (needs {CONFIG_NAME} and {HEADS_NAME})")
    return load_checkpoint_file(heads_path, map_location=map_location)


def export_split(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The held-out split recorded in an export folder (None for exports that predate the record)."""
    return _heads_payload(Path(folder)).get("split")


def load_clip_factorcl(folder: str | os.PathLike, device: str = "cpu") -> tuple[FactorCL, ClipBundle]:
    """Rebuild the trained FactorCL model from an export folder: (model, bundle), on ``device``."""
    folder = Path(folder)
    payload = _heads_payload(folder, map_location=device)
    bundle = load_clip(f"local-dir:{folder}", device=device)
    config = ClipFactorCLConfig.from_dict(payload["config"])
    model = build_clip_factorcl(bundle, config)
    result = model.load_state_dict(payload["state_dict"], strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_ENCODERS)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{folder / HEADS_NAME} does not match the rebuilt model: missing {missing}, "
            f"unexpected {list(result.unexpected_keys)}"
        )
    return model.to(device), bundle
