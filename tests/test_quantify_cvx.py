"""pid_discrete (CVX) against closed forms and against dit's BROJA PID (its exact cone solver)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from factorcl.quantify import PID, pid_discrete
from factorcl.quantify.examples import DISCRETE_CASES, discrete_case
from factorcl.quantify.pid import PARTS, mutual_informations

dit = pytest.importorskip("dit")
pytest.importorskip("ecos")  # dit's method="cone"
from dit.pid import PID_BROJA  # noqa: E402


def dit_broja(p: np.ndarray) -> dict[str, float]:
    """dit's BROJA PID of a joint array, with its exponential-cone solver (its default SLSQP is inexact)."""
    outcomes = [idx for idx in np.ndindex(p.shape) if p[idx] > 0]
    d = dit.Distribution(outcomes, [p[idx] for idx in outcomes])
    r = PID_BROJA(d, [[0], [1]], [2], method="cone")
    return {"R": r.get_pi(((0,), (1,))), "U1": r.get_pi(((0,),)), "U2": r.get_pi(((1,),)), "S": r.get_pi(((0, 1),))}


def random_joints(n: int = 20, seed: int = 0) -> list[np.ndarray]:
    """Random joints of sizes up to 6 x 6 x 4, half of them with zero cells."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = (int(rng.integers(2, 7)), int(rng.integers(2, 7)), int(rng.integers(2, 5)))
        p = rng.dirichlet(np.full(int(np.prod(shape)), 0.5)).reshape(shape)
        if i % 2:
            p = p * (rng.random(shape) > 0.4)
            p = p / p.sum()
        out.append(p)
    return out


@pytest.mark.parametrize("name", sorted(DISCRETE_CASES))
def test_exact_cases_closed_form(name: str) -> None:
    expected = dict(zip(PARTS, DISCRETE_CASES[name][1]))
    got = pid_discrete(discrete_case(name)).parts()
    for k in PARTS:
        assert got[k] == pytest.approx(expected[k], abs=1e-3), (name, k, got)


@pytest.mark.parametrize("name", sorted(DISCRETE_CASES))
def test_exact_cases_match_dit(name: str) -> None:
    p = discrete_case(name)
    got, ref = pid_discrete(p).parts(), dit_broja(p)
    for k in PARTS:
        assert got[k] == pytest.approx(ref[k], abs=1e-3), (name, k, got, ref)


@pytest.mark.parametrize("index", range(20))
def test_random_joints_match_dit(index: int) -> None:
    p = random_joints()[index]
    got, ref = pid_discrete(p).parts(), dit_broja(p)
    for k in PARTS:
        assert got[k] == pytest.approx(ref[k], abs=1e-3), (p.shape, k, got, ref)


def test_identities_and_units() -> None:
    p = random_joints(3, seed=5)[2]
    pid = pid_discrete(p)
    mi = mutual_informations(p)
    assert pid.R + pid.U1 == pytest.approx(mi["I(X1;Y)"], abs=1e-9)
    assert pid.R + pid.U2 == pytest.approx(mi["I(X2;Y)"], abs=1e-9)
    assert pid.R + pid.U1 + pid.U2 + pid.S == pytest.approx(pid.total, abs=1e-9)
    assert min(pid.parts().values()) > -1e-6  # BROJA parts are non-negative
    d = pid.to_dict()
    assert (
        d["units"] == "bits"
        and set(PARTS) <= set(d)
        and d["shares"]["unique_share"] == pytest.approx((pid.U1 + pid.U2) / pid.total)
    )
    # A bit copied into Y through X1 only: 1 bit, all unique to X1, whatever X2 is.
    one_bit = np.zeros((2, 3, 2))
    one_bit[0, :, 0] = one_bit[1, :, 1] = 1 / 6
    assert pid_discrete(one_bit).U1 == pytest.approx(1.0, abs=1e-4)


def test_single_label_is_zero_without_solver() -> None:
    p = np.full((3, 2, 1), 1 / 6)
    pid = pid_discrete(p)
    assert isinstance(pid, PID) and pid.total == 0.0 and pid.info["solver"]["status"] == "trivial"


@pytest.mark.parametrize(
    ("p", "match"),
    [
        (np.full((2, 2, 2), 0.2), "must sum to 1"),
        (np.array([[[0.75, 0.5], [0.0, 0.0]], [[0.0, 0.0], [0.0, -0.25]]]), "negative"),
        (np.full((4, 4), 1 / 16), "3-d joint"),
        (np.array([[[np.nan, 1.0]]]), "finite"),
        ("abc", "numeric"),
    ],
)
def test_bad_joint_names_p(p, match: str) -> None:
    with pytest.raises(ValueError, match=rf"p must .*{match}|{match}"):
        pid_discrete(p)


def test_missing_cvxpy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    with pytest.raises(ImportError, match=r"factorcl\[quantify\]"):
        pid_discrete(discrete_case("XOR"))
