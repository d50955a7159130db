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
