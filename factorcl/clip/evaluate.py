"""Linear-probe evaluation on image + caption features (Table 4.3) and on each FactorCL part (Table 4.4).

- frozen-towers probe: the pretrained towers' embeddings as they are, no training (:func:`probe_clip`;
  zero-shot classification itself is :mod:`factorcl.clip.zeroshot`);
- after continued pretraining: the FactorCL representation (``all`` = [S1, S2, U1, U2], ``S``,
  ``U1`` = text-unique, ``U2`` = image-unique; ``all``/``Z1``/``Z2`` for non-factorised methods)
  and the updated towers' own ``image+text`` embeddings.

Tower embeddings are L2-normalised (CLIP's geometry is the cosine); every probe then standardises
its features (:func:`factorcl.linear_probe`). Probes fit on the training split and are scored on a
held-out split only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Subset

from ..device import autocast, resolve_amp, select_device
from ..model import FactorCL
from ..probe import Encode, extract_features, probe_parts, representation_parts
from .data import IMAGE_KEY, TEXT_KEY
from .loading import ClipBundle
from .towers import ImageTower, TextTower

__all__ = [
    "clip_features",
    "factorcl_features",
    "parts_and_towers",
    "tower_encode",
    "probe_clip",
    "probe_features",
    "probe_loaders",
]


def tower_encode(
    encode: Callable[[Tensor, Tensor], dict[str, Tensor]], device: torch.device, amp: str | None
) -> Encode:
    """An ``encode`` for :func:`factorcl.extract_features`: ``encode(tokens, images)`` under autocast."""

    def run(_model: nn.Module, batch: Any) -> dict[str, Tensor]:
        if not isinstance(batch, Mapping) or TEXT_KEY not in batch or IMAGE_KEY not in batch:
            raise ValueError(
                f"batches must be dicts with {TEXT_KEY!r} (tokens) and {IMAGE_KEY!r} (images), "
                "as factorcl.clip.make_loader yields"
            )
        with autocast(device, amp):
            return encode(batch[TEXT_KEY], batch[IMAGE_KEY])

    return run


def clip_features(
    bundle: ClipBundle,
    loader: Iterable,
    device: torch.device | str | None = None,
    amp: str | None = None,
    progress: bool = True,
    desc: str = "features",
) -> tuple[dict[str, Tensor], Tensor | None]:
    """``({"image": [N, D], "text": [N, D]}, labels)``: the towers' L2-normalised embeddings, in eval mode.

    ``progress`` shows a bar over the batches (labelled ``desc``)."""
    clip = bundle.model
    device = torch.device(device) if device is not None else next(clip.parameters()).device
    clip.to(device)
    image, text = ImageTower(clip, bundle.mean, bundle.std).to(device), TextTower(clip)

    def encode(tokens: Tensor, images: Tensor) -> dict[str, Tensor]:
        return {"image": F.normalize(image(images).float(), dim=-1), "text": F.normalize(text(tokens).float(), dim=-1)}

    return extract_features(
        clip, loader, encode=tower_encode(encode, device, amp), device=device, progress=desc if progress else False
    )


def factorcl_features(
    model: FactorCL,
    loader: Iterable,
    device: torch.device | str | None = None,
    amp: str | None = None,
    progress: bool = True,
    desc: str = "features",
) -> tuple[dict[str, Tensor], Tensor | None]:
    """The FactorCL representation (``s1, s2, u1, u2`` or ``z1, z2``) plus the towers' own ``image``/``text``
    embeddings (L2-normalised), from one pass of the towers per batch, in eval mode.

    ``progress`` shows a bar over the batches (labelled ``desc``)."""
    device = torch.device(device) if device is not None else model.device
    model.to(device)
    return extract_features(
        model,
        loader,
        encode=tower_encode(partial(parts_and_towers, model), device, amp),
        device=device,
        progress=desc if progress else False,
    )


def parts_and_towers(model: FactorCL, tokens: Tensor, images: Tensor) -> dict[str, Tensor]:
    """The FactorCL representation of a batch plus the towers' L2-normalised ``text``/``image`` embeddings."""
    f_text, f_image = model.encoder1(tokens), model.encoder2(images)
    reps = model.represent(f_text, f_image)  # the tower outputs serve both the parts and the raw embeddings
    reps["text"] = F.normalize(f_text.float(), dim=-1)
    reps["image"] = F.normalize(f_image.float(), dim=-1)
    return reps


def probe_features(
    train: Mapping[str, Tensor],
    train_labels: Tensor | None,
    test: Mapping[str, Tensor],
    test_labels: Tensor | None,
    device: torch.device | str | None = None,
    **probe_kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Linear probes on ``image+text`` (plus ``image``, ``text`` alone) and, when present, each FactorCL part.

    The probes run on ``device`` (default: where the features are), through
    :func:`factorcl.probe.probe_parts` (``probe_kwargs`` are its settings). Returns
    ``{name: ProbeResult.as_dict()}``.
    """
    if train_labels is None or test_labels is None:
        raise ValueError("the linear probe needs labels: the data has no label column")
    tr_sets, te_sets = _probe_sets(train), _probe_sets(test)
    return {
        name: r.as_dict()
        for name, r in probe_parts(tr_sets, train_labels, te_sets, test_labels, device=device, **probe_kwargs).items()
    }


def probe_loaders(
    extract: Callable[..., tuple[dict[str, Tensor], Tensor | None]],
    train_loader: Iterable,
    test_loader: Iterable,
    device: torch.device,
    amp: str | None,
    progress: bool,
    num_classes: int | None,
) -> dict[str, dict[str, Any]]:
    """:func:`probe_features` of the features that ``extract`` (:func:`clip_features` or
    :func:`factorcl_features` with its model bound) gives for the train and held-out loaders."""
    (ftr, ytr), (fte, yte) = (
        extract(ld, device=device, amp=amp, progress=progress, desc=f"features ({name})")
        for ld, name in ((train_loader, "train"), (test_loader, "held-out"))
    )
    return probe_features(ftr, ytr, fte, yte, device=device, num_classes=num_classes)


def _probe_sets(feats: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The probed feature sets: ``image+text``, ``image``, ``text`` and ``factorcl:<part>`` when present."""
    sets: dict[str, Tensor] = {}
    if "image" in feats and "text" in feats:
        sets["image+text"] = torch.cat([feats["image"], feats["text"]], 1)
        sets["image"], sets["text"] = feats["image"], feats["text"]
    reps = {k: v for k, v in feats.items() if k not in ("image", "text")}
    if reps:
        sets.update({f"factorcl:{name}": part for name, part in representation_parts(reps).items()})
    return sets


def probe_clip(
    bundle: ClipBundle,
    data: str | os.PathLike,
    test_fraction: float | None = None,
    seed: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    amp: str | None = "auto",
    skip_missing: bool | None = None,
    model: FactorCL | None = None,
    recorded_split: Mapping[str, Any] | None = None,
    progress: bool = True,
    **dataset_kwargs: Any,
) -> dict[str, Any]:
    """Linear probe on a labelled image-caption file, held-out split (stratified, seeded).

    Without ``model``: the frozen-towers probe on the bundle's towers as they are. With a trained
    FactorCL ``model`` (e.g. from :func:`load_clip_factorcl`): its parts and its towers; pass its
    training split as ``recorded_split`` (:func:`~factorcl.clip.export.export_split`). On the
    file the model trained on, the split settings left as None then default to the recorded ones,
    other values are a ValueError, and the re-made split must hold out exactly the recorded rows
    (see :func:`factorcl.clip.split.probe_split_settings`); elsewhere None means
    :data:`~factorcl.clip.split.SPLIT_DEFAULTS`. ``results["split"]`` says which split was used.
    ``progress`` shows a bar over the batches of the feature extraction.
    """
    from .data import ImageCaptionDataset, make_loader
    from .split import check_same_held_out, data_summary, held_out_split, probe_split_settings, split_record

    settings, training_data = probe_split_settings(
        recorded_split, data, seed=seed, test_fraction=test_fraction, skip_missing=skip_missing
    )
    dev = select_device(device)
    amp_mode = resolve_amp(amp, dev)
    dataset = ImageCaptionDataset(data, bundle.preprocess_cfg, skip_missing=settings["skip_missing"], **dataset_kwargs)
    if dataset.num_classes is None:
        raise ValueError(f"{data} has no label column: the linear probe needs labels")
    if not 0.0 < settings["test_fraction"] < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {settings['test_fraction']}")
    train_idx, test_idx = held_out_split(dataset, settings["test_fraction"], settings["seed"])
    split = split_record(dataset, test_idx, settings["seed"], settings["test_fraction"], settings["skip_missing"])
    if training_data and recorded_split is not None:
        check_same_held_out(recorded_split, split, data)
    loaders = [
        make_loader(Subset(dataset, idx), bundle.tokenizer, batch_size, shuffle=False, num_workers=num_workers)
        for idx in (train_idx, test_idx)
    ]
    extract = partial(clip_features, bundle) if model is None else partial(factorcl_features, model)
    probe = probe_loaders(extract, *loaders, dev, amp_mode, progress, dataset.num_classes)  # counts skipped rows
    return {
        "data": data_summary(data, dataset, train_idx, test_idx),
        "split": {**split, "training_data": training_data, "recorded": recorded_split is not None},
        "model": {"name": bundle.name, "source": bundle.source, "trained": model is not None},
        "probe": probe,
    }
