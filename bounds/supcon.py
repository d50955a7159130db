"""Supervised contrastive loss (Khosla et al., 2020) as a function of a score matrix."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import check_groups, check_scores, check_tensor
from .estimators import _upcast, valid_row_mean


def supcon_loss(
    scores: Tensor,
    labels: Tensor,
    candidate_labels: Tensor | None = None,
    self_index: Tensor | None = None,
    normalizer: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """SupCon's L_out: mean over anchors of -mean_{p in P(i)} log softmax_{a != self} s_ia at p.

    Rows are anchors, columns candidates; P(i) is every candidate with the anchor's label except
    the anchor itself. ``self_index[i]`` is the column holding anchor i itself (or -1 if none);
    leave it None when anchors and candidates are different samples (cross-modal scores). The
    temperature is part of the scores (e.g. cosine similarity / tau on L2-normalised features).
    Anchors with no positive are left out of the mean.

    ``normalizer`` maps the number of anchors with a positive (a 0-dim tensor) to what the sum of
    their terms is divided by instead (default: the number itself, the mean); a rank of a
    distributed job passes :func:`factorcl.distributed.global_mean_normalizer` so that the mean of
    the ranks' values is the global batch's mean.
    """
    scores = check_scores(scores)
    b, n = scores.shape
    labels = check_groups(labels, b, "labels")
    candidate_labels = labels if candidate_labels is None else candidate_labels
    if candidate_labels.shape[0] != n:
        raise ValueError(f"candidate_labels must be a [{n}] vector, got shape {tuple(candidate_labels.shape)}")
    candidate_labels = check_groups(candidate_labels, n, "candidate_labels")
    s = _upcast(scores)
    valid = torch.ones_like(s, dtype=torch.bool)
    if self_index is not None:
        self_index = check_tensor(self_index, "self_index").to(s.device).long()
        if self_index.shape != (b,):
            raise ValueError(
                f"self_index must be a [{b}] vector of column indices, got shape {tuple(self_index.shape)}"
            )
        rows = torch.nonzero(self_index >= 0).squeeze(1)
        valid[rows, self_index[rows]] = False
    pos = (labels.unsqueeze(1) == candidate_labels.unsqueeze(0)) & valid
    log_prob = s - torch.logsumexp(s.masked_fill(~valid, float("-inf")), dim=1, keepdim=True)
    n_pos = pos.sum(dim=1)
    per_anchor = log_prob.masked_fill(~pos, 0.0).sum(dim=1) / n_pos.clamp_min(1).to(s.dtype)
    value = valid_row_mean(
        per_anchor,
        n_pos > 0,
        normalizer,
        "no anchor has a positive (another candidate with its label); SupCon needs >= 2 samples of a class",
    )
    return (-value).to(scores.dtype)
