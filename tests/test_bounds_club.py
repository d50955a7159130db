import pytest
import torch

import bounds
from bounds.distributions import CorrelatedGaussian
from helpers import held_out_mean


def test_club_matches_the_all_pairs_definition():
    gen = torch.Generator().manual_seed(0)
    mu, logvar, y = (torch.randn(6, 3, generator=gen) for _ in range(3))
    logq = -0.5 * ((y.unsqueeze(0) - mu.unsqueeze(1)) ** 2 * torch.exp(-logvar).unsqueeze(1)).sum(-1)  # [i, j]
    expected = (logq.diagonal() - logq.mean(dim=1)).mean()
    torch.testing.assert_close(bounds.club(mu, logvar, y), expected)


def test_trained_club_upper_bounds_a_gaussian_mi():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dist = CorrelatedGaussian.from_mi(5, 2.0)
    club = bounds.CLUB(5, 5, hidden_dim=64)
    opt = torch.optim.Adam(club.parameters(), lr=5e-3)
    for _ in range(400):
        x, y = dist.sample(128, gen)
        loss = club.critic_loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    value = held_out_mean(club, dist.sample, 128, gen)
    # With q(y|x) near the truth, CLUB = E[log p(y|x)] - E_{x} E_{y'}[log p(y'|x)] = I + lautum.
    print(f"CLUB {value:.4f}, I {dist.mi:.4f}, I + lautum {dist.mi_plus_lautum:.4f}")
    assert value >= dist.mi
    assert value == pytest.approx(dist.mi_plus_lautum, rel=0.15)


def test_club_routes_gradients_and_checks_shapes():
    club = bounds.CLUB(3, 2, hidden_dim=8)
    x = torch.randn(5, 3, requires_grad=True)
    club(x, torch.randn(5, 2)).backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is None for p in club.parameters())
    club.critic_loss(x, torch.randn(5, 2)).backward()
    assert all(p.grad is not None for p in club.parameters())
    with pytest.raises(ValueError, match="same batch size"):
        club(torch.randn(5, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="share one"):
        bounds.club(torch.randn(4, 2), torch.randn(4, 3), torch.randn(4, 2))
