"""Evaluation during CLIP continued pretraining: k-NN probe, zero-shot and retrieval every N steps."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial

from torch import Tensor

from ..eval_callback import EvalCallback
from ..train import Trainer
from .evaluate import parts_and_towers, tower_encode
from .held_out import class_names_usable
from .loading import ClipBundle
from .zeroshot import Template, zero_shot_and_retrieval

__all__ = ["ClipEvalCallback"]


class ClipEvalCallback(EvalCallback):
    """:class:`factorcl.eval_callback.EvalCallback` on a FactorCL CLIP model, plus zero-shot top-1/top-5
    (when the classes have names) and retrieval R@1/5/10 both ways of the towers, on at most
    ``max_pairs`` held-out pairs. ``bundle.model`` must be the CLIP model the trainer trains."""

    def __init__(
        self,
        held_out: Iterable | Callable[[], Iterable],
        bundle: ClipBundle,
        classes: Sequence[str] | None,
        templates: Sequence[Template] | None,
        every: int,
        max_pairs: int = 1000,
        k: int = 20,
    ) -> None:
        super().__init__(held_out, every, max_samples=max_pairs, k=k)
        self.bundle = bundle
        self.classes = None if class_names_usable(classes) else list(classes or [])
        self.templates = templates

    def features(self, trainer: Trainer) -> tuple[dict[str, Tensor], Tensor | None]:
        # The parts plus the towers' embeddings of the model being trained, under its autocast.
        self.encode = tower_encode(partial(parts_and_towers, trainer.model), trainer.device, trainer.amp)
        return super().features(trainer)

    def metrics(self, trainer: Trainer, feats: dict[str, Tensor], labels: Tensor | None) -> dict[str, float]:
        out = super().metrics(trainer, feats, labels)
        result = zero_shot_and_retrieval(
            self.bundle,
            None,
            feats["image"],
            feats["text"],
            labels if self.classes else None,
            self.classes or None,
            self.templates,
            device=trainer.device,
            amp=trainer.amp,
        )
        if result["zero_shot"]:
            out.update({f"zero_shot_{k}": v for k, v in result["zero_shot"].items()})
        out.update(result["retrieval"])
        return out
