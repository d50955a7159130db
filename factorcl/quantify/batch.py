"""BATCH: a neural PID estimator for high-dimensional continuous X1, X2 and a finite Y.

The thesis's estimator (Liang 2024, ch. 3), rebuilt here:

1. Three classifiers p(y | x1), p(y | x2) and p(y | x1, x2) are fitted on a fit split, early-stopped
   on the cross-entropy of a held-out part of it. They give I(X1; Y), I(X2; Y) and I(X1, X2; Y) as
   the mutual information of the model's joint, mean_i KL(p(. | x_i) || p(.)).
2. On a minibatch of m pairs, q(i, j, y) over (x1_i, x2_j, y) is parameterised by
   A_y = exp(f1(x1, y) f2(x2, y)^T / sqrt(e)) and an unrolled Sinkhorn projection onto
   q(i, y) = p(y | x1_i) / m and q(j, y) = p(y | x2_j) / m: the batch version of Delta_p.
3. f1, f2 minimise I_q(X2; Y | X1) = I_q(X1, X2; Y) - I(X1; Y), which is maximising I_q(X1; X2; Y)
   (equivalently H_q(Y | X1, X2)) over Delta_p.
4. On the evaluation rows: U2 = I_q(X2; Y | X1), R = I(X2; Y) - U2, U1 = I(X1; Y) - R,
   S = I(X1, X2; Y) - (R + U1 + U2).

Differences from the published code, on purpose: the column targets of each label are rescaled
to the row targets' mass, so that the Sinkhorn problem is balanced and the fixed number of
iterations converges (the published loop stops at a 0.01 tolerance that an unbalanced minibatch
may never reach); the projection runs in log space; the classifiers are early-stopped and
scored on rows they were not fitted on; the estimate is in bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from bounds import mlp

from ..device import seed_everything, select_device

__all__ = ["MIN_SAMPLES", "BatchConfig", "BatchEstimator", "sinkhorn_log"]

LOG2 = math.log(2.0)
#: Fewer rows than this cannot hold out an evaluation set of whole minibatches worth the name.
MIN_SAMPLES = 60


@dataclass(frozen=True)
class BatchConfig:
    """Settings of the BATCH estimator (the defaults fit 20,000 100-d pairs in minutes on a CPU)."""

    hidden: int = 128  # width of the classifiers and of f1, f2
    layers: int = 1  # hidden-to-hidden layers of each MLP
    embed: int = 16  # e: per-label embedding size of f1, f2
    batch_size: int = 256  # m: the minibatch over which q is defined
    sinkhorn_iters: int = 30
    classifier_epochs: int = 60  # at most; early-stopped on held-out cross-entropy
    patience: int = 8
    align_epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    eval_fraction: float = 0.3  # rows held out from fitting, on which the PID is evaluated

    def __post_init__(self) -> None:
        for name in ("hidden", "embed", "batch_size", "sinkhorn_iters", "classifier_epochs", "align_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"batch option {name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch option batch_size must be >= 2, got {self.batch_size}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"batch option eval_fraction must be in (0, 1), got {self.eval_fraction}")


def sinkhorn_log(log_kernel: Tensor, log_rows: Tensor, log_cols: Tensor, iters: int) -> Tensor:
    """Log of the Sinkhorn projection of exp(log_kernel) [K, m, n] onto row / column masses [K, m] / [K, n].

    Each of the K problems must be balanced (equal row and column mass). Ends on a row update, so
    the rows match exactly and the columns to the convergence of ``iters`` iterations.
    """
    log_u = torch.zeros_like(log_rows)
    log_v = torch.zeros_like(log_cols)
    for _ in range(iters):
        log_v = log_cols - torch.logsumexp(log_kernel + log_u[:, :, None], dim=1)
        log_u = log_rows - torch.logsumexp(log_kernel + log_v[:, None, :], dim=2)
    return log_kernel + log_u[:, :, None] + log_v[:, None, :]


class _Alignment(nn.Module):
    """f1, f2: per-label embeddings whose scaled inner products are log A_y."""

    def __init__(self, d1: int, d2: int, num_classes: int, cfg: BatchConfig) -> None:
        super().__init__()
        self.k, self.e = num_classes, cfg.embed
        self.f1 = mlp(d1, cfg.hidden, num_classes * cfg.embed, layers=cfg.layers)
        self.f2 = mlp(d2, cfg.hidden, num_classes * cfg.embed, layers=cfg.layers)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """log A [K, m, m]."""
        h1 = F.layer_norm(self.f1(x1).unflatten(1, (self.k, self.e)), (self.e,))
        h2 = F.layer_norm(self.f2(x2).unflatten(1, (self.k, self.e)), (self.e,))
        return torch.einsum("ake,bke->kab", h1, h2) / math.sqrt(self.e)


def _q_log(align: _Alignment, x1: Tensor, x2: Tensor, p1: Tensor, p2: Tensor, iters: int) -> Tensor:
    """log q [K, m, m] of one minibatch: q(i, y) = p(y | x1_i) / m, q(j, y) ∝ p(y | x2_j) / m."""
    m = x1.shape[0]
    rows = p1.T.clamp_min(1e-12) / m  # [K, m]
    cols = p2.T.clamp_min(1e-12) / m
    cols = cols * (rows.sum(dim=1, keepdim=True) / cols.sum(dim=1, keepdim=True))  # balance each label
    return sinkhorn_log(align(x1, x2), rows.log(), cols.log(), iters)


def conditional_mi_q(log_q: Tensor) -> Tensor:
    """I_q(X2; Y | X1) in nats of a batch joint log q [K, m1, m2] (x1 rows, x2 columns)."""
    q = log_q.exp()
    log_qi = torch.logsumexp(log_q, dim=(0, 2))  # [m1]
    log_qiy = torch.logsumexp(log_q, dim=2)  # [K, m1]
    log_qij = torch.logsumexp(log_q, dim=0)  # [m1, m2]
    ratio = log_q + log_qi[None, :, None] - log_qiy[:, :, None] - log_qij[None]
    return (q * ratio).sum()


class _Tempered(nn.Module):
    """A classifier's logits divided by a temperature fitted on held-out rows."""

    def __init__(self, net: nn.Module, temperature: float) -> None:
        super().__init__()
        self.net, self.temperature = net, temperature

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) / self.temperature


def _fit_temperature(logits: Tensor, y: Tensor) -> float:
    """The temperature T (grid over [0.25, 4]) that minimises held-out cross-entropy of logits / T.

    The estimator reads information off the predicted distributions, mean_i KL(p(. | x_i) || p(.)),
    which is consistent only for calibrated predictions; temperature scaling is the one-parameter fix.
    """
    grid = torch.logspace(math.log10(0.25), math.log10(4.0), 49, dtype=logits.dtype, device=logits.device)
    losses = torch.stack([F.cross_entropy(logits / t, y) for t in grid])
    return float(grid[int(losses.argmin())])


def _model_mi(probs: Tensor) -> Tensor:
    """I(X; Y) in nats of the model joint p(x) p(y | x): mean_i KL(p(. | x_i) || mean_i p(. | x_i))."""
    marginal = probs.mean(dim=0, keepdim=True)
    logp = probs.clamp_min(1e-12).log()
    return (probs * (logp - marginal.clamp_min(1e-12).log())).sum(dim=1).mean()


class BatchEstimator:
    """Fits the BATCH estimator on samples and evaluates the PID (see the module docstring)."""

    def __init__(
        self,
        num_classes: int,
        config: BatchConfig | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.k = num_classes
        self.cfg = config or BatchConfig()
        self.device = select_device(device)
        self.seed = seed
        self.progress = progress
        self.history: dict[str, Any] = {}

    # ------------------------------------------------------------------------ the estimator
    def fit_estimate(self, x1: np.ndarray, x2: np.ndarray, y: np.ndarray, n_bootstrap: int = 0) -> tuple[_Point, Any]:
        """The PID of (x1, x2, y) [N, d1], [N, d2], [N]; with ``n_bootstrap``, also the bootstrap draws [n, 4]."""
        seed_everything(self.seed)
        n = x1.shape[0]
        if n < MIN_SAMPLES:
            raise ValueError(f"the batch estimator needs at least {MIN_SAMPLES} samples, got {n}; use method='cvx'")
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(n)
        n_eval = int(round(self.cfg.eval_fraction * n))
        eval_idx, fit_idx = perm[:n_eval], perm[n_eval:]
        # q is defined over minibatches of m pairs: m may not exceed the rows it is fitted and evaluated on.
        self.m = min(self.cfg.batch_size, n_eval, len(self._split_fit(fit_idx)[0]))
        t1, t2 = self._standardised(x1, fit_idx), self._standardised(x2, fit_idx)
        ty = torch.as_tensor(y, dtype=torch.long, device=self.device)
        bar = tqdm(total=3 + 1, desc="PID batch", disable=not self.progress, dynamic_ncols=True)
        try:
            classifiers = []
            for i, (name, inputs) in enumerate((("p(y|x1)", (t1,)), ("p(y|x2)", (t2,)), ("p(y|x1,x2)", (t1, t2)))):
                bar.set_postfix_str(f"fitting {name}")
                classifiers.append(self._fit_classifier(name, inputs, ty, fit_idx, seed=self.seed + 101 * (i + 1)))
                bar.update(1)
            probs = [self._predict(c, inputs) for c, inputs in zip(classifiers, ((t1,), (t2,), (t1, t2)))]
            bar.set_postfix_str("fitting q")
            align = self._fit_alignment(t1, t2, probs[0], probs[1], fit_idx)
            bar.update(1)
        finally:
            bar.close()
        point = self._evaluate(align, t1, t2, probs, eval_idx, rng=None)
        draws = None
        if n_bootstrap > 0:
            boot_rng = np.random.default_rng(self.seed + 1)
            draws = np.array(
                [self._evaluate(align, t1, t2, probs, eval_idx, rng=boot_rng).as_row() for _ in range(n_bootstrap)]
            )
        info = dict(point.info)
        info.update(
            samples=int(n),
            minibatch=int(self.m),
            fit_rows=int(len(fit_idx)),
            eval_rows=int(len(eval_idx)),
            config=asdict(self.cfg),
            training=self.history,
        )
        point.info = info
        return point, draws

    # --------------------------------------------------------------------------- pieces
    def _standardised(self, x: np.ndarray, fit_idx: np.ndarray) -> Tensor:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(x.shape[0], -1))
        mean, std = t[fit_idx].mean(dim=0), t[fit_idx].std(dim=0)
        return ((t - mean) / torch.where(std > 0, std, torch.ones_like(std))).to(self.device)

    def _split_fit(self, fit_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fit rows -> (train rows, early-stopping rows): a fixed 15% of the fit rows stop the classifiers."""
        n_stop = max(int(0.15 * len(fit_idx)), 1)
        return fit_idx[n_stop:], fit_idx[:n_stop]

    def _batches(self, idx: np.ndarray, rng: np.random.Generator, drop_last: bool) -> list[np.ndarray]:
        order = rng.permutation(idx)
        m = self.m
        stop = len(order) - (len(order) % m if drop_last and len(order) >= m else 0)
        return [order[i : i + m] for i in range(0, stop, m)]

    def _fit_classifier(
        self, name: str, inputs: tuple[Tensor, ...], y: Tensor, fit_idx: np.ndarray, seed: int
    ) -> nn.Module:
        cfg = self.cfg
        in_dim = sum(t.shape[1] for t in inputs)
        net = mlp(in_dim, cfg.hidden, self.k, layers=cfg.layers).to(self.device)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        train_idx, stop_idx = self._split_fit(fit_idx)
        rng = np.random.default_rng(seed)
        stop_x = torch.cat([t[stop_idx] for t in inputs], dim=1)
        best, best_state, bad, curve = math.inf, None, 0, []
        for _ in range(cfg.classifier_epochs):
            net.train()
            for b in self._batches(train_idx, rng, drop_last=True):
                loss = F.cross_entropy(net(torch.cat([t[b] for t in inputs], dim=1)), y[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                held_out = float(F.cross_entropy(net(stop_x), y[stop_idx]))
            curve.append(held_out)
            if held_out < best - 1e-4:
                best, bad = held_out, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        with torch.no_grad():
            logits = net(stop_x)
        temperature = _fit_temperature(logits, y[stop_idx])
        self.history[name] = {"epochs": len(curve), "held_out_ce_nats": best, "temperature": temperature}
        return _Tempered(net, temperature)

    @torch.no_grad()
    def _predict(self, net: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        x = torch.cat(inputs, dim=1)
        return torch.cat([net(x[i : i + 8192]).softmax(dim=1) for i in range(0, x.shape[0], 8192)])

    def _fit_alignment(self, t1: Tensor, t2: Tensor, p1: Tensor, p2: Tensor, fit_idx: np.ndarray) -> _Alignment:
        cfg = self.cfg
        align = _Alignment(t1.shape[1], t2.shape[1], self.k, cfg).to(self.device)
        opt = torch.optim.AdamW(align.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(self.seed + 7)
        curve = []
        for _ in range(cfg.align_epochs):
            total, count = 0.0, 0
            for b in self._batches(fit_idx, rng, drop_last=True):
                loss = conditional_mi_q(_q_log(align, t1[b], t2[b], p1[b], p2[b], cfg.sinkhorn_iters))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, count = total + float(loss.detach()), count + 1
            curve.append(total / max(count, 1) / LOG2)
        self.history["q"] = {"epochs": cfg.align_epochs, "I_q(X2;Y|X1)_bits_per_epoch": curve}
        return align.eval()

    @torch.no_grad()
    def _evaluate(
        self, align: _Alignment, t1: Tensor, t2: Tensor, probs: list[Tensor], idx: np.ndarray, rng: Any
    ) -> _Point:
        """The PID on rows ``idx`` (a bootstrap resample of them when ``rng`` is given)."""
        if rng is not None:
            idx = rng.choice(idx, size=len(idx), replace=True)
        p1, p2, p12 = (p[idx] for p in probs)
        i1, i2, i12 = (float(_model_mi(p)) / LOG2 for p in (p1, p2, p12))
        u2_sum, weight = 0.0, 0
        m = self.m
        for start in range(0, len(idx) - m + 1, m):  # whole batches only: q is defined per m pairs
            b = idx[start : start + m]
            log_q = _q_log(align, t1[b], t2[b], probs[0][b], probs[1][b], self.cfg.sinkhorn_iters)
            u2_sum += float(conditional_mi_q(log_q)) / LOG2
            weight += 1
        if weight == 0:  # cannot happen with m <= len(idx); never report a U2 that was not measured
            raise RuntimeError(f"no whole minibatch of {m} pairs among {len(idx)} evaluation rows")
        u2 = u2_sum / weight
        r = i2 - u2
        u1 = i1 - r
        return _Point(
            R=r,
            U1=u1,
            U2=u2,
            S=i12 - (r + u1 + u2),
            total=i12,
            info={"I(X1;Y)": i1, "I(X2;Y)": i2, "I(X1,X2;Y)": i12, "I_q(X1,X2;Y)": r + u1 + u2, "batches": weight},
        )


@dataclass
class _Point:
    R: float
    U1: float
    U2: float
    S: float
    total: float
    info: dict[str, Any]

    def as_row(self) -> list[float]:
        return [self.R, self.U1, self.U2, self.S, self.total]
