"""estimate() on samples: known answers (Gaussian mixture, synthetic sweeps, synergy), pieces, bad input."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from factorcl.data import make_synthetic
from factorcl.quantify import PID, BatchConfig, estimate
from factorcl.quantify.batch import conditional_mi_q, sinkhorn_log
from factorcl.quantify.discretize import bin_1d, kmeans
from factorcl.quantify.examples import gaussian_mixture
from factorcl.quantify.recommend import recommend

#: The CVX tests need the quantify extra; the BATCH and helper tests do not.
needs_cvxpy = pytest.mark.skipif(importlib.util.find_spec("cvxpy") is None, reason="needs cvxpy (the quantify extra)")

#: A quick BATCH for tests: the defaults are sized for 20,000 rows.
QUICK = BatchConfig(hidden=64, classifier_epochs=30, patience=4, align_epochs=4, batch_size=128)


# ------------------------------------------------------------------------------ known answers
@needs_cvxpy
@pytest.mark.slow
@pytest.mark.parametrize(("angle", "dominant"), [(0.0, "U1"), (math.pi / 4, "R"), (math.pi / 2, "U2")])
def test_gaussian_mixture_cvx_and_batch_agree(angle: float, dominant: str) -> None:
    x1, x2, y = gaussian_mixture(6000, angle, norm=2.0, seed=1)
    cvx = estimate(x1, x2, y, "cvx", clusters=20)
    batch = estimate(x1, x2, y, "batch", batch=QUICK, device="cpu")
    assert cvx.dominant() == batch.dominant() == dominant, (cvx.parts(), batch.parts())
    assert cvx.info["discretization"]["x1"] == "20 equal-width bins"


@pytest.mark.slow
def test_two_bits_sweep_moves_redundancy_into_unique() -> None:
    pids = []
    for ratio in (0.0, 0.5, 1.0):
        d = make_synthetic(num_samples=5000, unique_ratio=ratio, label="two_bits", seed=0)
        pids.append(estimate(d.x1, d.x2, d.y, "batch", batch=QUICK, device="cpu"))
    r = [p.R for p in pids]
    u = [p.U1 + p.U2 for p in pids]
    assert r[0] > r[1] > r[2] and u[0] < u[1] < u[2], (r, u)
    # The end points have exact answers: one redundant bit; two bits, one unique to each modality.
    assert r[0] == pytest.approx(1.0, abs=0.15) and u[0] < 0.15
    # The quick classifiers under-read the two bits (the full defaults reach 1.75 at 20,000 rows).
    assert 1.4 < u[2] < 2.05 and r[2] < 0.15


@pytest.mark.slow
def test_synergy_label_is_mostly_synergy() -> None:
    d = make_synthetic(num_samples=6000, label="synergy", seed=0)
    pid = estimate(d.x1, d.x2, d.y, "batch", batch=QUICK, device="cpu")
    assert pid.dominant() == "S" and pid.shares()["S"] > 0.7, pid.parts()


@needs_cvxpy
def test_cvx_bootstrap_interval_and_bias_record() -> None:
    x1, x2, y = gaussian_mixture(3000, 0.3, seed=2)
    pid = estimate(x1, x2, y, "cvx", clusters=8, n_bootstrap=15)
    for k in ("R", "U1", "U2", "S", "total", "unique_share"):
        lo, hi = pid.ci[k]
        assert lo <= hi
    assert pid.ci["total"][0] <= pid.total <= pid.ci["total"][1]
    # Miller-Madow over the occupied cells: (m_XY - m_X - m_Y + 1) / (2 N ln 2).
    shape = pid.info["discretization"]["joint_shape"]
    assert shape == [8, 8, 2] and 0 < pid.info["plugin_bias_bits"] <= 63 / (2 * 3000 * math.log(2)) + 1e-12
    json.dumps(pid.to_dict())  # JSON-friendly


@needs_cvxpy
def test_cvx_bootstrap_interval_covers_zero_for_independent_data() -> None:
    # Independent X1, X2, Y: every part is 0, but the plug-in total is biased upwards (about
    # 0.03 bits here) and a plain percentile interval would sit entirely above 0.
    rng = np.random.default_rng(0)
    x1, x2, y = rng.standard_normal((1000, 1)), rng.standard_normal((1000, 1)), rng.integers(0, 2, 1000)
    pid = estimate(x1, x2, y, "cvx", bins=6, n_bootstrap=40)
    assert pid.total > 0.005 and pid.info["plugin_bias_bits"] == pytest.approx(pid.total, rel=1.0)
    for k in ("total", "S"):
        assert pid.ci[k][0] <= 0.0 <= pid.ci[k][1], (k, pid.ci[k], pid.total)


def test_batch_bootstrap_and_record() -> None:
    x1, x2, y = gaussian_mixture(1500, 0.0, seed=3)
    cfg = BatchConfig(hidden=32, classifier_epochs=5, align_epochs=1, batch_size=64)
    pid = estimate(x1, x2, y, "batch", batch=cfg, n_bootstrap=3, device="cpu", seed=4)
    assert pid.method == "batch" and set(pid.ci) >= {"R", "U1", "U2", "S", "total"}
    assert pid.R + pid.U1 == pytest.approx(pid.info["I(X1;Y)"], abs=1e-9)
    assert pid.R + pid.U1 + pid.U2 + pid.S == pytest.approx(pid.total, abs=1e-9)
    assert pid.info["eval_rows"] + pid.info["fit_rows"] == 1500
    again = estimate(x1, x2, y, "batch", batch=cfg, device="cpu", seed=4)
    assert again.parts() == pytest.approx(pid.parts())  # seeded


@needs_cvxpy
def test_labels_may_be_any_integers_or_names() -> None:
    x1, x2, y = gaussian_mixture(800, 0.0, seed=0)  # y in {-1, +1}
    pid = estimate(x1, x2, y.astype(np.float64), "cvx", clusters=5)
    assert pid.info["classes"] == [-1.0, 1.0] and pid.U1 > 0.3
    names = np.where(y > 0, "pos", "neg")
    assert estimate(x1, x2, names, "cvx", clusters=5).parts() == pytest.approx(pid.parts())


def test_batch_small_data_shrinks_the_minibatch_and_refuses_too_few_rows() -> None:
    x1, x2, y = gaussian_mixture(300, 0.0, seed=5)
    cfg = BatchConfig(hidden=32, classifier_epochs=10, align_epochs=2)  # batch_size 256 > the 90 eval rows
    pid = estimate(x1, x2, y, "batch", batch=cfg, device="cpu")
    assert pid.info["minibatch"] == 90 and pid.info["batches"] == 1 and pid.U2 != 0.0
    with pytest.raises(ValueError, match="the batch estimator needs at least 60 samples, got 40"):
        estimate(x1[:40], x2[:40], y[:40], "batch", batch=cfg, device="cpu")
    with pytest.raises(ValueError, match=r"unknown batch option\(s\) \['epochs'\]"):
        estimate(x1, x2, y, "batch", batch={"epochs": 3})


# ------------------------------------------------------------------------------ pieces
def test_sinkhorn_matches_balanced_marginals() -> None:
    g = torch.Generator().manual_seed(0)
    log_k = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    rows = torch.rand(3, 5, generator=g, dtype=torch.float64)
    cols = torch.rand(3, 6, generator=g, dtype=torch.float64)
    cols = cols * rows.sum(1, keepdim=True) / cols.sum(1, keepdim=True)
    q = sinkhorn_log(log_k, rows.log(), cols.log(), iters=200).exp()
    torch.testing.assert_close(q.sum(2), rows)
    torch.testing.assert_close(q.sum(1), cols)


def test_conditional_mi_q_matches_direct_formula() -> None:
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(2 * 4 * 3)).reshape(2, 4, 3)  # [K, m1, m2]

    # I(X2; Y | X1) = H(Y | X1) - H(Y | X1, X2), computed from entropies.
    def h(a):
        a = a[a > 0]
        return -np.sum(a * np.log(a))

    q_i = q.sum(axis=(0, 2))
    q_iy = q.sum(axis=2)
    q_ij = q.sum(axis=0)
    expected = (h(q_iy) - h(q_i)) - (h(q) - h(q_ij))
    got = float(conditional_mi_q(torch.as_tensor(q).log()))
    assert got == pytest.approx(expected, rel=1e-9)


def test_kmeans_recovers_separated_blobs_and_bins() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=float)
    truth = rng.integers(0, 4, size=400)
    x = centres[truth] + 0.1 * rng.standard_normal((400, 3))
    ids = kmeans(x, 4, seed=1)
    # The same partition up to renaming: every true cluster maps to exactly one id.
    pairs = {(int(t), int(i)) for t, i in zip(truth, ids)}
    assert len(pairs) == 4 and len({i for _, i in pairs}) == 4
    assert bin_1d(np.array([0.0, 0.24, 0.5, 0.99, 1.0]), 4).tolist() == [0, 0, 2, 3, 3]


def test_recommendation_reads_the_shares() -> None:
    info = {"H(Y)": 1.0, "samples": 100}
    unique = recommend(PID(0.1, 0.3, 0.3, 0.0, 0.7, info=info))
    assert "Unique information is 86%" in unique and "FactorCL's unique terms are expected to matter" in unique
    shared = recommend(PID(0.9, 0.02, 0.02, 0.02, 0.96, info=info))
    assert "plain contrastive learning (SimCLR / CLIP) should suffice" in shared and "Rests on" in shared
    synergy = recommend(PID(0.05, 0.0, 0.0, 0.9, 0.95, info=info))
    assert "Synergy is 95%" in synergy
    assert "almost no information" in recommend(PID(0.0, 0.01, 0.0, 0.0, 0.01, info=info))
    uncertain = PID(0.7, 0.13, 0.0, 0.0, 0.83, info=info, ci={"unique_share": (0.1, 0.3)})
    assert "crosses the 25% threshold" in recommend(uncertain)
    # A negative part is flagged and the shares use the clipped parts (never "143% unique").
    inconsistent = recommend(PID(-0.3, 0.5, 0.5, 0.0, 0.7, info=info))
    assert "Unique information is 100%" in inconsistent and "R = -0.300" in inconsistent
    biased = recommend(PID(0.1, 0.2, 0.2, 0.5, 1.0, info={**info, "plugin_bias_bits": 0.4}))
    assert "plug-in bias of the discretised joint is about 0.400 bits, 40%" in biased


# ------------------------------------------------------------------------------ bad input
@needs_cvxpy
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x2": np.zeros((9, 2))}, r"x1, x2 and y must have the same number of rows, got 10, 9 and 10"),
        ({"y": np.zeros(10)}, r"y must hold at least two classes"),
        ({"y": np.linspace(0, 1, 10)}, r"y must hold integer class labels for a classification PID"),
        ({"x1": np.full((10, 2), np.nan)}, r"x1 contains NaN or inf"),
        ({"method": "exact"}, r"method must be one of \['cvx', 'batch'\]"),
        ({"clusters": 50}, r"clusters=50 needs at least 50 samples of x1, got 10"),
        ({"n_bootstrap": -1}, r"n_bootstrap must be >= 0"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, match: str) -> None:
    rng = np.random.default_rng(0)
    args = {"x1": rng.standard_normal((10, 2)), "x2": rng.standard_normal((10, 2)), "y": np.arange(10) % 2}
    args.update(kwargs)
    method = args.pop("method", "cvx")
    with pytest.raises(ValueError, match=match):
        estimate(args.pop("x1"), args.pop("x2"), args.pop("y"), method, **args)
