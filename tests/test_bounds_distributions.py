import math

import pytest
import torch

from bounds.distributions import (
    CorrelatedGaussian,
    DiscreteConditionalGaussian,
    LinearGaussianCondition,
    rho_from_mi,
)


def test_correlated_gaussian_closed_forms_and_moments():
    dist = CorrelatedGaussian.from_mi(4, 3.0)
    assert dist.mi == pytest.approx(3.0)
    assert rho_from_mi(3.0, 4) == pytest.approx(dist.rho)
    assert dist.mi_plus_lautum == pytest.approx(4 * (math.exp(1.5) - 1))
    x, y = dist.sample(200_000, torch.Generator().manual_seed(0))
    assert x.std().item() == pytest.approx(1.0, abs=0.01)
    assert y.std().item() == pytest.approx(1.0, abs=0.01)
    corr = ((x - x.mean(0)) * (y - y.mean(0))).mean(0) / (x.std(0) * y.std(0))
    torch.testing.assert_close(corr, torch.full((4,), dist.rho), atol=0.01, rtol=0)


def test_log_density_ratio_averages_to_mi_and_minus_lautum():
    dist = CorrelatedGaussian.from_mi(3, 1.0)
    x, y = dist.sample(2000, torch.Generator().manual_seed(0), dtype=torch.float64)
    r = dist.log_density_ratio(x, y)
    assert r.diagonal().mean().item() == pytest.approx(dist.mi, abs=0.05)
    off = (r.sum() - r.diagonal().sum()) / (2000 * 1999)
    assert (r.diagonal().mean() - off).item() == pytest.approx(dist.mi_plus_lautum, rel=0.05)


def test_samplers_are_reproducible_and_follow_dtype():
    for dist in (CorrelatedGaussian(3, 0.5), DiscreteConditionalGaussian(3, 0.5), LinearGaussianCondition(3)):
        a = dist.sample(10, torch.Generator().manual_seed(5), dtype=torch.float64)
        b = dist.sample(10, torch.Generator().manual_seed(5), dtype=torch.float64)
        for ta, tb in zip(a, b):
            torch.testing.assert_close(ta, tb)
        assert a[0].dtype == torch.float64


def test_discrete_condition_flips_the_correlation():
    dist = DiscreteConditionalGaussian(2, 0.8)
    x, y, z = dist.sample(100_000, torch.Generator().manual_seed(0))
    for value, sign in ((0, 1.0), (1, -1.0)):
        m = z == value
        corr = (x[m] * y[m]).mean(0)
        torch.testing.assert_close(corr, torch.full((2,), sign * 0.8), atol=0.02, rtol=0)
    assert abs((x * y).mean().item()) < 0.02  # marginally uncorrelated


def test_linear_gaussian_closed_forms():
    dist = LinearGaussianCondition(2, a=1.0, b=1.0, rho=0.8)
    assert dist.conditional_mi == pytest.approx(-math.log(0.36))
    assert dist.mi_xz == pytest.approx(math.log(2))
    assert dist.mi_x_yz == pytest.approx(dist.mi_xz + dist.conditional_mi)
    x, y, z = dist.sample(200_000, torch.Generator().manual_seed(0))
    corr = ((x * y).mean(0) / (x.std(0) * y.std(0))).mean().item()
    assert corr == pytest.approx(1.8 / 2.0, abs=0.01)


def test_bad_parameters():
    with pytest.raises(ValueError, match="rho must be in"):
        CorrelatedGaussian(2, 1.0)
    with pytest.raises(ValueError, match="mi must be >= 0"):
        CorrelatedGaussian.from_mi(2, -1.0)


# --- heavy-tailed and non-Gaussian closed forms ----------------------------------------------

from bounds.distributions import (  # noqa: E402
    DenseGaussian,
    MonotoneTransformed,
    StudentTPair,
    student_t_mi_correction,
)


def _mc_mi(dist, n: int, seed: int) -> tuple[float, float]:
    """Monte Carlo of I = E log p(x, y) / (p(x) p(y)) from the exact log ratio: (mean, standard error)."""
    x, y = dist.sample(n, torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = dist.pointwise_log_ratio(x, y)
    return r.mean().item(), (r.std() / math.sqrt(n)).item()


@pytest.mark.parametrize(
    "df,x_dim,y_dim,rho", [(1, 5, 5, 0.0), (2, 5, 5, 0.0), (5, 5, 5, 0.0), (3, 2, 4, 0.6), (1.5, 3, 3, 0.8)]
)
def test_student_t_mi_formula_matches_monte_carlo(df, x_dim, y_dim, rho):
    """Arellano-Valle et al. (2013): I = I_Gaussian + f(nu, p, q), against the mean exact log ratio."""
    dist = StudentTPair(x_dim, y_dim, df, rho)
    mc, se = _mc_mi(dist, 200_000, seed=0)
    print(f"Student-t df={df} {x_dim}+{y_dim} rho={rho}: closed form {dist.mi:.4f}, MC {mc:.4f} (SE {se:.4f})")
    assert abs(mc - dist.mi) <= max(4 * se, 0.005)


def test_student_t_values_and_limits():
    # The value for identity dispersion, 5 + 5 dims, 2 degrees of freedom.
    assert StudentTPair(5, 5, 2).mi == pytest.approx(0.448, abs=1e-3)
    # The shared scale's contribution vanishes as nu -> infinity (the Gaussian limit) and falls with nu.
    assert student_t_mi_correction(1e6, 5, 5) == pytest.approx(0.0, abs=1e-4)
    values = [student_t_mi_correction(nu, 5, 5) for nu in (1, 2, 5, 30)]
    assert values == sorted(values, reverse=True) and values[-1] > 0
    assert StudentTPair(3, 3, 4, 0.5).gaussian_mi == pytest.approx(CorrelatedGaussian(3, 0.5).mi)
    for bad in (dict(df=0.0), dict(rho=1.0), dict(x_dim=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            StudentTPair(**{**dict(x_dim=2, y_dim=2, df=2.0), **bad})


def test_student_t_log_ratio_matches_scipy_densities():
    """The optimal critic equals log p(x, y) - log p(x) - log p(y) from scipy's multivariate t."""
    stats = pytest.importorskip("scipy.stats")
    dist = StudentTPair(2, 3, 2.5, 0.7)
    x, y = dist.sample(6, torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = torch.eye(5, dtype=torch.float64)
    sigma[0, 2] = sigma[2, 0] = sigma[1, 3] = sigma[3, 1] = 0.7
    pairs = torch.cat([x.unsqueeze(1).expand(6, 6, 2), y.unsqueeze(0).expand(6, 6, 3)], -1).reshape(36, 5)
    joint = stats.multivariate_t(loc=[0] * 5, shape=sigma.numpy(), df=2.5).logpdf(pairs.numpy()).reshape(6, 6)
    px = stats.multivariate_t(loc=[0] * 2, shape=torch.eye(2).numpy(), df=2.5).logpdf(x.numpy())
    py = stats.multivariate_t(loc=[0] * 3, shape=torch.eye(3).numpy(), df=2.5).logpdf(y.numpy())
    expected = torch.from_numpy(joint - px[:, None] - py[None, :])
    torch.testing.assert_close(dist.log_density_ratio(x, y), expected)
    torch.testing.assert_close(dist.pointwise_log_ratio(x, y), expected.diagonal())


def test_student_t_samples_have_the_right_scale():
    """df = 5: Var(X_k) = nu / (nu - 2) = 5/3 per coordinate; reproducible from a generator."""
    dist = StudentTPair(3, 3, 5, 0.5)
    x, y = dist.sample(400_000, torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(x.var(0), torch.full((3,), 5 / 3, dtype=torch.float64), atol=0.05, rtol=0)
    torch.testing.assert_close((x * y).mean(0), torch.full((3,), 0.5 * 5 / 3, dtype=torch.float64), atol=0.05, rtol=0)
    a = dist.sample(10, torch.Generator().manual_seed(5))
    b = dist.sample(10, torch.Generator().manual_seed(5))
    for ta, tb in zip(a, b):
        assert ta.dtype == torch.float32
        torch.testing.assert_close(ta, tb)


def test_dense_gaussian_closed_form():
    """0.5 log det(I + A A^T) equals 0.5 (log|S_x| + log|S_y| - log|S_joint|) and the Monte Carlo mean."""
    dist = DenseGaussian.from_mi(5, 4, 0.59, seed=0)
    assert dist.mi == pytest.approx(0.59, abs=1e-9)
    a = dist.mixing
    s_y = torch.eye(4, dtype=torch.float64) + a @ a.T
    joint = torch.cat([torch.cat([torch.eye(5, dtype=torch.float64), a.T], 1), torch.cat([a, s_y], 1)], 0)
    assert dist.mi == pytest.approx(0.5 * (torch.logdet(s_y) - torch.logdet(joint)).item())
    assert (a.abs() > 1e-3).float().mean() > 0.9  # dense: nearly every entry couples x to y
    mc, se = _mc_mi(dist, 100_000, seed=0)
    assert abs(mc - dist.mi) <= max(4 * se, 0.005)
    with pytest.raises(ValueError, match="mixing"):
        DenseGaussian(torch.zeros(3))


@pytest.mark.parametrize("transform", ["asinh", "sinh", "cube"])
def test_monotone_transform_keeps_mi(transform):
    base = CorrelatedGaussian.from_mi(3, 1.0)
    dist = MonotoneTransformed(base, transform)
    assert dist.mi == base.mi
    x, y = dist.sample(1000, torch.Generator().manual_seed(0), dtype=torch.float64)
    bx, by = base.sample(1000, torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(dist.log_density_ratio(x, y), base.log_density_ratio(bx, by))
    torch.testing.assert_close(dist.pointwise_log_ratio(x, y), dist.log_density_ratio(x, y).diagonal())
    mc, se = _mc_mi(dist, 20_000, seed=1)
    assert abs(mc - dist.mi) <= 4 * se
    with pytest.raises(ValueError, match="transform must be one of"):
        MonotoneTransformed(base, "exp")
