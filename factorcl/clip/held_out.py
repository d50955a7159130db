"""Zero-shot classification and retrieval of a model's towers on a held-out loader (results and table)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .loading import ClipBundle
from .zeroshot import Template, zero_shot_and_retrieval

__all__ = ["class_names_usable", "eval_table", "evaluate_towers"]


def class_names_usable(classes: Sequence[str] | None) -> str | None:
    """None when ``classes`` can fill prompts; else why not (no labels, or bare integers)."""
    if classes is None:
        return "the data has no labels"
    if all(c.strip().lstrip("-").isdigit() for c in classes):
        return "the labels are integers, not class names: prompts need names (a label column of names, or classes.json)"
    return None


def evaluate_towers(
    extract: Callable[..., tuple[dict[str, Tensor], Tensor | None]],
    loader: Iterable,
    bundle: ClipBundle,
    classes: Sequence[str] | None,
    templates: Sequence[Template] | None,
    device: torch.device,
    amp: str | None,
    progress: bool = True,
    desc: str = "features (held-out)",
) -> dict[str, Any]:
    """Zero-shot top-1/top-5 (class-name prompts) and retrieval R@1/5/10 both ways on ``loader``'s pairs.

    ``extract`` is :func:`~factorcl.clip.clip_features` (the bundle's towers as they are) or
    :func:`~factorcl.clip.factorcl_features` (a FactorCL model's towers), with its model bound.
    ``bundle.model`` must be the CLIP model whose towers ``extract`` runs. Zero-shot is skipped
    (``zero_shot_skipped`` says why) without usable class names.
    """
    feats, labels = extract(loader, device=device, amp=amp, progress=progress, desc=desc)
    if "image" not in feats or "text" not in feats:
        raise ValueError("the features have no 'image' and 'text' tower embeddings")
    # Scored on the device: retrieval compares every pair with every other.
    feats = {k: feats[k].to(device) for k in ("image", "text")}
    labels = None if labels is None else labels.to(device)
    why_not = class_names_usable(classes)
    use_labels = why_not is None and labels is not None
    result = zero_shot_and_retrieval(
        bundle,
        None,
        feats["image"],
        feats["text"],
        labels if use_labels else None,
        list(classes) if use_labels and classes is not None else None,
        templates,
        device=device,
        amp=amp,
    )
    result["pairs"] = len(feats["image"])
    if not use_labels:
        result["zero_shot_skipped"] = why_not or "the pairs have no labels"
    return result


def eval_table(evaluations: Mapping[str, Mapping[str, Any] | None], pairs_are: str = "held-out pairs") -> list[str]:
    """Lines of a table: one row per model (``pretrained``, ``trained``), zero-shot and retrieval columns.

    ``pairs_are`` says what the pairs are, in the caption line."""
    columns = [
        ("zero-shot top1", "zero_shot", "top1"),
        ("top5", "zero_shot", "top5"),
        ("I->T R@1", "retrieval", "image_to_text_R@1"),
        ("R@5", "retrieval", "image_to_text_R@5"),
        ("R@10", "retrieval", "image_to_text_R@10"),
        ("T->I R@1", "retrieval", "text_to_image_R@1"),
        ("R@5", "retrieval", "text_to_image_R@5"),
        ("R@10", "retrieval", "text_to_image_R@10"),
    ]
    rows = {name: ev for name, ev in evaluations.items() if ev}
    if not rows:
        return []
    width = max(len(n) for n in rows) + 2
    head = " " * width + "  ".join(f"{c[0]:>14}" if i == 0 else f"{c[0]:>8}" for i, c in enumerate(columns))
    lines = [head]
    for name, ev in rows.items():
        cells = []
        for i, (_, group, key) in enumerate(columns):
            value = (ev.get(group) or {}).get(key)
            text = "-" if value is None else f"{100 * value:.1f}"
            cells.append(f"{text:>14}" if i == 0 else f"{text:>8}")
        lines.append(f"{name:<{width}}" + "  ".join(cells))
    pairs = {ev.get("pairs") for ev in rows.values()}
    skipped = {ev.get("zero_shot_skipped") for ev in rows.values()} - {None}
    lines.append(f"(%, on {', '.join(str(p) for p in sorted(pairs, key=str))} {pairs_are})")
    lines += [f"zero-shot skipped: {why}" for why in sorted(skipped)]
    return lines
