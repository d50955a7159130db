"""The FactorCL objective as a table: five terms (Eqs. 4.8-4.9) and one row of switches per method.

| term             | estimator                                              | sign in loss |
|------------------|--------------------------------------------------------|--------------|
| shared_keep      | I_NCE(Z_S1; Z_S2)                                      | -            |
| shared_remove    | I_NCE-CLUB(Z_S1; Z_S2 | C)                             | +            |
| unique_keep      | I_NCE(Z_Ui; Z_Ui') (SSL) or I_NCE(Z_Ui; Y) (SUP), i=1,2 | -            |
| unique_remove    | I_NCE-CLUB(Z_U1; Z_U2)                                 | +            |
| unique_cond_keep | I_NCE(Z_U1; Z_U2 | C)                                  | -            |

C is the augmented pair (X1', X2') for self-supervised (SSL) methods and the label Y for
supervised (SUP) ones. Non-factorised methods use one representation Z_i per modality in place
of both Z_Si and Z_Ui.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches

TERMS: tuple[str, ...] = ("shared_keep", "shared_remove", "unique_keep", "unique_remove", "unique_cond_keep")

#: +1: the term is added to the loss (an upper bound to minimise); -1: subtracted (a lower bound to maximise).
SIGNS: dict[str, int] = {
    "shared_keep": -1,
    "shared_remove": +1,
    "unique_keep": -1,
    "unique_remove": +1,
    "unique_cond_keep": -1,
}

#: Terms estimated by NCE-CLUB: their critics are trained separately, on detached features.
UPPER_BOUND_TERMS: frozenset[str] = frozenset({"shared_remove", "unique_remove"})

#: Terms conditioned on C.
CONDITIONAL_TERMS: frozenset[str] = frozenset({"shared_remove", "unique_cond_keep"})


@dataclass(frozen=True)
class Objective:
    """One method: which terms it uses, whether its representation is factorised, and how it conditions."""

    name: str
    terms: frozenset[str]
    factorized: bool
    supervised: bool
    supcon: bool = False

    @property
    def needs_labels(self) -> bool:
        """Whether the training batch must carry labels."""
        return self.supervised

    @property
    def needs_views(self) -> bool:
        """Whether augmented views X1', X2' are encoded (SSL methods with a view-based term)."""
        return not self.supervised and bool(self.terms & {"unique_keep", *CONDITIONAL_TERMS})

    @property
    def representation_keys(self) -> tuple[str, ...]:
        """Keys of ``FactorCL.embed``: s1, s2, u1, u2 when factorised, else z1, z2."""
        return ("s1", "s2", "u1", "u2") if self.factorized else ("z1", "z2")


_ALL = frozenset(TERMS)

METHODS: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("factorcl-ssl", _ALL, factorized=True, supervised=False),
        # Ablations of FactorCL-SSL (which terms earn their place): no NCE-CLUB removal terms; no
        # conditional lower bound I_NCE(Z_U1; Z_U2 | C).
        Objective("factorcl-ssl-no-remove", _ALL - UPPER_BOUND_TERMS, factorized=True, supervised=False),
        Objective("factorcl-ssl-no-cond", _ALL - {"unique_cond_keep"}, factorized=True, supervised=False),
        Objective("factorcl-sup", _ALL, factorized=True, supervised=True),
        Objective("ourcl-ssl", _ALL, factorized=False, supervised=False),
        Objective("ourcl-sup", _ALL, factorized=False, supervised=True),
        Objective("simclr", frozenset({"shared_keep"}), factorized=False, supervised=False),
        Objective("cross+self", frozenset({"shared_keep", "unique_keep"}), factorized=False, supervised=False),
        Objective("cross+self+fact", frozenset({"shared_keep", "unique_keep"}), factorized=True, supervised=False),
        # SupCon (Khosla et al.) on L2-normalised features, both modalities as views; not a row of the table.
        Objective("supcon", frozenset(), factorized=False, supervised=True, supcon=True),
    )
}


@dataclass(frozen=True)
class TermSpec:
    """One estimator of a method's loss, expanded from the table: what it scores and how it counts.

    ``x`` and ``y`` name representations (``s1``, ``u2``, ``z1``, ...); ``y`` may also be
    ``view:<key>`` (that representation of the augmented view) or ``label`` (the one-hot label).
    ``condition`` is None, ``views`` (the augmented views' ``condition_keys`` representations) or
    ``label``. ``sign`` is +1 for an upper bound added to the loss, -1 for a lower bound subtracted.
    """

    name: str  # the estimator's key: shared_keep, unique_keep1, unique_keep2, ...
    term: str  # the row of the table: shared_keep, unique_keep, ...
    kind: str  # infonce | nce_club | conditional_infonce | conditional_nce_club
    x: str
    y: str
    condition: str | None = None
    condition_keys: tuple[str, str] | None = None

    @property
    def sign(self) -> int:
        """+1: added to the loss (an upper bound to minimise); -1: subtracted (a lower bound to maximise)."""
        return SIGNS[self.term]

    @property
    def upper_bound(self) -> bool:
        """Whether the term is an NCE-CLUB estimate (its critics are trained by the critic step)."""
        return self.term in UPPER_BOUND_TERMS


def term_specs(objective: Objective) -> tuple[TermSpec, ...]:
    """The estimators of a method, in the order they are built and evaluated (the table, expanded once)."""
    fact, sup = objective.factorized, objective.supervised
    s1, s2 = ("s1", "s2") if fact else ("z1", "z2")
    u1, u2 = ("u1", "u2") if fact else ("z1", "z2")
    condition = "label" if sup else "views"
    specs: list[TermSpec] = []
    if "shared_keep" in objective.terms:
        specs.append(TermSpec("shared_keep", "shared_keep", "infonce", s1, s2))
    if "unique_keep" in objective.terms:
        for i, u in ((1, u1), (2, u2)):
            specs.append(TermSpec(f"unique_keep{i}", "unique_keep", "infonce", u, "label" if sup else f"view:{u}"))
    if "unique_remove" in objective.terms:
        specs.append(TermSpec("unique_remove", "unique_remove", "nce_club", u1, u2))
    if "shared_remove" in objective.terms:
        specs.append(
            TermSpec(
                "shared_remove", "shared_remove", "conditional_nce_club", s1, s2, condition, None if sup else (s1, s2)
            )
        )
    if "unique_cond_keep" in objective.terms:
        specs.append(
            TermSpec(
                "unique_cond_keep",
                "unique_cond_keep",
                "conditional_infonce",
                u1,
                u2,
                condition,
                None if sup else (u1, u2),
            )
        )
    return tuple(specs)


def get_objective(method: str) -> Objective:
    """The objective of a method by name (case-insensitive); unknown names list the valid ones."""
    key = str(method).lower().replace("_", "-").replace(" ", "")
    if key in METHODS:
        return METHODS[key]
    close = get_close_matches(key, list(METHODS), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}.{hint}")
