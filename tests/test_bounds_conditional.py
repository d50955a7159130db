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
    print(
        f"discrete Z: grouped {g:.4f}, unconditional {u:.4f}, concat {c:.4f} "
        f"(I(X;Y|Z) {dist.conditional_mi:.4f}, H(Z) + I(X;Y|Z) {math.log(2) + dist.conditional_mi:.4f})"
    )
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


def sampled_estimators(d: int, critic=small_critic, num_negatives: int = 63, sees_condition: bool = False):
    """Sampled-negative conditional InfoNCE and NCE-CLUB on (x, y, c) = (X, Y, Z) of dimension d."""

    def build(cls):
        side = 2 * d if sees_condition else d
        return cls(
            critic(side, side),
            "sampled",
            proposal=bounds.GaussianProposal(d, d, 64),
            x_proposal=bounds.GaussianProposal(d, d, 64),
            correction_critic=critic(d, d),
            num_negatives=num_negatives,
            critic_sees_condition=sees_condition,
        )

    return build(bounds.ConditionalInfoNCE), build(bounds.ConditionalNCECLUB)


# I(X; C) small (1.39 nats) and I(X; C) = 9.23 nats >= 1.5 log B = 6.24 (B = 64): FactorCL's regime,
# where the views fix most of each input. True I(X; Y | C) = 2.04 in both.
OPERATING_REGIMES = [pytest.param(1.0, id="I(X;C)=1.39"), pytest.param(10.0, id="I(X;C)=9.23>1.5logB")]


@pytest.mark.parametrize("a", OPERATING_REGIMES)
def test_sampled_conditional_bounds_in_operating_regime(a):
    """The sampled lower bound lands within max(0.3, 30%) of I(X;Y|C) and never above it by more
    than noise, is >= 0, and the sampled NCE-CLUB is >= I(X;Y|C): whether or not I(X;C) >> log B."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dist = LinearGaussianCondition(4, a=a, b=a, rho=0.8)
    assert dist.conditional_mi == pytest.approx(2.043, abs=1e-3)
    lower, upper = sampled_estimators(4)
    train_estimator(lower, dist.sample, 400, 64, gen)
    train_estimator(upper, dist.sample, 400, 64, gen)
    lo = held_out_mean(lower, dist.sample, 64, gen)
    up = held_out_mean(upper, dist.sample, 64, gen)
    true = dist.conditional_mi
    print(f"a={a}: I(X;C) {dist.mi_xz:.2f}, sampled lower {lo:.3f}, upper {up:.3f} (I(X;Y|C) {true:.3f})")
    assert 0.0 <= lo <= true + 0.1
    assert abs(lo - true) <= max(0.3, 0.3 * true)
    assert up >= true


def test_chain_fails_where_sampled_holds():
    """At I(X;C) = 9.23 nats > log B the chain rule's difference of two capped bounds reads far below
    I(X;Y|C) = 2.04 (the published-code regime bug); the sampled estimator is within 30%."""
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    dist = LinearGaussianCondition(4, a=10.0, b=10.0, rho=0.8)
    chain = bounds.ConditionalInfoNCE(small_critic(4, 8), "chain", marginal_critic=small_critic(4, 4))
    train_estimator(chain, dist.sample, 400, 64, gen)
    ch = held_out_mean(chain, dist.sample, 64, gen)
    lower, _ = sampled_estimators(4)
    train_estimator(lower, dist.sample, 400, 64, gen)
    lo = held_out_mean(lower, dist.sample, 64, gen)
    print(f"I(X;C)=9.23: chain {ch:.3f}, sampled {lo:.3f} (I(X;Y|C) {dist.conditional_mi:.3f})")
    assert ch < dist.conditional_mi - 1.0
    assert abs(lo - dist.conditional_mi) <= 0.3 * dist.conditional_mi


def test_gaussian_proposal_recovers_the_true_conditional():
    """Fitted on Y = 10 Z + V, q(y | z) is N(10 z, I) to within a KL of 0.02 nats: the sampled
    negatives really are draws of p(y | c) in the regime, not assumed to be."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    dist = LinearGaussianCondition(4, a=10.0, b=10.0, rho=0.8)
    q = bounds.GaussianProposal(4, 4, 64)
    opt = torch.optim.Adam(q.parameters(), lr=5e-3)
    for _ in range(200):
        _, y, z = dist.sample(64, gen)
        loss = q.nll(y, z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, _, z = dist.sample(4096, gen)
    with torch.no_grad():
        mean, log_std = q(z)
    kl = (log_std + (1 + (10 * z - mean) ** 2) / (2 * torch.exp(2 * log_std)) - 0.5).sum(1).mean()
    assert float(kl) < 0.02
    draws = q.sample(z[:8], 5, generator=gen)
    assert draws.shape == (8, 5, 4) and not draws.requires_grad


@pytest.mark.parametrize("sees_condition", [False, True])
def test_sampled_estimators_route_gradients_and_shapes(sees_condition):
    torch.manual_seed(0)
    lower, upper = sampled_estimators(3, num_negatives=7, sees_condition=sees_condition)
    x = torch.randn(8, 3, requires_grad=True)
    y = torch.randn(8, 3, requires_grad=True)
    c = torch.randn(8, 3, requires_grad=True)
    separately = {id(p) for p in lower.critic_loss_parameters()}
    lower(x, y, c).backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0 and c.grad.abs().sum() > 0
    assert all(p.grad is not None for p in lower.critic.parameters())
    assert all(p.grad is None for p in lower.parameters() if id(p) in separately)
    x.grad = y.grad = c.grad = None
    upper(x, y, c).backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in upper.parameters())
    before = x.grad.clone()
    upper.critic_loss(x, y, c).backward()
    torch.testing.assert_close(x.grad, before)  # the critic loss sees detached inputs
    assert all(p.grad is not None for p in upper.critic.parameters())
    assert all(p.grad is not None for p in upper.proposal.net.parameters())
    with pytest.raises(ValueError, match="needs proposal"):
        bounds.ConditionalInfoNCE(small_critic(2, 2), "sampled")
    with pytest.raises(ValueError, match="one condition per row"):
        lower(x, y, torch.randn(16, 3))


def test_sampled_critic_loss_on_the_forwards_candidates_and_without_the_auxiliary_parts():
    """A forward keeps its candidates (detached); the critic loss on them scores exactly those, and
    ``auxiliary=False`` trains the main critic alone (the proposals' moments are not touched)."""
    torch.manual_seed(0)
    lower, upper = sampled_estimators(3, num_negatives=7)
    x, y, c = torch.randn(8, 3, requires_grad=True), torch.randn(8, 3), torch.randn(8, 3)
    upper(x, y, c)
    cand = upper.last_candidates
    assert [tuple(t.shape) for t in cand] == [(8, 3), (8, 3), (8, 3), (7, 3)]
    assert not any(t.requires_grad for t in cand)
    fitted = int(upper.proposal.fitted_batches)
    main_only = upper.critic_loss(x, y, c, candidates=cand, auxiliary=False)
    want = -bounds.sampled_infonce(
        bounds.score_positive_and_shared(upper.critic, cand.x_side, cand.positive, cand.noise)
    )
    torch.testing.assert_close(main_only, want)
    main_only.backward()
    assert int(upper.proposal.fitted_batches) == fitted  # moments untouched
    assert all(p.grad is not None for p in upper.critic.parameters())
    assert all(
        p.grad is None for m in (upper.proposal, upper.x_proposal, upper.correction_critic) for p in m.parameters()
    )
    # With the auxiliary parts: the proposals fit this batch once and the correction critic trains.
    upper.zero_grad(set_to_none=True)
    upper.critic_loss(x, y, c, candidates=cand).backward()
    assert int(upper.proposal.fitted_batches) == fitted + 1
    assert all(p.grad is not None for p in upper.correction_critic.parameters())
    # A lower bound's critic loss trains only the auxiliary parts: without them, nothing.
    lower(x, y, c)
    nothing = lower.critic_loss(x, y, c, candidates=lower.last_candidates, auxiliary=False)
    assert float(nothing) == 0.0 and not nothing.requires_grad


def test_sampled_infonce_and_nce_club_closed_values():
    s = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    expected = ((2 - math.log(math.exp(2) + 2)) + (1 - math.log(3 * math.e))) / 2 + math.log(3)
    assert float(bounds.sampled_infonce(s)) == pytest.approx(expected)
    assert float(bounds.sampled_nce_club(s)) == pytest.approx((2 + 1) / 2 - 2 / 4)
    with pytest.raises(ValueError, match=r"\[B, 1 \+ K\]"):
        bounds.sampled_infonce(torch.zeros(3, 1))


def _fit_proposal(q, sample, steps, batch, gen):
    opt = torch.optim.Adam(q.parameters(), lr=5e-3)
    for _ in range(steps):
        y, c = sample(batch, gen)
        loss = q.nll(y, c)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_gaussian_proposal_where_c_fixes_y_and_under_autocast():
    """Y = 100 C + 0.1 V (R^2 ~ 1 - 1e-6): the fitted scale is the residual's (0.1), not shrunk by a
    ridge or inflated by the first batch, and autocast (bf16) moves the mean by < 0.2 sigma."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=gen)

    def sample(b, g):
        c = torch.randn(b, 3, generator=g)
        return 100 * c @ a + 0.1 * torch.randn(b, 3, generator=g), c

    q = bounds.GaussianProposal(3, 3, 32)
    _fit_proposal(q, sample, 300, 64, gen)
    assert q.residual_std.sub(0.1).abs().max() < 0.02
    y, c = sample(2048, gen)
    with torch.no_grad():
        mean, log_std = q(c)
        assert float(((y - mean) / log_std.exp()).pow(2).mean()) == pytest.approx(1.0, abs=0.2)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast must not lower the fit's precision
            mean16, log_std16 = q(c)
    assert mean16.dtype == torch.float32
    assert float(((mean16 - mean) / log_std.exp()).abs().max()) < 0.2


def test_dim_c_above_the_batch_size_still_fits():
    """dim c = 64 > B = 16: the ridge keeps the solve well posed and the out-of-sample residual keeps
    the scale honest, so the NLL stays finite and ends near the true one."""
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    w = torch.randn(64, 2, generator=gen) / 8

    def sample(b, g):
        c = torch.randn(b, 64, generator=g)
        return c @ w + 0.5 * torch.randn(b, 2, generator=g), c

    q = bounds.GaussianProposal(64, 2, 32)
    _fit_proposal(q, sample, 400, 16, gen)
    y, c = sample(4096, gen)
    true_nll = 2 * (0.5 * math.log(2 * math.pi * 0.25) + 0.5)
    with torch.no_grad():
        assert float(q.nll(y, c)) == pytest.approx(true_nll, abs=0.15)


def test_score_candidates_matches_full_scores_and_trains_a_learnable_temperature():
    torch.manual_seed(0)
    x, cand = torch.randn(5, 3), torch.randn(5, 4, 2)
    for critic in (
        bounds.SeparableCritic(3, 2, hidden_dim=16, learn_temperature=True),
        bounds.ConcatCritic(3, 2, hidden_dim=16),
    ):
        own = bounds.score_candidates(critic, x, cand)
        full = critic(x, cand.reshape(20, 2)).view(5, 5, 4)
        torch.testing.assert_close(own, full[torch.arange(5), torch.arange(5)])
    critic = bounds.SeparableCritic(3, 2, hidden_dim=16, learn_temperature=True)
    bounds.sampled_infonce(bounds.score_candidates(critic, x, cand)).backward()
    assert critic.log_inv_temperature.grad is not None and critic.log_inv_temperature.grad.abs() > 0


class _PlainCritic(torch.nn.Module):
    """A critic with neither embed_x nor project_x: the generic path of score_positive_and_shared."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 2))

    def forward(self, x, y):
        return torch.tanh(x @ self.w) @ y.T


@pytest.mark.parametrize(
    "make",
    [
        lambda: bounds.SeparableCritic(3, 2, hidden_dim=16, learn_temperature=True),
        lambda: bounds.SeparableCritic(3, 2, hidden_dim=16, normalize=False, temperature=2.0),
        lambda: bounds.ConcatCritic(3, 2, hidden_dim=16),
        _PlainCritic,
    ],
)
def test_score_positive_and_shared_equals_the_full_matrix_columns_and_their_gradients(make):
    torch.manual_seed(0)
    critic = make().double()  # double: the comparison is of the algebra, not of float32 rounding
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    pos, shared = torch.randn(5, 2, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    got = bounds.score_positive_and_shared(critic, x, pos, shared)
    full = critic(x, torch.cat([pos, shared]))  # [5, 5 + 7]
    want = torch.cat([full[torch.arange(5), torch.arange(5)].unsqueeze(1), full[:, 5:]], dim=1)
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad(got.square().sum(), x)
    (g_want,) = torch.autograd.grad(want.square().sum(), x)
    torch.testing.assert_close(g_got, g_want)
    with pytest.raises(ValueError, match="same D"):
        bounds.score_positive_and_shared(critic, x, pos, torch.randn(7, 3, dtype=torch.float64))


def test_sampled_needs_x_proposal_when_the_critic_cannot_see_c():
    with pytest.raises(ValueError, match="needs x_proposal"):
        bounds.ConditionalNCECLUB(small_critic(2, 2), "sampled", proposal=bounds.GaussianProposal(2, 2))


@pytest.mark.parametrize("kind", ["infonce", "nce_club"])
@pytest.mark.parametrize(
    "conditioning, labels, num_classes",
    [
        ("concat", False, None),
        ("chain", False, None),
        ("sampled", False, None),
        ("concat", True, 3),
        ("chain", True, 3),
        ("grouped", True, 3),
        ("grouped", True, None),
    ],
)
def test_conditional_estimator_sizes_the_critics_its_conditioning_feeds(kind, conditioning, labels, num_classes):
    """The factory's widths agree with how each conditioning concatenates its inputs: forward and
    critic_loss run on inputs of the stated widths."""
    from bounds import SeparableCritic, conditional_estimator

    b, x_dim, y_dim, c = 16, 5, 4, 3
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(b, x_dim, generator=gen), torch.randn(b, y_dim, generator=gen)
    if labels:
        cx = torch.randint(0, 3, (b,), generator=gen)
        cx[:2] = torch.tensor([0, 1])  # every group has a partner for grouped NCE-CLUB
        cy, dims = (None if conditioning == "chain" else cx), (3, None)
    else:
        cx, cy, dims = torch.randn(b, c, generator=gen), torch.randn(b, c, generator=gen), (c, c)
    est = conditional_estimator(
        kind,
        conditioning,
        x_dim,
        y_dim,
        *dims,
        lambda a, d: SeparableCritic(a, d, hidden_dim=8, embed_dim=4),
        num_classes=num_classes,
        proposal_hidden=8,
        num_negatives=7,
    )
    assert torch.isfinite(est(x, y, cx, cy))
    if getattr(est, "has_critic_loss", False):
        assert torch.isfinite(est.critic_loss(x, y, cx, cy))
