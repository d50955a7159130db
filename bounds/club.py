"""The original CLUB upper bound (Cheng et al., 2020) with a learned Gaussian q(y | x).

Kept to compare against NCE-CLUB (Figure 4.3); FactorCL itself uses NCE-CLUB.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_features, check_same_batch
from .estimators import call_frozen


def club(mu: Tensor, logvar: Tensor, y: Tensor) -> Tensor:
    """vCLUB estimate of I(X; Y) from q(y | x_i) = N(mu_i, diag(exp(logvar_i))), in nats.

    mean_i [log q(y_i | x_i) - mean_j log q(y_j | x_i)], with the normalising constants cancelled.
    The mean over j includes j = i, as in the original. Cost O(B * d): the all-pairs mean of
    (y_j - mu_i)^2 expands into batch moments of y.
    """
    for name, t in (("mu", mu), ("logvar", logvar), ("y", y)):
        check_features(t, None, name)
    if mu.shape != logvar.shape or mu.shape != y.shape:
        raise ValueError(
            f"mu, logvar and y must share one [B, d] shape, got {tuple(mu.shape)}, {tuple(logvar.shape)}, "
            f"{tuple(y.shape)}"
        )
    inv_var = torch.exp(-logvar)
    positive = -0.5 * ((mu - y) ** 2 * inv_var).sum(dim=1)
    y_mean = y.mean(dim=0, keepdim=True)
    y_sq_mean = (y**2).mean(dim=0, keepdim=True)
    mean_sq_dist = y_sq_mean - 2 * mu * y_mean + mu**2  # mean_j (y_j - mu_i)^2, per dimension
    negative = -0.5 * (mean_sq_dist * inv_var).sum(dim=1)
    return (positive - negative).mean()


class CLUB(nn.Module):
    """CLUB with q(y | x) = N(mu(x), diag(exp(logvar(x)))), both given by MLPs of width ``hidden_dim // 2``.

    ``forward`` is the upper-bound estimate with q frozen (gradients reach x and y only);
    ``critic_loss`` is the negative log-likelihood of q on detached pairs, which trains q.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden_dim: int = 512) -> None:
        super().__init__()
        half = max(1, hidden_dim // 2)
        self.x_dim, self.y_dim = int(x_dim), int(y_dim)
        self.p_mu = nn.Sequential(nn.Linear(x_dim, half), nn.ReLU(), nn.Linear(half, y_dim))
        self.p_logvar = nn.Sequential(nn.Linear(x_dim, half), nn.ReLU(), nn.Linear(half, y_dim), nn.Tanh())

    def gaussian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu(x), logvar(x)) of q(y | x)."""
        check_features(x, self.x_dim, "x")
        return self.p_mu(x), self.p_logvar(x)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """The CLUB estimate (nats); gradients reach x and y, never q."""
        check_features(y, self.y_dim, "y")
        check_same_batch(x, y, "x", "y")
        check_features(x, self.x_dim, "x")
        mu = call_frozen(self.p_mu, x)
        logvar = call_frozen(self.p_logvar, x)
        return club(mu, logvar, y)

    def critic_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Negative mean log-likelihood of y under q(y | x) on detached inputs (constants dropped)."""
        check_features(y, self.y_dim, "y")
        check_same_batch(x, y, "x", "y")
        mu, logvar = self.gaussian(x.detach())
        nll = 0.5 * (((mu - y.detach()) ** 2) * torch.exp(-logvar) + logvar).sum(dim=1)
        return nll.mean()
