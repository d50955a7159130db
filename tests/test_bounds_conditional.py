import math

import pytest
import torch

import bounds
from bounds.distributions import DiscreteConditionalGaussian, LinearGaussianCondition
from helpers import held_out_mean, train_estimator


def small_critic(x_dim: int, y_dim: int) -> bounds.SeparableCritic:
    return bounds.SeparableCritic(x_dim, y_dim, hidden_dim=64, embed_dim=32, layers=1)


def test_grouped_infonce_matches_per_group_infonce():
    """With groups laid out in blocks, grouped InfoNCE is the row-weighted mean of each block's InfoNCE."""
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(7, 7, generator=gen)
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    expected = (3 * bounds.infonce(s[:3, :3]) + 4 * bounds.infonce(s[3:, 3:])) / 7
    torch.testing.assert_close(bounds.grouped_infonce(s, groups), expected)


def test_grouped_nce_club_matches_per_group_nce_club():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(7, 7, generator=gen)
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    expected = (3 * bounds.nce_club(s[:3, :3]) + 4 * bounds.nce_club(s[3:, 3:])) / 7
    torch.testing.assert_close(bounds.grouped_nce_club(s, groups), expected)


def test_grouped_estimators_with_global_candidates_and_offset():
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(8, 8, generator=gen)
    groups = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    for fn in (bounds.grouped_infonce, bounds.grouped_nce_club):
        halves = [fn(s[:4], groups[:4], groups, offset=0), fn(s[4:], groups[4:], groups, offset=4)]
        torch.testing.assert_close(sum(halves) / 2, fn(s, groups))


def test_grouped_rejects_bad_groups():
    s = torch.randn(4, 4)
    with pytest.raises(ValueError, match=r"groups must be a \[4\] vector"):
        bounds.grouped_infonce(s, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer group ids"):
        bounds.grouped_infonce(s, torch.zeros(4))
    with pytest.raises(ValueError, match="candidate_groups must be given"):
        bounds.grouped_infonce(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="negative in its own group"):
        bounds.grouped_nce_club(s, torch.arange(4))


def test_discrete_condition_grouped_vs_unconditional_and_concat():
    """d=2, rho=0.8: I(X;Y|Z)=1.02, I(X;Y)=0.54. Grouped lands in [0.82, 1.12] and beats the
    unconditional estimate by >= 0.25; two-sided concatenation estimates H(Z) + I(X;Y|Z) instead."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dist = DiscreteConditionalGaussian(2, 0.8)
    assert dist.conditional_mi == pytest.approx(1.0217, abs=1e-3)
    assert dist.mi_xy(400_000, torch.Generator().manual_seed(1)) == pytest.approx(0.54, abs=0.01)

    grouped = bounds.ConditionalInfoNCE(small_critic(4, 4), "grouped", num_classes=2)
    train_estimator(grouped, dist.sample, 600, 128, gen)
    g = held_out_mean(grouped, dist.sample, 128, gen)

    uncond = bounds.InfoNCE(small_critic(2, 2))
    xy = lambda b, gen: dist.sample(b, gen)[:2]  # noqa: E731
    train_estimator(uncond, xy, 600, 128, gen)
    u = held_out_mean(uncond, xy, 128, gen)

    concat = bounds.ConditionalInfoNCE(small_critic(4, 4), "concat", num_classes=2)
    train_estimator(concat, dist.sample, 600, 128, gen)
    c = held_out_mean(concat, dist.sample, 128, gen)
    print(f"discrete Z: grouped {g:.4f}, unconditional {u:.4f}, concat {c:.4f} "
          f"(I(X;Y|Z) {dist.conditional_mi:.4f}, H(Z) + I(X;Y|Z) {math.log(2) + dist.conditional_mi:.4f})")
    assert 0.82 <= g <= 1.12
    assert g - u >= 0.25
    assert c == pytest.approx(math.log(2) + dist.conditional_mi, abs=0.15)


def test_chain_rule_on_continuous_condition():
    """X = Z + U, Y = Z + V, corr(U, V) = 0.8, d=2: I(X;Y|Z) = 1.02 within 0.15."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dist = LinearGaussianCondition(2, a=1.0, b=1.0, rho=0.8)
    est = bounds.ConditionalInfoNCE(small_critic(2, 4), "chain", marginal_critic=small_critic(2, 2))
    train_estimator(est, dist.sample, 600, 128, gen)
    value = held_out_mean(est, dist.sample, 128, gen)
    print(f"continuous Z, chain rule: {value:.4f} (I(X;Y|Z) {dist.conditional_mi:.4f})")
    assert value == pytest.approx(dist.conditional_mi, abs=0.15)


def test_chain_infonce_routes_marginal_critic_to_critic_loss():
    critic, marginal = small_critic(2, 4), small_critic(2, 2)
    est = bounds.ConditionalInfoNCE(critic, "chain", marginal_critic=marginal)
    x, y, z = LinearGaussianCondition(2).sample(16, torch.Generator().manual_seed(0))
    est(x, y, z).backward()
    assert all(p.grad is None for p in marginal.parameters())
    assert all(p.grad is not None for p in critic.parameters())
    critic.zero_grad(set_to_none=True)
    est.critic_loss(x, y, z).backward()
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.grad is not None for p in marginal.parameters())


@pytest.mark.parametrize("conditioning", ["grouped", "concat", "chain"])
def test_conditional_nce_club_routes_gradients(conditioning):
    torch.manual_seed(0)
    if conditioning == "chain":
        est = bounds.ConditionalNCECLUB(small_critic(3, 5), conditioning, marginal_critic=small_critic(3, 2))
        c = torch.randn(8, 2)
    else:
        est = bounds.ConditionalNCECLUB(small_critic(5, 5), conditioning, num_classes=2)
        c = torch.tensor([0, 1] * 4)
        if conditioning == "concat":
            c = torch.nn.functional.one_hot(c, 2).float()
    x = torch.randn(8, 3, requires_grad=True)
    y = torch.randn(8, 3, requires_grad=True)
    est(x, y, c).backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in est.parameters())
    x.grad = y.grad = None
    est.critic_loss(x, y, c).backward()
    assert x.grad is None and y.grad is None
    assert all(p.grad is not None for p in est.parameters())


def test_concat_condition_one_hot_and_errors():
    x = torch.zeros(3, 2)
    out = bounds.concat_condition(x, torch.tensor([0, 2, 1]), num_classes=3)
    torch.testing.assert_close(out[:, 2:], torch.eye(3)[[0, 2, 1]])
    with pytest.raises(ValueError, match="num_classes must be given"):
        bounds.concat_condition(x, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="same batch size"):
        bounds.concat_condition(x, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="conditioning must be one of"):
        bounds.ConditionalInfoNCE(small_critic(2, 2), "mixed")
    with pytest.raises(ValueError, match="needs marginal_critic"):
        bounds.ConditionalInfoNCE(small_critic(2, 2), "chain")
