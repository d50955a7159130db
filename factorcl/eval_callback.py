"""Evaluation during training: a k-NN probe of the representation on a held-out subset, every N steps.

:class:`EvalCallback` is a :class:`factorcl.train.Callback`. Every ``every`` optimizer steps, on
rank 0, it embeds at most ``max_samples`` held-out samples and records the leave-one-out k-NN
accuracy of the FactorCL representation (``all``, and each part) through ``trainer.log_eval``:
``eval.csv``, TensorBoard, W&B and the progress bar. Subclasses add metrics by overriding
:meth:`EvalCallback.metrics` (the CLIP one adds zero-shot and retrieval:
:class:`factorcl.clip.eval_callback.ClipEvalCallback`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .device import rng_state, set_rng_state
from .distributed import is_main_process
from .probe import extract_features, representation_parts
from .train import Callback, Trainer

__all__ = ["EvalCallback", "knn_accuracy"]


def knn_accuracy(features: Tensor, labels: Tensor, k: int = 20) -> float:
    """Leave-one-out k-NN accuracy: each sample's class is the vote of its ``k`` nearest others (cosine).

    Votes are weighted by similarity (ties go to the lower class index). ``k`` is capped at N - 1.
    """
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(
            f"features must be [N, D] and labels [N], got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    n = len(features)
    if n < 2:
        raise ValueError("the k-NN probe needs at least 2 samples")
    k = max(1, min(int(k), n - 1))
    x = F.normalize(features.float(), dim=-1)
    sims = x @ x.T
    sims.fill_diagonal_(-math.inf)  # leave one out: a sample never votes for itself
    top, idx = sims.topk(k, dim=1)
    labels = labels.long()
    votes = torch.zeros(n, int(labels.max()) + 1, dtype=torch.float64)
    votes.scatter_add_(1, labels[idx], (top.double() + 1.0))  # cosine + 1 >= 0: nearer votes weigh more
    return float((votes.argmax(1) == labels).double().mean())


class EvalCallback(Callback):
    """Every ``every`` steps (rank 0), the k-NN probe of the representation on a held-out subset.

    ``loader`` is an iterable of batches with labels (``y``), or a function that makes one (a fresh
    iterator per evaluation). ``encode`` is :func:`factorcl.extract_features`' (default: the
    model's ``represent``). Metrics: ``knn_top1`` (the ``all`` representation) and
    ``knn_top1/<part>`` for each part.
    """

    def __init__(
        self,
        loader: Iterable | Callable[[], Iterable],
        every: int,
        max_samples: int = 1000,
        k: int = 20,
        encode: Callable[..., Any] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be >= 2, got {max_samples}")
        self.loader, self.every, self.max_samples, self.k, self.encode = loader, int(every), int(max_samples), k, encode

    def batches(self) -> Iterable:
        """The held-out batches of one evaluation: enough to reach ``max_samples``."""
        loader = self.loader() if callable(self.loader) else self.loader
        batch_size = getattr(loader, "batch_size", None) or 1
        return itertools.islice(loader, math.ceil(self.max_samples / batch_size))

    def features(self, trainer: Trainer) -> tuple[dict[str, Tensor], Tensor | None]:
        """The held-out subset's features (at most ``max_samples``) and labels, the model in eval mode."""
        feats, labels = extract_features(trainer.model, self.batches(), trainer.device, encode=self.encode)
        feats = {k: v[: self.max_samples] for k, v in feats.items()}
        return feats, None if labels is None else labels[: self.max_samples]

    def metrics(self, trainer: Trainer, feats: dict[str, Tensor], labels: Tensor | None) -> dict[str, float]:
        """k-NN accuracy of each representation part (nothing without labels)."""
        if labels is None:
            return {}
        reps = {k: v for k, v in feats.items() if k not in ("image", "text")}
        parts = representation_parts(reps) if reps else {}
        out: dict[str, float] = {}
        for name, x in parts.items():
            key = "knn_top1" if name == "all" else f"knn_top1/{name}"
            out[key] = knn_accuracy(x, labels, self.k)
        return out

    def on_step(self, trainer: Trainer, row: dict[str, float]) -> None:
        if trainer.step % self.every or not is_main_process():
            return
        # An evaluation must not change the run: its loaders draw worker seeds from the global RNG,
        # which would shift every later augmentation. Its RNG states are put back afterwards.
        state = rng_state()
        try:
            feats, labels = self.features(trainer)
            values = self.metrics(trainer, feats, labels)
        finally:
            set_rng_state(state)
        if values:
            trainer.log_eval(values)
