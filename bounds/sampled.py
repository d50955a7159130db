"""Conditional MI with negatives sampled from a learned proposal q(y | c), for a continuous C.

In-batch negatives come from p(y). A conditional bound on I(X; Y | C) needs negatives from
p(y | c) (Eq. 4.13 / 4.15), and when C tells a lot about Y (I(Y; C) >> log B, the regime of
FactorCL's augmented views) a batch holds no sample near p(y | c_i): in-batch estimators of the
conditional MI collapse. Here each row i gets K negatives drawn from a learned conditional
density q(y | c_i) (:class:`GaussianProposal`, fitted by maximum likelihood as CLUB fits its
q(y | x)), and its scores are a [B, 1 + K] matrix with the positive in column 0.

What the estimates are (critic f(x, y, c), proposal q, correction critic g(y, c); nats):

- ``sampled_infonce(f)`` <= E_{x,c} KL(p(y | x, c) || q(y | c)) = I(X; Y | C) + D, for any f,
  where D = E_c KL(p(y | c) || q(y | c)) is the proposal's error; it is capped at log(1 + K),
  not at I(X; C).
- ``sampled_nce_club(f*)`` = I + D + E_{x,c} KL(q(y | c) || p(y | x, c)) >= I(X; Y | C) for the
  optimal f* = log p(y | x, c) / q(y | c) + a(x, c) and any q: an upper bound, tight when q is
  close to p(y | c). Like every NCE-CLUB it needs f* inside the critic family and the critic
  trained near it; a critic that cannot represent f* can read below I.
- the correction critic g, trained to tell the real y_i from q's samples given c_i, measures D:
  ``sampled_infonce(g)`` <= D for any g, and ``sampled_nce_club(g*)`` >= D for the optimal g*.
  So I_NCE^q(f) - I_NCE-CLUB^q(g) is a lower bound on I(X; Y | C) (when g is optimal) and
  I_NCE-CLUB^q(f) - I_NCE^q(g) an upper bound (when f is optimal, for any g).

Negatives are drawn per row, never gathered, so under a process group each rank's value is the
mean over its own rows and the mean over ranks is the global batch's value.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_features, check_same_batch, check_tensor
from .critics import mlp
from .estimators import _upcast

#: Floor on the proposal's standard deviation (in the units of y), so that a collapsing feature
#: cannot drive log q to +inf.
MIN_PROPOSAL_STD = 1e-3


def _check_candidate_scores(scores: object) -> Tensor:
    scores = check_tensor(scores, "scores")
    if scores.dim() != 2 or scores.shape[1] < 2 or scores.shape[0] == 0:
        raise ValueError(
            "scores must be a [B, 1 + K] matrix with the positive in column 0 and K >= 1 sampled "
            f"negatives, got shape {tuple(scores.shape)}"
        )
    if not scores.is_floating_point():
        raise ValueError(f"scores must be a floating-point tensor, got dtype {scores.dtype}")
    return scores


def sampled_infonce(scores: Tensor) -> Tensor:
    """I_NCE with sampled negatives: mean_i [s_i0 - logsumexp_j s_ij] + log(1 + K).

    ``scores`` is [B, 1 + K]: column 0 the positive pair, columns 1..K negatives drawn from a
    proposal r. A lower bound on E KL(p(y | x) || r(y)), never above log(1 + K); with r = p(y | c)
    it is the conditional InfoNCE of Eq. 4.15.
    """
    scores = _check_candidate_scores(scores)
    s = _upcast(scores)
    rows = (s[:, 0] - torch.logsumexp(s, dim=1)).clamp(max=0.0)
    return (rows.mean() + math.log(s.shape[1])).to(scores.dtype)


def sampled_nce_club(scores: Tensor) -> Tensor:
    """I_NCE-CLUB with sampled negatives: mean_i s_i0 - mean_{i, j >= 1} s_ij ([B, 1 + K] scores)."""
    scores = _check_candidate_scores(scores)
    s = _upcast(scores)
    return (s[:, 0].mean() - s[:, 1:].mean()).to(scores.dtype)


def score_candidates(critic: nn.Module, x: Tensor, candidates: Tensor) -> Tensor:
    """Scores [B, M] with scores[i, m] = f(x_i, candidates[i, m]): every row has its own candidates.

    Uses ``critic.score_candidates`` when the critic has one (``SeparableCritic`` and
    ``ConcatCritic`` do); any other critic is scored on all B * M candidates and the rows' own
    blocks are kept (B times the work).
    """
    check_features(x, None, "x")
    candidates = check_tensor(candidates, "candidates")
    if candidates.dim() != 3 or candidates.shape[0] != x.shape[0]:
        raise ValueError(
            f"candidates must be [B, M, D] with B = {x.shape[0]} rows of x, got shape {tuple(candidates.shape)}"
        )
    own = getattr(critic, "score_candidates", None)
    if own is not None:
        return own(x, candidates)
    b, m, d = candidates.shape
    full = critic(x, candidates.reshape(b * m, d)).view(b, b, m)
    return full[torch.arange(b, device=x.device), torch.arange(b, device=x.device)]


def score_positive_and_shared(critic: nn.Module, x: Tensor, positive: Tensor, shared: Tensor) -> Tensor:
    """Scores [B, 1 + K]: column 0 f(x_i, positive_i), columns 1..K f(x_i, shared_k) for K shared candidates.

    The x side is embedded once: ``SeparableCritic`` embeds the positives and the shared candidates in one
    pass of its y tower, ``ConcatCritic`` projects x once for both; any other critic scores the positives
    with :func:`score_candidates` and the shared candidates as one [B, K] matrix.
    """
    check_features(x, None, "x")
    check_same_batch(x, positive, "x", "positive")
    shared = check_tensor(shared, "shared")
    if positive.dim() != 2 or shared.dim() != 2 or shared.shape[1] != positive.shape[1]:
        raise ValueError(
            f"positive must be [B, D] and shared [K, D] with the same D, got shapes {tuple(positive.shape)} "
            f"and {tuple(shared.shape)}"
        )
    b = x.shape[0]
    if callable(getattr(critic, "embed_x", None)) and callable(getattr(critic, "score_embeddings", None)):
        gx = critic.embed_x(x)
        hy = critic.embed_y(torch.cat([positive, shared.to(positive.dtype)]))
        pos = (gx * hy[:b]).sum(-1, keepdim=True) * critic.inverse_temperature()
        return torch.cat([pos, critic.score_embeddings(gx, hy[b:])], dim=1)
    if callable(getattr(critic, "project_x", None)) and callable(getattr(critic, "score_projections", None)):
        hx = critic.project_x(x)
        hy = critic.project_y(torch.cat([positive, shared.to(positive.dtype)]))
        h = hx + hy[:b]
        for layer in critic.net[1:]:
            h = layer(h)
        return torch.cat([h, critic.score_projections(hx, hy[b:])], dim=1)
    return torch.cat([score_candidates(critic, x, positive.unsqueeze(1)), critic(x, shared)], dim=1)


class GaussianProposal(nn.Module):
    """q(y | c) = N(mu(c), diag sigma(c)^2), fitted to (y, c) pairs.

    mu(c) = A c + b + r * m(c) and sigma(c) = r * s(c): A, b are the least-squares regression of
    y on c, held in closed form from running moments (buffers, ridge-regularised), r is the running
    standard deviation of its residual (from the moments, with the degrees-of-freedom correction, once
    they average at least 2 dim c samples; before that measured on each new batch before it joins
    the fit), and an MLP on standardised c gives the nonlinear correction
    m and the scale s (its last layer starts near zero, so q starts as the linear-Gaussian fit
    with s = 1). The moments are updated by :meth:`nll` in training mode (the first batch sets them,
    later ones move them by ``momentum``); the MLP is trained by the gradient of :meth:`nll`.
    Why: the fit is exact for jointly Gaussian (Y, C) and scale-free, and gradient steps need only
    learn what linear regression misses, in units of its residual (Adam moves a weight about lr per
    step, so learning y = 10 c by gradient would take thousands of steps). ``sigma`` is floored at
    :data:`MIN_PROPOSAL_STD` times r. ``ridge`` is the regression's prior in samples: the penalty is
    ridge * mean(diag Cov(c)) / n_eff, n_eff the number of samples the running moments average
    (B times the batches, up to B / momentum), so it keeps the solve well posed while dim c > n_eff
    and its shrinkage bias (about ridge / n_eff of A c) vanishes as data accumulate: a fixed
    fraction would leave an error of that fraction of |A c|, far above sigma exactly where C fixes
    most of Y. The fit and the forward pass run in float32 even under autocast: a bf16 mean of a
    large A c is off by more than sigma. This is the proposal of the sampled conditional estimators:
    exact for Gaussians, an approximation otherwise, whose error the correction critic measures.
    """

    def __init__(
        self, c_dim: int, y_dim: int, hidden_dim: int = 256, layers: int = 1, momentum: float = 0.01, ridge: float = 1.0
    ) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        self.c_dim, self.y_dim = int(c_dim), int(y_dim)
        self.momentum, self.ridge = float(momentum), float(ridge)
        self.net = mlp(self.c_dim, hidden_dim, 2 * self.y_dim, layers)
        # Near zero, not zero: q starts as the linear fit, and gradients still reach the hidden layers.
        nn.init.normal_(self.net[-1].weight, std=1e-3)
        nn.init.zeros_(self.net[-1].bias)
        k, d = self.c_dim, self.y_dim
        # Moments in float64: where C fixes Y, the residual variance is a difference of numbers
        # 1e6 times larger, which float32 cannot resolve.
        f64 = torch.float64
        self.register_buffer("c_mean", torch.zeros(k, dtype=f64))
        self.register_buffer("y_mean", torch.zeros(d, dtype=f64))
        self.register_buffer("cc", torch.eye(k, dtype=f64))  # running E[(c - mean)(c - mean)^T]
        self.register_buffer("yc", torch.zeros(d, k, dtype=f64))  # running E[(y - mean)(c - mean)^T]
        self.register_buffer("yy", torch.ones(d, dtype=f64))  # running E[(y - mean)^2]
        self.register_buffer("weight", torch.zeros(d, k, dtype=f64))  # A = yc (cc + lambda I)^-1
        self.register_buffer("residual_std", torch.ones(d, dtype=f64))
        self.register_buffer("fitted_batches", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _track(self, y: Tensor, c: Tensor) -> None:
        if y.shape[0] < 2:
            return
        # Moments and the solve in the buffers' precision, never in an autocast dtype.
        with torch.autocast(device_type=c.device.type, enabled=False):
            self._update_moments(y, c)

    def _update_moments(self, y: Tensor, c: Tensor) -> None:
        # Running averages: a plain mean over the first 1 / momentum batches, then an exponential one,
        # so that the early fits average over every batch seen rather than trusting the first.
        n = int(self.fitted_batches)
        m = max(self.momentum, 1.0 / (n + 1))
        y, c = y.to(self.cc.dtype), c.to(self.cc.dtype)
        if n > 0:
            # The residual scale is measured out of sample (this batch, the fit before it), so that a
            # regression that interpolates a small batch (dim c > B) cannot claim a tiny residual.
            # The first such measurement replaces the placeholder (y's spread) instead of joining it.
            resid = (y - self.y_mean) - (c - self.c_mean) @ self.weight.T
            scale = resid.pow(2).mean(0).sqrt().clamp_min(MIN_PROPOSAL_STD)
            self.residual_std.lerp_(scale, 1.0 if n == 1 else max(self.momentum, 1.0 / n))
        else:
            self.residual_std.copy_(y.std(0).clamp_min(MIN_PROPOSAL_STD))
        self.c_mean.lerp_(c.mean(0), m)
        self.y_mean.lerp_(y.mean(0), m)
        cd, yd = c - self.c_mean, y - self.y_mean
        self.cc.lerp_(cd.T @ cd / c.shape[0], m)
        self.yc.lerp_(yd.T @ cd / c.shape[0], m)
        self.yy.lerp_(yd.pow(2).mean(0), m)
        n_eff = y.shape[0] * min(n + 1, 1.0 / self.momentum)
        lam = self.ridge * float(self.cc.diagonal().mean().clamp_min(1e-12)) / n_eff
        eye = torch.eye(self.c_dim, device=c.device, dtype=c.dtype)
        # cc + lam I is symmetric positive definite (for ridge > 0): Cholesky costs half an LU.
        gram = self.cc + lam * eye
        chol, info = torch.linalg.cholesky_ex(gram)
        if int(info) == 0:
            self.weight.copy_(torch.cholesky_solve(self.yc.T, chol).T)
        else:  # singular (ridge = 0 with too few samples): the general solver says so or copes
            self.weight.copy_(torch.linalg.solve(gram, self.yc.T).T)
        if n_eff >= 2 * self.c_dim:
            # Enough samples: the residual variance of the regression from the moments themselves,
            # with the degrees-of-freedom correction n / (n - dim c) of an unbiased OLS estimate; it
            # forgets the early, poorer fits as fast as the moments do.
            # E(y - A c)^2 for the ridge A (not yy - A yc^T, which holds for the OLS A only).
            a = self.weight
            resid_var = self.yy - 2 * (a * self.yc).sum(1) + ((a @ self.cc) * a).sum(1)
            resid_var = resid_var.clamp_min(0.0) * n_eff / (n_eff - self.c_dim)
            self.residual_std.copy_(resid_var.sqrt().clamp_min(MIN_PROPOSAL_STD))
        self.fitted_batches += 1

    def forward(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """(mean [B, y_dim], log standard deviation [B, y_dim]) of q(y | c), in float32 (or float64)."""
        c = check_features(c, self.c_dim, "c")
        with torch.autocast(device_type=c.device.type, enabled=False):
            return self._moments(c.float() if c.dtype in (torch.float16, torch.bfloat16) else c)

    def _moments(self, c: Tensor) -> tuple[Tensor, Tensor]:
        dt = c.dtype
        centred = c - self.c_mean.to(dt)
        out = self.net(centred / self.cc.diagonal().clamp_min(1e-12).sqrt().to(dt))
        r = self.residual_std.to(dt)
        mean = self.y_mean.to(dt) + centred @ self.weight.to(dt).T + r * out[:, : self.y_dim]
        # softplus(raw + 0.5413) = 1 at raw = 0: q starts as the linear-Gaussian fit.
        std = r * (F.softplus(out[:, self.y_dim :] + 0.5413) + MIN_PROPOSAL_STD)
        return mean, std.log()

    def log_prob(self, y: Tensor, c: Tensor) -> Tensor:
        """log q(y_i | c_i) for every row, [B]."""
        y = check_features(y, self.y_dim, "y")
        check_same_batch(y, c, "y", "c")
        mean, log_std = self(c)
        z = (y.to(mean.dtype) - mean) / log_std.exp()
        return -(0.5 * z.pow(2) + log_std).sum(-1) - 0.5 * self.y_dim * math.log(2 * math.pi)

    def nll(self, y: Tensor, c: Tensor) -> Tensor:
        """Mean negative log-likelihood -mean_i log q(y_i | c_i): the proposal's training loss.

        In training mode it also updates the running statistics of c and y (no gradient).
        """
        if self.training and torch.is_grad_enabled():
            self._track(check_features(y, self.y_dim, "y").detach(), check_features(c, self.c_dim, "c").detach())
        return -self.log_prob(y, c).mean()

    @torch.no_grad()
    def sample(self, c: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """``num_samples`` draws of q(y | c_i) for every row, [B, num_samples, y_dim] (no gradient)."""
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        mean, log_std = self(c)
        noise = torch.randn(
            (c.shape[0], int(num_samples), self.y_dim), generator=generator, device=mean.device, dtype=mean.dtype
        )
        return mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * noise


__all__ = [
    "MIN_PROPOSAL_STD",
    "GaussianProposal",
    "sampled_infonce",
    "sampled_nce_club",
    "score_candidates",
    "score_positive_and_shared",
]
