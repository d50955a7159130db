"""Zero-shot classification and image-text retrieval metrics for open_clip models.

- :func:`zero_shot_classifier`: CLIP's prompt ensemble. Class ``c``'s weight is
  ``normalize(mean_t normalize(text(t(c))))`` over the templates ``t``, giving a ``[D, C]`` matrix.
- :func:`zero_shot_accuracy`: top-k accuracy of ``normalize(image) @ classifier``.
- :func:`retrieval_metrics`: recall@k image->text and text->image on paired features (pair ``i``
  is the match of image ``i``).
- :func:`read_templates`, :func:`default_templates`: prompt templates from a file or from open_clip.
- :func:`zero_shot_and_retrieval`: all of it on the features :func:`~factorcl.clip.clip_features` gives.

A **template** is a string with a ``{}`` or ``{c}`` placeholder for the class name
(``"a photo of a {}."``), or a callable ``classname -> prompt`` (open_clip's own form). The two forms
can be mixed.

**Ranks and ties.** The rank of the true item is the number of candidates that score higher than it
(0 = first), and a query counts as a hit at ``k`` when its rank is below ``k``. With
``ties="optimistic"`` (the default) only candidates that score *strictly* higher count, so a
duplicate caption that scores the same as the true one does not cost a hit. With
``ties="pessimistic"`` every other candidate that scores at least as high counts. The two rules
differ only on exact ties. A collapsed model, whose features are all equal, gets a perfect score
under the optimistic rule and a score of zero at ``k < N`` under the pessimistic one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.files import read_utf8
from ..device import autocast
from .loading import ClipBundle
from .towers import TextTower, eval_mode

__all__ = [
    "TEMPLATE_KINDS",
    "TIES",
    "Template",
    "default_templates",
    "read_templates",
    "retrieval_metrics",
    "zero_shot_accuracy",
    "zero_shot_and_retrieval",
    "zero_shot_classifier",
]

Template = str | Callable[[str], str]

TEMPLATE_KINDS = {"openai": "OPENAI_IMAGENET_TEMPLATES", "simple": "SIMPLE_IMAGENET_TEMPLATES"}
TIES = ("optimistic", "pessimistic")

_PLACEHOLDER = re.compile(r"\{c?\}")
# Score-matrix elements per chunk (64 MiB of float32): retrieval on N pairs needs N x N scores, which
# for a large evaluation set does not fit in memory at once.
_CHUNK_ELEMENTS = 1 << 24


def read_templates(path: str | os.PathLike) -> list[str]:
    """The prompt templates of a ``--templates`` file: one per line, each with a ``{}`` or ``{c}`` placeholder.

    Blank lines and lines that start with ``#`` are skipped, and surrounding whitespace is
    stripped. Raises FileNotFoundError when the file is missing, and ValueError (naming the file and
    the line) when a template has no placeholder or the file holds no template.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"templates file not found: {p}")
    templates = []
    for number, line in enumerate(read_utf8(p).splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not _PLACEHOLDER.search(text):
            raise ValueError(
                f"{p}, line {number}: template {text!r} has no placeholder for the class name; "
                "write {} (or {c}) where it goes, e.g. 'a photo of a {}.'"
            )
        templates.append(text)
    if not templates:
        raise ValueError(f"{p} holds no templates (only blank lines and # comments); write one template per line")
    return templates


def default_templates(kind: str = "openai") -> list[str]:
    """open_clip's ImageNet prompt templates as ``{}`` strings.

    ``"openai"`` gives the 80 prompts of the CLIP paper and ``"simple"`` the 7-prompt subset
    (``open_clip.zero_shot_metadata``).
    """
    if kind not in TEMPLATE_KINDS:
        raise ValueError(f"unknown template kind {kind!r}; choose one of {', '.join(TEMPLATE_KINDS)}")
    from open_clip import zero_shot_metadata

    return [_as_format(t) for t in getattr(zero_shot_metadata, TEMPLATE_KINDS[kind])]


def _as_format(template: Callable[[str], str]) -> str:
    """An f-string lambda (open_clip's form) as a ``{}`` string, which can be printed and stored in results."""
    text = template("{}")
    probe = "\x00class\x00"
    # The conversion is exact only when the callable just inserts its argument. Check that it does.
    if template(probe) != text.replace("{}", probe):
        raise ValueError(f"template {text!r} does more than insert the class name; pass the callable itself")
    return text


def _render(template: Template, classname: str) -> str:
    if callable(template):
        prompt = template(classname)
        if not isinstance(prompt, str):
            raise ValueError(f"template {template!r} returned {type(prompt).__name__}, not a string")
        return prompt
    # Substituted, not str.format: other braces in a template stay literal text.
    return _PLACEHOLDER.sub(lambda _: classname, template)


def _check_templates(templates: Sequence[Template]) -> list[Template]:
    if isinstance(templates, str) or not isinstance(templates, Sequence):
        raise ValueError(f"templates must be a list of templates, got {type(templates).__name__}")
    if not templates:
        raise ValueError("templates is empty: pass at least one (e.g. default_templates() or read_templates(FILE))")
    for t in templates:
        if isinstance(t, str):
            if not _PLACEHOLDER.search(t):
                raise ValueError(f"template {t!r} has no placeholder for the class name; write {{}} where it goes")
        elif not callable(t):
            raise ValueError(f"a template must be a string with {{}} or a callable, got {type(t).__name__}")
    return list(templates)


def _check_classnames(classnames: Sequence[str]) -> list[str]:
    if isinstance(classnames, str) or not isinstance(classnames, Sequence):
        raise ValueError(f"classnames must be a list of strings, got {type(classnames).__name__}")
    if not classnames:
        raise ValueError("classnames is empty: zero-shot classification needs at least one class name")
    seen: set[str] = set()
    for name in classnames:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"every class name must be a non-empty string, got {name!r}")
        if name in seen:
            # Two equal classes get the same weights, so neither could ever be predicted over the other.
            raise ValueError(f"class name {name!r} appears twice in classnames")
        seen.add(name)
    return list(classnames)


def zero_shot_classifier(
    model: nn.Module,
    tokenizer: Callable[[list[str]], Tensor],
    classnames: Sequence[str],
    templates: Sequence[Template],
    device: torch.device | str | None = None,
    batch_size: int = 256,
    amp: str | None = None,
) -> Tensor:
    """Zero-shot class weights ``[D, C]`` (float32, unit columns, on ``device``) of an open_clip model.

    Column ``c`` is ``normalize(mean_t normalize(encode_text(t(classnames[c]))))``: the text
    embeddings of every template for the class, each L2-normalised, averaged, then normalised again.
    This is CLIP's recipe and the one open_clip's ``build_zero_shot_classifier`` uses. Column ``c``
    belongs to ``classnames[c]``, so a label ``y`` indexes the classnames. The prompts are encoded
    ``batch_size`` at a time, without gradients, with the model in eval mode (its own mode is then
    restored) and on ``device`` (default: the model's device; the model is moved there). ``amp``
    is the autocast mode (None, ``"bf16"`` or ``"fp16"``). Use the mode that the image features were
    extracted under.
    """
    names, temps = _check_classnames(classnames), _check_templates(templates)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prompts = [_render(t, c) for c in names for t in temps]  # class-major: reshaped to [C, T, D] below
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    text = TextTower(model)  # the same text path as clip_features, so classifier and features share a space
    embeddings = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            tokens = tokenizer(prompts[start : start + batch_size]).to(device)
            with autocast(device, amp):
                emb = text(tokens)
            embeddings.append(F.normalize(emb.float(), dim=-1))
    per_prompt = torch.cat(embeddings).view(len(names), len(temps), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1).T.contiguous()


def _features(x: Tensor, what: str) -> Tensor:
    """``x`` as L2-normalised float32 ``[N, D]``; ValueError naming ``what`` when it is empty or not finite."""
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a non-empty [N, D] tensor, got {shape}")
    x = x.float()
    # A NaN score compares as neither higher nor lower, so NaN features would otherwise count as hits.
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} holds NaN or infinite values")
    return F.normalize(x, dim=-1)


def _check_ks(ks: Sequence[int], what: str) -> list[int]:
    if isinstance(ks, int):
        ks = (ks,)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"{what} must be positive integers, got {ks!r}")
    return list(ks)


def _true_ranks(queries: Tensor, keys: Tensor, true: Tensor, ties: str) -> Tensor:
    """For each query row ``i``: how many of the ``keys`` ``[D, M]`` outscore key ``true[i]`` (see ties above)."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    rows = max(1, _CHUNK_ELEMENTS // keys.shape[1])
    ranks = []
    for start in range(0, queries.shape[0], rows):
        scores = queries[start : start + rows] @ keys
        # The true score is read from the same matrix, so it ties with itself bit for bit.
        target = scores.gather(1, true[start : start + rows, None])
        if ties == "optimistic":
            ranks.append((scores > target).sum(dim=1))
        else:
            ranks.append((scores >= target).sum(dim=1) - 1)
    return torch.cat(ranks)


def _hit_rate(ranks: Tensor, k: int) -> float:
    """The fraction of ranks below ``k``; a rank is below the number of candidates, so any larger ``k`` caps itself."""
    # An integer count over N, not a float32 mean: 1/3 comes out as the float nearest 1/3, as in a results file.
    return int((ranks < k).sum()) / ranks.shape[0]


def zero_shot_accuracy(
    image_features: Tensor,
    classifier: Tensor,
    labels: Tensor,
    topk: Sequence[int] = (1, 5),
    ties: str = "optimistic",
) -> dict[str, float]:
    """Top-k zero-shot accuracy ``{"top1": ..., "top5": ...}``, as fractions in [0, 1].

    The scores are ``normalize(image_features) [N, D] @ classifier [D, C]``, and ``labels`` ``[N]``
    holds class indices in ``[0, C)``. An image counts at ``k`` when its true class ranks among the
    first ``k`` (see the module docstring for ties). A ``k`` above the number of classes ``C`` acts as
    ``k = C`` but keeps its key, so with 3 classes ``top5`` is top-3 accuracy, which is 1.0.
    """
    feats = _features(image_features, "image_features")
    if not isinstance(classifier, Tensor) or classifier.dim() != 2 or classifier.shape[0] != feats.shape[1]:
        shape = tuple(classifier.shape) if isinstance(classifier, Tensor) else type(classifier).__name__
        raise ValueError(f"classifier must be [D, C] with D = {feats.shape[1]} (the features' width), got {shape}")
    num_classes = classifier.shape[1]
    labels = torch.as_tensor(labels, device=feats.device).reshape(-1)
    if labels.shape[0] != feats.shape[0] or labels.is_floating_point():
        raise ValueError(
            f"labels must be {feats.shape[0]} integer class indices (one per image), "
            f"got shape {tuple(labels.shape)}, dtype {labels.dtype}"
        )
    out_of_range = (labels < 0) | (labels >= num_classes)
    if bool(out_of_range.any()):
        bad = int(labels[out_of_range][0])
        raise ValueError(f"label {bad} is out of range for {num_classes} classes (labels index the class names)")
    ranks = _true_ranks(feats, classifier.to(feats.device, torch.float32), labels.long(), ties)
    return {f"top{k}": _hit_rate(ranks, k) for k in _check_ks(topk, "topk")}


def retrieval_metrics(
    image_features: Tensor,
    text_features: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    ties: str = "optimistic",
) -> dict[str, float]:
    """Recall@k of image->text and text->image retrieval on ``N`` image-caption pairs, as fractions.

    Caption ``i`` is the only match of image ``i`` (the diagonal), and the score is the cosine
    similarity. ``image_to_text_R@k`` is the fraction of images whose caption ranks among the first
    ``k`` of all ``N`` captions, and ``text_to_image_R@k`` is the same for captions over images (see
    the module docstring for ties). A ``k`` above ``N`` acts as ``k = N`` (every query hits). The keys are
    ``image_to_text_R@{k}`` for every ``k``, then ``text_to_image_R@{k}``.
    """
    image = _features(image_features, "image_features")
    text = _features(text_features, "text_features")
    if image.shape != text.shape:
        raise ValueError(
            f"image_features {tuple(image.shape)} and text_features {tuple(text.shape)} must be paired: same [N, D]"
        )
    ks = _check_ks(ks, "ks")
    diagonal = torch.arange(image.shape[0], device=image.device)
    out = {}
    for name, queries, keys in (("image_to_text", image, text), ("text_to_image", text, image)):
        ranks = _true_ranks(queries, keys.T, diagonal, ties)
        out.update({f"{name}_R@{k}": _hit_rate(ranks, k) for k in ks})
    return out


def zero_shot_and_retrieval(
    bundle_or_model: ClipBundle | nn.Module,
    tokenizer: Callable[[list[str]], Tensor] | None,
    image_features: Tensor,
    text_features: Tensor,
    labels: Tensor | None = None,
    classnames: Sequence[str] | None = None,
    templates: Sequence[Template] | None = None,
    device: torch.device | str | None = None,
    amp: str | None = None,
    ties: str = "optimistic",
) -> dict[str, Any]:
    """``{"zero_shot": {"top1", "top5"} or None, "retrieval": {...}}`` on extracted tower features.

    ``image_features`` and ``text_features`` are paired ``[N, D]`` tower embeddings, e.g. the
    ``"image"`` and ``"text"`` entries of :func:`~factorcl.clip.clip_features`. They must come from
    the same model whose text tower builds the classifier. ``zero_shot`` is None unless both
    ``labels`` and ``classnames`` are given. For a dataset, the classnames are
    ``ImageCaptionDataset.classes``. ``templates`` defaults to :func:`default_templates`.
    ``tokenizer=None`` takes the bundle's tokenizer. The classifier is built on ``device`` (default:
    the model's) and then scored where the features are.
    """
    if isinstance(bundle_or_model, ClipBundle):
        model = bundle_or_model.model
        tokenizer = tokenizer if tokenizer is not None else bundle_or_model.tokenizer
    else:
        model = bundle_or_model
    zero_shot = None
    if labels is not None and classnames is not None:
        if tokenizer is None:
            raise ValueError("zero-shot classification needs the model's tokenizer: pass it, or pass the ClipBundle")
        classifier = zero_shot_classifier(
            model,
            tokenizer,
            classnames,
            default_templates() if templates is None else templates,
            device=device,
            amp=amp,
        )
        zero_shot = zero_shot_accuracy(image_features, classifier, labels, ties=ties)
    return {"zero_shot": zero_shot, "retrieval": retrieval_metrics(image_features, text_features, ties=ties)}
