"""FactorCL around CLIP's towers, and one-call continued pretraining (train, export, probe).

Modalities: **x1 = caption tokens** (text tower, augmented independently) and **x2 = images**
(image tower, unique augmentation conditioned on the caption), as in the paper's Fig. 4.4. So
``s1``/``u1`` are the text's shared/unique representations and ``s2``/``u2`` the image's.

``shared_critic="clip"`` (the default) makes the shared term CLIP's own objective: the shared
heads (``s1``, ``s2``; ``z1``, ``z2`` for the non-factorised methods) are replaced by
``nn.Identity`` after FactorCL builds them, so Z_S are the towers' own embeddings, and the
shared_keep critic is :class:`ClipLogitCritic` (CLIP's scaled cosine with its learnable
``logit_scale``), symmetrised. Then ``shared_keep`` = log B - CLIP loss exactly, and the
``simclr`` method is plain CLIP fine-tuning. The heads' width is then CLIP's embedding width.
``shared_critic="learned"`` keeps FactorCL's learned heads and critic.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from ..jsonio import write_json
from ..model import CRITICS, SSL_CONDITIONINGS, SUP_CONDITIONINGS, FactorCL
from ..objectives import get_objective
from .loading import ClipBundle, load_clip
from .towers import ClipLogitCritic, ImageTower, TextTower, lock_towers, set_grad_checkpointing
from .views import IMAGE_AUGS, ClipTextAugment, ImageTextScorer, image_augmentation

__all__ = ["CONDITIONINGS", "CRITICS", "SHARED_CRITICS", "ClipFactorCLConfig", "build_clip_factorcl", "pretrain_clip",
           "train_summary"]

SHARED_CRITICS: tuple[str, ...] = ("clip", "learned")
# FactorCL's conditioning choices over all methods, for the command line (FactorCL checks them per method).
CONDITIONINGS: tuple[str, ...] = tuple(dict.fromkeys(SSL_CONDITIONINGS + SUP_CONDITIONINGS))


@dataclass
class ClipFactorCLConfig:
    """How the FactorCL model is built around the towers (saved with the exported heads to rebuild it)."""

    method: str = "factorcl-ssl"
    shared_critic: str = "clip"
    image_aug: str = "unique-preset"
    image_aug_strength: float = 1.0
    num_candidates: int = 4  # K for image_aug="unique-scored"
    text_aug: str = "delete"
    text_aug_p: float = 0.15
    num_classes: int | None = None  # required by supervised methods
    embed_dim: int | None = None  # heads' width; None: CLIP's embedding width (forced with shared_critic="clip")
    head_layers: int = 0
    critic: str = "separable"
    conditioning: str | None = None  # how conditional terms condition on C; None: FactorCL's default for the method
    lock_image: bool = False
    lock_text: bool = False
    unlocked_blocks: int = 0
    grad_checkpointing: bool = False
    factorcl_kwargs: dict[str, Any] = field(default_factory=dict)  # further FactorCL(...) keywords

    def __post_init__(self) -> None:
        self.method = get_objective(self.method).name
        if self.shared_critic not in SHARED_CRITICS:
            raise ValueError(f"shared_critic must be one of {list(SHARED_CRITICS)}, got {self.shared_critic!r}")
        if self.image_aug not in IMAGE_AUGS:
            raise ValueError(f"image_aug must be one of {list(IMAGE_AUGS)}, got {self.image_aug!r}")
        if int(self.unlocked_blocks) < 0:
            raise ValueError(f"unlocked_blocks must be >= 0, got {self.unlocked_blocks}")
        if int(self.num_candidates) < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipFactorCLConfig:
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def build_clip_factorcl(bundle: ClipBundle, config: ClipFactorCLConfig | None = None, **overrides: Any) -> FactorCL:
    """A :class:`factorcl.FactorCL` on the bundle's towers (x1 = text, x2 = image); keywords are config fields.

    Applies the config's tower locking and gradient checkpointing to ``bundle.model`` in place.
    """
    if config is None:
        config = ClipFactorCLConfig(**overrides)
    elif overrides:
        config = ClipFactorCLConfig(**{**asdict(config), **overrides})
    cfg = config
    objective = get_objective(cfg.method)
    clip = bundle.model
    lock_towers(clip, cfg.lock_image, cfg.lock_text, cfg.unlocked_blocks)
    if cfg.grad_checkpointing:
        set_grad_checkpointing(clip, True)
    text, image = TextTower(clip), ImageTower(clip, bundle.mean, bundle.std)
    dim = bundle.embed_dim
    use_clip_critic = cfg.shared_critic == "clip"
    if use_clip_critic and cfg.embed_dim not in (None, dim):
        raise ValueError(f"shared_critic='clip' uses the towers' own embeddings as Z_S, so embed_dim must be "
                         f"CLIP's embedding width {dim} (or None), got {cfg.embed_dim}")
    embed_dim = dim if cfg.embed_dim is None else int(cfg.embed_dim)

    augment1 = augment2 = None
    if objective.needs_views:
        augment1 = ClipTextAugment(bundle.ids, cfg.text_aug, cfg.text_aug_p)
        scorer = ImageTextScorer(text, image) if cfg.image_aug == "unique-scored" else None
        augment2 = image_augmentation(cfg.image_aug, cfg.image_aug_strength, scorer, cfg.num_candidates)

    kwargs = dict(cfg.factorcl_kwargs)
    critics = dict(kwargs.pop("critics", None) or {})
    if use_clip_critic and "shared_keep" in objective.terms:
        critics["shared_keep"] = ClipLogitCritic(clip.logit_scale)
        kwargs["symmetric_shared_keep"] = True
    model = FactorCL(
        text, image, dim, dim,
        method=objective.name,
        critic=cfg.critic,
        conditioning=cfg.conditioning,
        augment1=augment1,
        augment2=augment2,
        num_classes=cfg.num_classes,
        embed_dim=embed_dim,
        head_layers=cfg.head_layers,
        critics=critics or None,
        **kwargs,
    )
    if use_clip_critic:
        # FactorCL always builds MLP heads; Z_S (or Z) must be the towers' own embeddings for the
        # shared term to be CLIP's loss, so the shared heads are replaced by identities.
        for key in ("s1", "s2") if objective.factorized else ("z1", "z2"):
            model.heads[key] = nn.Identity()
    return model


def pretrain_clip(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 1e-5,
    tower_lr: float | None = None,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    critic_steps: int = 3,
    amp: str | None = "auto",
    accumulate: int = 1,
    grad_clip: float | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    stop_after: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    test_fraction: float = 0.2,
    probe: bool = True,
    skip_missing: bool = False,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    image_column: str = "image",
    caption_column: str = "caption",
    label_column: str | None = "label",
    **build: Any,
) -> dict[str, Any]:
    """Continued pretraining of an open_clip model with a FactorCL method, in one call.

    Loads the model (see :func:`load_clip`), reads the image-caption file, holds out a
    ``test_fraction`` split (stratified, seeded; also with ``probe=False``, so resumed runs train
    on the same rows) when it has labels, records it (:mod:`factorcl.clip.split`: settings and
    SHA-256s of the data file and of the held-out rows, in the export and in ``results.json``, so
    that ``factorcl clip probe --export`` probes the same held-out rows), trains on the rest with
    :func:`factorcl.fit` (checkpoints and ``metrics.csv`` in ``out_dir/train``; ``resume="auto"``
    continues from there), exports the towers in open_clip's format plus the heads to
    ``out_dir/export`` (:func:`export_clip_factorcl`), runs the linear probe (train split ->
    held-out split) and writes ``out_dir/results.json``. ``build`` takes
    :class:`ClipFactorCLConfig` fields (method, shared_critic, image_aug, lock_text, ...).
    ``overwrite`` lets training replace an earlier run's checkpoint in ``out_dir/train``
    (:class:`factorcl.TrainConfig`). ``log`` (e.g. ``print``) gets the training summary
    (:func:`train_summary`) as soon as training and export are done, before the probe starts.
    Returns the results dict.
    """
    from ..device import select_device
    from ..distributed import barrier, get_rank, is_main_process
    from ..train import fit
    from .data import ImageCaptionDataset, make_loader
    from .evaluate import factorcl_features, probe_features
    from .export import export_clip_factorcl
    from .split import held_out_split, split_record

    out_dir = Path(out_dir)
    dev = select_device(device)
    torch.manual_seed(seed)  # the heads' and critics' initialisation
    bundle = load_clip(model, pretrained=pretrained, checkpoint=checkpoint, config=config)
    dataset = ImageCaptionDataset(data, bundle.preprocess_cfg, skip_missing=skip_missing, image_column=image_column,
                                  caption_column=caption_column, label_column=label_column)
    cfg = ClipFactorCLConfig(**build)
    objective = get_objective(cfg.method)
    if objective.needs_labels:
        if dataset.num_classes is None:
            raise ValueError(f"method {objective.name!r} is supervised but {data} has no {label_column!r} column")
        cfg.num_classes = dataset.num_classes
    # The held-out split does not depend on `probe`, so that a run resumed without probing trains
    # on the same rows; test_fraction=0 trains on every row.
    train_idx, test_idx = held_out_split(dataset, test_fraction, seed)
    split = split_record(dataset, test_idx, seed, test_fraction, skip_missing)
    train_set = Subset(dataset, train_idx)
    factor = build_clip_factorcl(bundle, cfg)
    cfg.conditioning = factor.conditioning  # record the effective one
    loader = make_loader(train_set, bundle.tokenizer, batch_size, shuffle=True, num_workers=num_workers, seed=seed)
    result = fit(factor, loader, epochs=epochs, lr=lr, encoder_lr=tower_lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                 critic_steps=critic_steps, amp=amp, accumulate=accumulate, grad_clip=grad_clip, device=str(dev),
                 seed=seed, out_dir=str(out_dir / "train"), resume=resume, checkpoint_every=checkpoint_every,
                 stop_after=stop_after, progress=progress, overwrite=overwrite)
    if not is_main_process():
        barrier()  # under torchrun every rank trains; rank 0 alone exports, probes and writes
        return {"rank": get_rank(), "train": {"steps": result.step, "seconds": result.seconds}}
    exported = export_clip_factorcl(factor, bundle, out_dir / "export", cfg, split=split)

    results: dict[str, Any] = {
        "data": {"path": str(data), "pairs": len(dataset), "skipped": dataset.skipped, "train": len(train_idx),
                 "test": len(test_idx), "classes": dataset.classes},
        "model": {"name": bundle.name, "source": bundle.source, "embed_dim": bundle.embed_dim,
                  "image_size": list(bundle.image_size)},
        "split": split,
        "config": asdict(cfg),
        "modalities": {"x1": "text", "x2": "image"},
        "train": {"steps": result.step, "epochs": epochs, "lr": lr, "tower_lr": tower_lr, "batch_size": batch_size,
                  "accumulate": accumulate,
                  "amp": amp, "seconds": result.seconds, "final_metrics": result.metrics,
                  "checkpoint": None if result.checkpoint is None else str(result.checkpoint)},
        "export": {k: str(v) for k, v in exported.items()},
    }
    if log is not None:
        for line in train_summary(results):
            log(line)
    if probe and test_idx:
        if log is not None:
            log(f"linear probe: features of {len(train_idx)} train and {len(test_idx)} held-out pairs")
        start = time.perf_counter()
        eval_kwargs = dict(batch_size=batch_size, num_workers=num_workers)
        train_eval = make_loader(train_set, bundle.tokenizer, shuffle=False, **eval_kwargs)
        test_eval = make_loader(Subset(dataset, test_idx), bundle.tokenizer, shuffle=False, **eval_kwargs)
        amp_mode = _eval_amp(amp, dev)
        ftr, ytr = factorcl_features(factor, train_eval, device=dev, amp=amp_mode, progress=progress,
                                     desc="features (train)")
        fte, yte = factorcl_features(factor, test_eval, device=dev, amp=amp_mode, progress=progress,
                                     desc="features (held-out)")
        results["probe"] = probe_features(ftr, ytr, fte, yte, device=dev, num_classes=dataset.num_classes)
        results["probe_seconds"] = time.perf_counter() - start
    else:
        results["probe"] = None
        results["probe_skipped"] = ("probe=False" if not probe else f"{data} has no {label_column!r} column"
                                    if dataset.num_classes is None else "test_fraction is 0")
    write_json(out_dir / "results.json", results)
    barrier()
    return results


def train_summary(results: Mapping[str, Any]) -> list[str]:
    """The lines that report a finished training run of :func:`pretrain_clip`: skipped rows, steps, metrics, export."""
    train, export = results["train"], results["export"]
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in train["final_metrics"].items())
    lines = [f"trained {train['steps']} steps in {train['seconds']:.1f} s; final metrics {metrics}",
             f"open_clip checkpoint: {export['checkpoint']} (heads: {export['heads']})"]
    skipped = {k: n for k, n in results["data"]["skipped"].items() if n}
    if skipped:
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in skipped.items())
        lines.insert(0, f"skipped rows of {results['data']['path']}: {counts}")
    return lines


def _eval_amp(amp: str | None, device: torch.device) -> str | None:
    from ..device import resolve_amp

    return resolve_amp(amp, device)
