"""Linear-probe evaluation of frozen representations (multinomial logistic regression on torch).

The one evaluation path of the package (``factorcl train``/``probe``, ``factorcl clip``, the
synthetic benchmark):

- :func:`extract_features`: the feature-extraction loop (``encode(model, batch)`` per batch, eval
  mode, no gradients; features gathered on the CPU);
- :func:`representation_parts`: the parts of Table 4.4 (``all``, ``S``, ``U1``, ``U2`` or ``Z1``, ``Z2``);
- :func:`probe_parts`: the probe driver, one :func:`linear_probe` per named feature set, on the
  device it is given (the training device).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .batch import Batch
from .train import to_device

DEFAULT_L2_GRID: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 0.0)
#: ``encode(model, batch) -> {key: [B, d] features}``, one batch of :func:`extract_features` (on its device).
Encode = Callable[[nn.Module, Any], Mapping[str, Tensor]]


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracy and macro F1 of the probe, the L2 strength chosen and its validation accuracy."""

    accuracy: float
    macro_f1: float
    l2: float
    val_accuracy: float | None
    num_classes: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "l2": self.l2,
            "val_accuracy": self.val_accuracy,
            "num_classes": self.num_classes,
        }


def _check(features: Any, labels: Any, name: str) -> tuple[Tensor, Tensor]:
    if not isinstance(features, Tensor) or features.dim() != 2:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{name}_features must be a [N, D] tensor, got {shape}")
    labels = torch.as_tensor(labels, device=features.device).reshape(-1)
    if features.shape[0] == 0:
        raise ValueError(f"{name}_features is empty (N=0)")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"{name}_labels must have one label per row of {name}_features: got {labels.shape[0]} "
            f"labels for {features.shape[0]} rows"
        )
    if labels.is_floating_point():
        if not bool((labels == labels.round()).all()):
            raise ValueError(f"{name}_labels must be integer class labels")
        labels = labels.long()
    if bool((labels < 0).any()):
        raise ValueError(f"{name}_labels must be >= 0")
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{name}_features contains NaN or inf values")
    return features.float(), labels


def _fit(x: Tensor, y: Tensor, num_classes: int, l2: float, max_iter: int, init: nn.Linear | None) -> nn.Linear:
    clf = nn.Linear(x.shape[1], num_classes).to(x.device)
    if init is not None:
        clf.load_state_dict(init.state_dict())
    else:
        nn.init.zeros_(clf.weight)
        nn.init.zeros_(clf.bias)
    opt = torch.optim.LBFGS(
        clf.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(clf(x), y) + 0.5 * l2 * clf.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return clf


def macro_f1(pred: Tensor, target: Tensor) -> float:
    """F1 averaged over the classes present in the targets or the predictions."""
    classes = torch.unique(torch.cat([pred, target]))
    scores = []
    for c in classes:
        tp = ((pred == c) & (target == c)).sum().item()
        fp = ((pred == c) & (target != c)).sum().item()
        fn = ((pred != c) & (target == c)).sum().item()
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(sum(scores) / len(scores))


@torch.no_grad()
def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    val_fraction: float = 0.2,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    num_classes: int | None = None,
    max_iter: int = 200,
    seed: int = 0,
    val_features: Tensor | None = None,
    val_labels: Tensor | None = None,
) -> ProbeResult:
    """Accuracy (and macro F1) of multinomial logistic regression on standardised frozen features.

    The L2 strength is chosen from ``l2_grid`` by accuracy on ``val_features`` / ``val_labels``
    when given (the probe is fit on all training features), otherwise on a seeded ``val_fraction``
    split of the training features, after which the probe is refit on all of them. Runs with
    L-BFGS on the features' device (GPU tensors stay on the GPU).
    """
    xtr, ytr = _check(train_features, train_labels, "train")
    xte, yte = _check(test_features, test_labels, "test")
    if xte.shape[1] != xtr.shape[1]:
        raise ValueError(f"test_features has {xte.shape[1]} columns but train_features has {xtr.shape[1]}")
    if (val_features is None) != (val_labels is None):
        raise ValueError("val_features and val_labels must be given together")
    xva = yva = None
    if val_features is not None:
        xva, yva = _check(val_features, val_labels, "val")
        if xva.shape[1] != xtr.shape[1]:
            raise ValueError(f"val_features has {xva.shape[1]} columns but train_features has {xtr.shape[1]}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not l2_grid:
        raise ValueError("l2_grid must hold at least one L2 strength")
    classes = torch.unique(ytr)
    if classes.numel() < 2:
        raise ValueError(
            f"train_labels hold a single class ({int(classes[0])}, all {ytr.shape[0]} rows): a linear "
            "probe needs at least 2 classes in the training split (its accuracy would mean nothing)"
        )
    labels_seen = [ytr.max(), yte.max()] + ([yva.max()] if yva is not None else [])
    k = int(num_classes) if num_classes is not None else int(max(labels_seen).item()) + 1
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std

    grid = sorted({float(v) for v in l2_grid}, reverse=True)  # strong to weak: each fit warm-starts the next
    best_l2, best_val = grid[0], None
    if xva is not None:
        xva = (xva - mean) / std
        best_clf, clf = None, None
        for l2 in grid:
            clf = _fit(xtr, ytr, k, l2, max_iter, clf)
            acc = (clf(xva).argmax(1) == yva).float().mean().item()
            if best_val is None or acc > best_val + 1e-9:
                best_l2, best_val, best_clf = l2, acc, copy.deepcopy(clf)
        pred = best_clf(xte).argmax(1)
        return ProbeResult(
            accuracy=(pred == yte).float().mean().item(),
            macro_f1=macro_f1(pred, yte),
            l2=best_l2,
            val_accuracy=best_val,
            num_classes=k,
        )
    n_val = int(round(val_fraction * xtr.shape[0]))
    if len(grid) > 1 and n_val >= 1 and xtr.shape[0] - n_val >= 1:
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(xtr.shape[0], generator=gen).to(xtr.device)
        val_idx, fit_idx = perm[:n_val], perm[n_val:]
        clf = None
        for l2 in grid:
            clf = _fit(xtr[fit_idx], ytr[fit_idx], k, l2, max_iter, clf)
            acc = (clf(xtr[val_idx]).argmax(1) == ytr[val_idx]).float().mean().item()
            if best_val is None or acc > best_val + 1e-9:
                best_l2, best_val = l2, acc
    clf = _fit(xtr, ytr, k, best_l2, max_iter, None)
    pred = clf(xte).argmax(1)
    return ProbeResult(
        accuracy=(pred == yte).float().mean().item(),
        macro_f1=macro_f1(pred, yte),
        l2=best_l2,
        val_accuracy=best_val,
        num_classes=k,
    )


def _batch_labels(batch: Any) -> Any:
    """A batch's labels ``y`` (dict key or third tuple item), or None."""
    if isinstance(batch, Mapping):
        return batch.get("y")
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[2]
    return None


def embed_batch(model: nn.Module, batch: Any) -> Mapping[str, Tensor]:
    """The default ``encode`` of :func:`extract_features`: ``model.embed(x1, x2, **masks)`` on one batch."""
    b = Batch.from_any(batch)
    return model.embed(b.x1, b.x2, **b.masks())


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    *,
    encode: Encode | None = None,
    progress: bool | str = False,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Run ``encode(model, batch)`` over a loader without gradients, with ``model`` in eval mode.

    The feature-extraction loop of every evaluation (``factorcl train``/``probe``, the CLIP probes,
    the synthetic benchmark). Each batch (a dict with ``x1``, ``x2``, optional ``y``, ``mask1``,
    ``mask2``, or a tuple ``(x1, x2[, y])``) is moved to ``device`` (default: the model's) and
    passed to ``encode`` (default :func:`embed_batch`, i.e. ``model.embed``), which returns
    ``{key: [B, d]}``. The caller's train/eval mode is restored afterwards.

    Returns ({key: [N, d] float32 features on the CPU}, labels [N] or None when the batches carry
    none). The features are gathered on the CPU so that a large split does not have to fit in
    accelerator memory next to the model; the probe driver (:func:`probe_parts`) moves each
    feature set to the probing device when it fits. ``progress`` shows a bar over the batches (a
    string is its label).
    """
    encode = embed_batch if encode is None else encode
    if progress:
        try:
            total: int | None = len(loader)  # type: ignore[arg-type]
        except TypeError:  # a stream of unknown length (webdataset shards without sizes.json)
            total = None
        loader = tqdm(
            loader,
            total=total,
            desc=progress if isinstance(progress, str) else "features",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
        )
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats: dict[str, list[Tensor]] = {}
    labels: list[Tensor] = []
    try:
        for batch in loader:
            y = _batch_labels(batch)
            for key, value in encode(model, to_device(batch, device)).items():
                feats.setdefault(key, []).append(value.float().cpu())
            if y is not None:
                labels.append(torch.as_tensor(y).reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("loader yielded no batches: cannot extract features from an empty dataset")
    return {k: torch.cat(v) for k, v in feats.items()}, (torch.cat(labels) if labels else None)


def representation_parts(features: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The parts probed in Table 4.4: ``all`` plus ``S``, ``U1``, ``U2`` (factorised) or ``Z1``, ``Z2``."""
    if {"s1", "s2", "u1", "u2"} <= set(features):
        return {
            "all": torch.cat([features[k] for k in ("s1", "s2", "u1", "u2")], dim=1),
            "S": torch.cat([features["s1"], features["s2"]], dim=1),
            "U1": features["u1"],
            "U2": features["u2"],
        }
    if {"z1", "z2"} <= set(features):
        return {"all": torch.cat([features["z1"], features["z2"]], dim=1), "Z1": features["z1"], "Z2": features["z2"]}
    raise ValueError(f"features must hold s1, s2, u1, u2 or z1, z2, got {sorted(features)}")


def probe_parts(
    train: Mapping[str, Tensor],
    train_labels: Tensor | None,
    test: Mapping[str, Tensor],
    test_labels: Tensor | None,
    *,
    valid: Mapping[str, Tensor] | None = None,
    valid_labels: Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool | str = False,
    **settings: Any,
) -> dict[str, ProbeResult]:
    """One :func:`linear_probe` per named feature set: the probe driver of every evaluation.

    ``train[name]`` ([N_train, d]) fits the probe of ``name`` and ``test[name]`` scores it; with
    ``valid`` (same names) the L2 strength is chosen on ``valid[name]``, otherwise on the
    ``val_fraction`` of train that ``settings`` set (see :func:`linear_probe`, whose keywords
    ``settings`` are: ``val_fraction``, ``l2_grid``, ``num_classes``, ``max_iter``, ``seed``).
    Each set is moved to ``device`` (default: where it is) just before its probe, so L-BFGS runs
    there. ``progress`` shows a bar over the sets (a string is its label). For example
    ``probe_parts({"all": xtr}, ytr, {"all": xte}, yte, device="cuda", max_iter=100)["all"].accuracy``.
    """
    if train_labels is None or test_labels is None:
        raise ValueError("the linear probe needs labels: the batches carry no 'y'")
    if valid is not None and (valid_labels is None or set(valid) != set(train)):
        raise ValueError("valid must hold the same feature sets as train, with valid_labels")

    def to(x: Tensor | None) -> Tensor | None:
        return x if x is None or device is None else x.to(device)

    names: Iterable[str] = list(train)
    if progress:
        names = tqdm(names, desc=progress if isinstance(progress, str) else "probes", leave=False, dynamic_ncols=True)
    return {
        name: linear_probe(
            to(train[name]),
            train_labels,
            to(test[name]),
            test_labels,
            val_features=None if valid is None else to(valid[name]),
            val_labels=None if valid is None else valid_labels,
            **settings,
        )
        for name in names
    }


def probe_ablation(
    train: Mapping[str, Tensor], train_labels: Tensor, test: Mapping[str, Tensor], test_labels: Tensor, **kwargs: Any
) -> dict[str, ProbeResult]:
    """Linear probe on the whole representation and on each part (S / U1 / U2, as in Table 4.4).

    ``kwargs`` go to :func:`probe_parts` (``device``, ``valid``/``valid_labels``, probe settings).
    """
    return probe_parts(representation_parts(train), train_labels, representation_parts(test), test_labels, **kwargs)
