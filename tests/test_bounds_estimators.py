import math
import statistics

import pytest
import torch

import bounds
from bounds.distributions import CorrelatedGaussian
from helpers import train_estimator


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, 1e3, 1e30])
@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (5, 13), (64, 64)])
def test_infonce_never_exceeds_log_n(scale, shape):
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(shape, generator=gen) * scale
    value = bounds.infonce(scores)
    assert torch.isfinite(value)
    assert value <= math.log(shape[1]) + 1e-6


def test_infonce_matches_definition_and_hits_log_n_with_a_perfect_critic():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(6, 6, generator=gen)
    expected = (s.diagonal() - torch.logsumexp(s, 1)).mean() + math.log(6)
    torch.testing.assert_close(bounds.infonce(s), expected)
    assert float(bounds.infonce(torch.eye(6) * 1e4)) == pytest.approx(math.log(6), abs=1e-6)


def test_infonce_and_nce_club_with_offset_match_a_global_matrix():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(8, 8, generator=gen)
    halves = [bounds.infonce(s[:4], offset=0), bounds.infonce(s[4:], offset=4)]
    torch.testing.assert_close(sum(halves) / 2, bounds.infonce(s))
    halves = [bounds.nce_club(s[:4], offset=0), bounds.nce_club(s[4:], offset=4)]
    torch.testing.assert_close(sum(halves) / 2, bounds.nce_club(s))


def test_nce_club_definition_and_include_diagonal():
    s = torch.tensor([[3.0, 1.0, 0.0], [2.0, 5.0, 1.0], [0.0, 0.0, 4.0]])
    assert float(bounds.nce_club(s)) == pytest.approx(4.0 - 4.0 / 6)
    assert float(bounds.nce_club(s, include_diagonal=True)) == pytest.approx(4.0 - 16.0 / 9)


def test_optimal_critic_on_correlated_gaussian():
    """Analytic critic, d=5, B=128, I=2: InfoNCE in [1.75, 2 + 3 SE]; NCE-CLUB within 10% of I + lautum."""
    dist = CorrelatedGaussian.from_mi(5, 2.0)
    gen = torch.Generator().manual_seed(0)
    lower, upper = [], []
    for _ in range(50):
        x, y = dist.sample(128, gen)
        scores = dist.log_density_ratio(x, y)
        lower.append(float(bounds.infonce(scores)))
        upper.append(float(bounds.nce_club(scores)))
    se = statistics.stdev(lower) / math.sqrt(len(lower))
    mean_lower = statistics.mean(lower)
    print(
        f"optimal critic: InfoNCE {mean_lower:.4f} (SE {se:.4f}), NCE-CLUB {statistics.mean(upper):.4f}, "
        f"I {dist.mi:.4f}, I + lautum {dist.mi_plus_lautum:.4f}"
    )
    assert 1.75 <= mean_lower <= 2.0 + 3 * se
    assert statistics.mean(upper) == pytest.approx(dist.mi_plus_lautum, rel=0.10)


@pytest.mark.parametrize("kind", ["separable", "concat"])
@pytest.mark.parametrize("mi", [0.5, 2.0, 6.0])
def test_trained_critics_bracket_the_true_mi(kind, mi):
    """A trained critic: 0.85 min(I, log B) <= InfoNCE <= min(I, log B) + 0.1; NCE-CLUB >= I and >= InfoNCE."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    d, batch = 5, 128
    dist = CorrelatedGaussian.from_mi(d, mi)
    if kind == "separable":
        # A plain dot-product critic must learn the optimal critic's |y|^2 term through a constant
        # feature; it needs more steps than the concat critic (checked over seeds 0-3: >= 0.877 of the cap).
        # The plain form is explicit: the cosine default caps scores at 1/T, and NCE-CLUB at 2/T = 20.
        critic = bounds.SeparableCritic(d, d, hidden_dim=64, embed_dim=32, layers=1, normalize=False, temperature=1.0)
        steps, lr = 1500, 3e-3
    else:
        critic = bounds.ConcatCritic(d, d, hidden_dim=64, layers=1)
        steps, lr = 400, 5e-3
    train_estimator(bounds.InfoNCE(critic), dist.sample, steps, batch, gen, lr=lr)
    lower, upper, gaps = [], [], []
    with torch.no_grad():
        for _ in range(20):
            x, y = dist.sample(batch, gen)
            s = critic(x, y)
            lower.append(float(bounds.infonce(s)))
            upper.append(float(bounds.nce_club(s)))
            gaps.append(upper[-1] - lower[-1])
    cap = min(mi, math.log(batch))
    lo, up = statistics.mean(lower), statistics.mean(upper)
    print(f"{kind} critic, I={mi}: InfoNCE {lo:.4f}, NCE-CLUB {up:.4f}, min(I, log B) {cap:.4f}")
    assert 0.85 * cap <= lo <= cap + 0.1
    assert up >= mi
    assert min(gaps) >= 0


def test_nce_club_module_routes_gradients():
    """forward: gradient to the inputs only; critic_loss: gradient to the critic only."""
    torch.manual_seed(0)
    critic = bounds.SeparableCritic(3, 3, hidden_dim=8)
    est = bounds.NCECLUB(critic)
    x = torch.randn(6, 3, requires_grad=True)
    y = torch.randn(6, 3, requires_grad=True)
    est(x, y).backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())
    x.grad = y.grad = None
    est.critic_loss(x, y).backward()
    assert x.grad is None and y.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())


def test_infonce_module_trains_critic_and_inputs():
    critic = bounds.ConcatCritic(3, 3, hidden_dim=8)
    x = torch.randn(6, 3, requires_grad=True)
    bounds.InfoNCE(critic)(x, torch.randn(6, 3)).backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in critic.parameters())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_estimators_follow_dtype_and_do_not_overflow(dtype):
    gen = torch.Generator().manual_seed(0)
    scores = (torch.randn(32, 32, generator=gen) * 60).to(dtype)  # exp(60) overflows fp16 and is huge in bf16
    for value in (bounds.infonce(scores), bounds.nce_club(scores)):
        assert value.dtype == dtype
        assert torch.isfinite(value)
    assert float(bounds.infonce(scores)) <= math.log(32) + 1e-2


def test_gradients_flow_through_estimators():
    s = torch.randn(5, 5, requires_grad=True)
    (bounds.infonce(s) + bounds.nce_club(s)).backward()
    assert s.grad.abs().sum() > 0


@pytest.mark.parametrize("fn", [bounds.infonce, bounds.nce_club])
def test_bad_scores_raise_value_error(fn):
    with pytest.raises(ValueError, match=r"scores must be a 2-D \[B, N\] score matrix, got shape \(5,\)"):
        fn(torch.randn(5))
    with pytest.raises(ValueError, match="scores contains NaN"):
        fn(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="scores contains inf"):
        fn(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="non-empty"):
        fn(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="offset=3"):
        fn(torch.randn(4, 6), offset=3)
    with pytest.raises(ValueError, match="floating-point"):
        fn(torch.ones(3, 3, dtype=torch.long))


def test_modules_reject_mismatched_batches_for_square_estimators():
    est = bounds.InfoNCE(bounds.SeparableCritic(3, 3, hidden_dim=8))
    with pytest.raises(ValueError, match="offset=0 puts the positives"):
        est(torch.randn(6, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"y must be \[B, 3\]"):
        est(torch.randn(6, 3), torch.randn(6, 2))


def test_value_checks_can_be_switched_off():
    bounds.set_value_checks(False)
    try:
        value = bounds.infonce(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
        assert torch.isnan(value)
    finally:
        bounds.set_value_checks(True)
    assert bounds.value_checks_enabled()


def test_symmetric_infonce_is_log_n_minus_the_clip_loss():
    torch.manual_seed(0)
    critic = bounds.SeparableCritic(4, 4, hidden_dim=8, normalize=True, temperature=0.07)
    x, y = torch.randn(6, 4), torch.randn(6, 4)
    s = critic(x, y)
    labels = torch.arange(6)
    clip_loss = 0.5 * (torch.nn.functional.cross_entropy(s, labels) + torch.nn.functional.cross_entropy(s.T, labels))
    value = bounds.InfoNCE(critic, symmetric=True)(x, y)
    torch.testing.assert_close(value, math.log(6) - clip_loss)


def test_symmetric_infonce_with_global_candidates_matches_the_full_batch():
    torch.manual_seed(0)
    est = bounds.InfoNCE(bounds.SeparableCritic(4, 4, hidden_dim=8), symmetric=True)
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    halves = [est(x[:4], y, offset=0, x_candidates=x), est(x[4:], y, offset=4, x_candidates=x)]
    torch.testing.assert_close(sum(halves) / 2, est(x, y))
    with pytest.raises(ValueError, match="needs x_candidates"):
        est(x[:4], y, offset=0)
