"""A plain recommendation from a PID: which kind of objective the task's information calls for.

The rule reads the shares of I(X1, X2; Y) (thresholds below, fixed in advance, not tuned):

- unique share (U1 + U2) / total >= ``UNIQUE_MATTERS`` (25%): FactorCL's unique terms should matter;
- else redundancy share >= ``MOSTLY_SHARED`` (75%): plain contrastive learning should suffice;
- else: mixed, FactorCL may help modestly;
- synergy share >= ``SYNERGY_MATTERS`` (25%) adds a warning: neither FactorCL nor standard
  contrastive learning targets synergy (the chapter's U1, U2 count it, the PID does not);
- a total below ``NEGLIGIBLE`` (5%) of H(Y) means the label is barely predictable at all;
- a part below ``-INCONSISTENT`` (5%) of the total is an estimator inconsistency (BATCH can read a
  joint classifier below its unimodal ones): shares are then computed from the parts clipped at
  zero, and the text says so;
- a plug-in bias (CVX) above ``BIAS_WARNING`` (25%) of the total is reported: the numbers are then
  mostly small-sample artefact (fewer clusters or more rows help).

Every recommendation ends with what it rests on: the estimator, sample count and, with a
bootstrap, the interval of the share the decision turned on.
"""

from __future__ import annotations

from .pid import PID

__all__ = [
    "BIAS_WARNING",
    "INCONSISTENT",
    "MOSTLY_SHARED",
    "NEGLIGIBLE",
    "SYNERGY_MATTERS",
    "UNIQUE_MATTERS",
    "recommend",
]

UNIQUE_MATTERS = 0.25
MOSTLY_SHARED = 0.75
SYNERGY_MATTERS = 0.25
NEGLIGIBLE = 0.05
INCONSISTENT = 0.05
BIAS_WARNING = 0.25


def _pct(x: float) -> str:
    return f"{100.0 * x:.0f}%"


def _interval(pid: PID, key: str) -> str:
    if key not in pid.ci:
        return ""
    lo, hi = pid.ci[key]
    return f", {_pct(pid.info.get('bootstrap', {}).get('confidence', 0.95))} interval {_pct(lo)}-{_pct(hi)}"


def _straddles(pid: PID, key: str, threshold: float) -> bool:
    return key in pid.ci and pid.ci[key][0] < threshold <= pid.ci[key][1]


def recommend(pid: PID) -> str:
    """One or two sentences: what the PID says about the choice of objective, and what that rests on."""
    h_y = float(pid.info.get("H(Y)", 0.0))
    parts = pid.parts()
    negative = {k: v for k, v in parts.items() if v < -INCONSISTENT * max(pid.total, 1e-12)}
    clipped = {k: max(v, 0.0) for k, v in parts.items()}
    denom = sum(clipped.values())
    shares = {k: v / denom if denom > 0 else 0.0 for k, v in clipped.items()}
    unique, redundant, synergy = shares["U1"] + shares["U2"], shares["R"], shares["S"]
    rests = (
        f"{pid.method.upper()} estimate on {pid.info.get('samples', '?')} samples, I(X1,X2;Y) = {pid.total:.3f} bits"
    )
    if h_y > 0:
        rests += f" of H(Y) = {h_y:.3f}"
    if pid.total <= NEGLIGIBLE * max(h_y, 1e-12):
        return (
            f"The two modalities carry almost no information about the label ({pid.total:.3f} bits): no choice of "
            f"objective rests on these numbers; check the labels and features first. (Rests on: {rests}.)"
        )
    if unique >= UNIQUE_MATTERS:
        text = (
            f"Unique information is {_pct(unique)} of the task information (U1 {_pct(shares['U1'])}, U2 "
            f"{_pct(shares['U2'])}): FactorCL's unique terms are expected to matter."
        )
        checks = [("unique_share", UNIQUE_MATTERS)]
    elif redundant >= MOSTLY_SHARED:
        text = (
            f"Almost all task information is shared ({_pct(redundant)} redundant, {_pct(unique)} unique): plain "
            "contrastive learning (SimCLR / CLIP) should suffice."
        )
        checks = [("unique_share", UNIQUE_MATTERS), ("redundancy_share", MOSTLY_SHARED)]
    else:
        text = (
            f"The task information is mixed ({_pct(redundant)} redundant, {_pct(unique)} unique, {_pct(synergy)} "
            "synergistic): FactorCL's unique terms may help, but less than when unique information dominates."
        )
        checks = [("unique_share", UNIQUE_MATTERS), ("redundancy_share", MOSTLY_SHARED)]
    if synergy >= SYNERGY_MATTERS:
        text += (
            f" Synergy is {_pct(synergy)}: information only the two modalities carry together, which neither "
            "FactorCL nor standard contrastive learning targets; a model that fuses both inputs is needed for it."
        )
    extended = {**shares, "unique_share": unique, "redundancy_share": redundant, "synergy_share": synergy}
    for key, threshold in checks:
        rests += f"; {key.replace('_', ' ')} {_pct(extended[key])}{_interval(pid, key)}"
        if _straddles(pid, key, threshold):
            rests += f", which crosses the {_pct(threshold)} threshold, so the call is uncertain"
    if negative:
        listed = ", ".join(f"{k} = {v:.3f}" for k, v in negative.items())
        text += (
            f" Caution: the estimate is inconsistent ({listed} bits, below zero), so the shares above use the parts "
            "clipped at zero; more rows or a longer fit of the estimator should remove it."
        )
    bias = pid.info.get("plugin_bias_bits")
    if bias is not None and bias > BIAS_WARNING * pid.total:
        text += (
            f" Caution: the plug-in bias of the discretised joint is about {bias:.3f} bits, "
            f"{_pct(bias / max(pid.total, 1e-12))} of the total (most of it reads as synergy): use fewer clusters "
            "or more rows before trusting these numbers."
        )
    thresholds = f"thresholds: unique >= {_pct(UNIQUE_MATTERS)}, redundant >= {_pct(MOSTLY_SHARED)}"
    return f"{text} (Rests on: {rests}; {thresholds}.)"
