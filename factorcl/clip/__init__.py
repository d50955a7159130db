"""Continued pretraining of CLIP (open_clip) with FactorCL objectives (the paper's Table 4.3 setting).

Modalities: **x1 = caption tokens** (text tower; augmented independently: token deletion or
masking) and **x2 = images** (image tower; the unique augmentation, conditioned on the caption).
``s1``/``u1`` are the text's shared/unique representations, ``s2``/``u2`` the image's.

- :func:`load_clip`: an open_clip model from a name + pretrained tag, a local checkpoint or a
  local config (:class:`ClipBundle`: model, configs, tokenizer).
- :func:`build_clip_factorcl`: a :class:`factorcl.FactorCL` on the towers (locking, gradient
  checkpointing, CLIP's own logit as the shared critic, image/text augmentations).
- :class:`ImageCaptionDataset`, :func:`make_loader`: CSV/JSONL image-caption data;
  :class:`ShardDataset`, :func:`make_shard_loader`: webdataset shards (:mod:`factorcl.clip.shards`),
  :func:`captions_to_shards` to convert.
- :func:`zero_shot_classifier`, :func:`zero_shot_accuracy`, :func:`retrieval_metrics`
  (:mod:`factorcl.clip.zeroshot`): zero-shot classification and retrieval.
- :func:`write_demo_dataset`: a small generated dataset whose images hold more than their captions.
- :func:`export_clip_factorcl`, :func:`load_clip_factorcl`: open_clip-format checkpoint + heads;
  :func:`export_split`: the held-out split recorded there (:mod:`factorcl.clip.split`).
- :func:`probe_clip`, :func:`factorcl_features`, :func:`probe_features`: linear probes.
- :func:`pretrain_clip`: all of it in one call (``factorcl clip train`` on the command line).
"""

from ..extras import require

require("open_clip", "clip", "factorcl.clip")  # first: without the clip extra, say so before any submodule

from .data import CaptionCollate, ImageCaptionDataset, image_transform, make_loader, read_records, train_test_split
from .demo_data import write_demo_dataset
from .evaluate import clip_features, factorcl_features, probe_clip, probe_features
from .export import export_clip_factorcl, export_split, load_clip_factorcl, save_heads, save_open_clip_checkpoint
from .loading import ClipBundle, TokenIds, load_clip, read_config, registered_config, resolve_model_name, token_ids
from .model import SHARED_CRITICS, ClipFactorCLConfig, build_clip_factorcl
from .pretrain import pretrain_clip
from .shards import ShardDataset, ShardPass, expand_shards, make_shard_loader, write_shards
from .tiny import TINY_CONFIG, tiny_config
from .to_shards import captions_to_shards, write_demo_shards
from .towers import ClipLogitCritic, ImageTower, TextTower, eval_mode, lock_towers, set_grad_checkpointing
from .views import IMAGE_AUGS, TEXT_AUGS, ClipTextAugment, ImageTextScorer, image_augmentation
from .zeroshot import default_templates, read_templates, retrieval_metrics, zero_shot_accuracy, zero_shot_classifier

__all__ = [
    "ShardDataset",
    "ShardPass",
    "captions_to_shards",
    "default_templates",
    "expand_shards",
    "make_shard_loader",
    "read_templates",
    "retrieval_metrics",
    "write_demo_shards",
    "write_shards",
    "zero_shot_accuracy",
    "zero_shot_classifier",
    "IMAGE_AUGS",
    "SHARED_CRITICS",
    "TEXT_AUGS",
    "TINY_CONFIG",
    "CaptionCollate",
    "ClipBundle",
    "ClipFactorCLConfig",
    "ClipLogitCritic",
    "ClipTextAugment",
    "ImageCaptionDataset",
    "ImageTextScorer",
    "ImageTower",
    "TextTower",
    "TokenIds",
    "build_clip_factorcl",
    "clip_features",
    "eval_mode",
    "export_clip_factorcl",
    "export_split",
    "factorcl_features",
    "image_augmentation",
    "image_transform",
    "load_clip",
    "load_clip_factorcl",
    "lock_towers",
    "make_loader",
    "pretrain_clip",
    "probe_clip",
    "probe_features",
    "read_config",
    "read_records",
    "registered_config",
    "resolve_model_name",
    "save_heads",
    "save_open_clip_checkpoint",
    "set_grad_checkpointing",
    "tiny_config",
    "token_ids",
    "train_test_split",
    "write_demo_dataset",
]
