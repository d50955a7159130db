"""Input validation shared by every critic and estimator: one message style, one place."""

from __future__ import annotations

import operator

import torch
from torch import Tensor

_VALUE_CHECKS = True


def set_value_checks(enabled: bool) -> None:
    """Turn the NaN/inf checks on score matrices on or off (on by default).

    The check reads a value back from the device, which costs a synchronisation per call on a
    GPU; a training loop that already watches its loss for NaN can switch it off.
    """
    global _VALUE_CHECKS
    _VALUE_CHECKS = bool(enabled)


def value_checks_enabled() -> bool:
    """Whether score matrices are checked for NaN/inf values."""
    return _VALUE_CHECKS


def shape_str(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_tensor(t: object, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_scores(scores: object, name: str = "scores") -> Tensor:
    """A non-empty, finite, floating [B, N] score matrix."""
    scores = check_tensor(scores, name)
    if scores.dim() != 2:
        raise ValueError(f"{name} must be a 2-D [B, N] score matrix, got shape {shape_str(scores)}")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [B, N] score matrix, got shape {shape_str(scores)}")
    if not scores.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {scores.dtype}")
    if _VALUE_CHECKS and not bool(torch.isfinite(scores).all()):
        bad = "NaN" if bool(torch.isnan(scores).any()) else "inf"
        raise ValueError(f"{name} contains {bad} values; expected finite scores")
    return scores


def as_offset(offset: object) -> int:
    """``offset`` as an int >= 0: Python and numpy integers only (a float, string or bool is refused, not rounded)."""
    expected = "offset must be an integer >= 0 (the column of row 0's positive)"
    try:
        if isinstance(offset, bool):
            raise TypeError
        value = operator.index(offset)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{expected}, got {offset!r} ({type(offset).__name__})") from None
    if value < 0:
        raise ValueError(f"{expected}, got {value}")
    return value


def check_offset(scores: Tensor, offset: int, name: str = "scores") -> int:
    """Positives sit at scores[i, offset + i]: they must all fall inside the matrix."""
    b, n = scores.shape
    offset = as_offset(offset)
    if offset + b > n:
        raise ValueError(
            f"offset={offset} puts the positives of {name} with shape {shape_str(scores)} outside the "
            f"matrix; expected 0 <= offset <= N - B = {n - b}"
        )
    return offset


def check_negatives(scores: Tensor, name: str = "scores") -> None:
    """A contrastive estimate needs a negative in every row: N >= 2 candidates, i.e. a batch of >= 2."""
    n = scores.shape[1]
    if n < 2:
        raise ValueError(
            f"the batch size must be >= 2 for a contrastive estimate (in-batch negatives), got a batch "
            f"of {n} ({name} has shape {shape_str(scores)}: no negatives)"
        )


def check_features(t: object, dim: int | None, name: str) -> Tensor:
    """A non-empty [B, dim] feature batch."""
    t = check_tensor(t, name)
    expected = f"[B, {dim}]" if dim is not None else "[B, D]"
    if t.dim() != 2:
        raise ValueError(f"{name} must be {expected}, got shape {shape_str(t)}")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name} must be {expected}, got shape {shape_str(t)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch; expected {expected} with B >= 1")
    return t


def check_same_batch(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} must have the same batch size, got {a.shape[0]} and {b.shape[0]}")


def check_groups(groups: object, n: int, name: str) -> Tensor:
    """An integer [n] vector of group ids (labels)."""
    groups = check_tensor(groups, name)
    if groups.dim() != 1 or groups.shape[0] != n:
        raise ValueError(f"{name} must be a [{n}] vector of group ids, got shape {shape_str(groups)}")
    if groups.is_floating_point() or groups.is_complex():
        raise ValueError(f"{name} must hold integer group ids, got dtype {groups.dtype}")
    return groups
