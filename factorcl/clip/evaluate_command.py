"""``factorcl clip eval``: zero-shot classification and retrieval of a model's towers on a dataset."""

from __future__ import annotations

import os
import warnings
from functools import partial
from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from ..device import resolve_amp, select_device
from .data import ImageCaptionDataset, image_transform, make_loader
from .evaluate import clip_features
from .held_out import evaluate_towers
from .loading import load_clip
from .pretrain import _template_record, _templates
from .shards import ShardPass, expand_shards, is_shard_spec, make_eval_loader

__all__ = ["evaluate_clip"]


def evaluate_clip(
    data: str | os.PathLike,
    export: str | os.PathLike | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    config: Any = None,
    templates: str | os.PathLike | list[str] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    amp: str | None = "auto",
    skip_missing: bool = False,
    image_column: str = "image",
    caption_column: str = "caption",
    label_column: str | None = "label",
    progress: bool = True,
) -> dict[str, Any]:
    """Zero-shot top-1/top-5 and retrieval R@1/5/10 of the towers of an export or of a model as it is.

    With ``export`` on the data it was trained on, only the held-out pairs recorded at training are
    used (the held-out rows of a caption file, re-made and checked; the held-out shards); on any
    other data, every pair. ``results["evaluated_on"]`` says which.
    """
    from .export import export_split, load_clip_factorcl

    dev = select_device(device)
    if export is not None:
        _, bundle = load_clip_factorcl(export, device=str(dev))  # its towers are the trained ones
        recorded = export_split(export)
    else:
        bundle = load_clip(model, pretrained=pretrained, checkpoint=checkpoint, config=config)
        recorded = None
    chosen = _templates(templates)
    if is_shard_spec(data):
        urls = expand_shards(data)
        held = (recorded or {}).get("held_out_shards") or []
        resolved = {str(Path(u).resolve()): u for u in urls if "://" not in u}
        where = f"every shard of {data}"
        if recorded is not None and recorded.get("kind") == "shards" and held:
            kept = [resolved.get(str(Path(h).resolve())) for h in held]
            if all(kept):  # the recorded held-out shards are among --data's (compared as resolved paths)
                urls = [u for u in kept if u is not None]
                where = f"the {len(held)} held-out shard(s) recorded at training"
            else:
                trained = set(recorded.get("train_shards") or [])
                if any(Path(u).name in trained for u in urls):
                    warnings.warn(
                        f"{data} is not the data the export was trained on with its held-out shards, and shard "
                        "names it trained on appear in it: these figures may include training pairs",
                        stacklevel=2,
                    )
        dataset = ShardPass(urls, image_transform(bundle.preprocess_cfg))
        loader = make_eval_loader(dataset, bundle.tokenizer, batch_size, num_workers)
        classes = dataset.classes
    else:
        captions = ImageCaptionDataset(
            data,
            bundle.preprocess_cfg,
            skip_missing=skip_missing,
            image_column=image_column,
            caption_column=caption_column,
            label_column=label_column,
        )
        rows, where = list(range(len(captions))), f"every pair of {data}"
        if recorded is not None and recorded.get("kind", "captions") == "captions":
            rows, where = _recorded_held_out(captions, recorded, data) or (rows, where)
        loader = make_loader(
            Subset(captions, rows), bundle.tokenizer, batch_size, shuffle=False, num_workers=num_workers
        )
        classes = captions.classes
    evaluation = evaluate_towers(
        partial(clip_features, bundle), loader, bundle, classes, chosen, dev, resolve_amp(amp, dev), progress
    )
    return {
        "model": {"name": bundle.name, "source": bundle.source, "export": None if export is None else str(export)},
        "data": str(data),
        "evaluated_on": where,
        "eval": evaluation,
        "templates": _template_record(templates, chosen),
    }


def _recorded_held_out(
    captions: ImageCaptionDataset, recorded: dict[str, Any], data: str | os.PathLike
) -> tuple[list[int], str] | None:
    """The held-out rows recorded at training when ``data`` is the training file, else None."""
    from .split import check_same_held_out, held_out_split, probe_split_settings, split_record

    try:
        settings, training_data = probe_split_settings(recorded, data)
    except ValueError:  # the export trained on every row of this file: say so next to the figures
        rows = list(range(len(captions)))
        return rows, f"every pair of {data}, all of which the export trained on (no held-out rows were kept)"
    if not training_data:
        return None
    _, test_idx = held_out_split(captions, settings["test_fraction"], settings["seed"])
    split = split_record(captions, test_idx, settings["seed"], settings["test_fraction"], settings["skip_missing"])
    check_same_held_out(recorded, split, data)
    return test_idx, f"the {len(test_idx)} held-out rows of {Path(data).name} recorded at training"
