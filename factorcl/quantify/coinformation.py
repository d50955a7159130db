"""The FactorCL chapter's own quantities, estimated with the project's InfoNCE bound.

The chapter (Eq. 4.1) splits I(X1, X2; Y) into S = I(X1; X2; Y) (co-information), U1 = I(X1; Y | X2)
and U2 = I(X2; Y | X1). With the label-side identities

    S  = I(X1; Y) + I(X2; Y) - I(X1, X2; Y),   U1 = I(X1, X2; Y) - I(X2; Y),   U2 = I(X1, X2; Y) - I(X1; Y)

all three follow from three label informations, each estimated by the lower bound I_NCE of a critic f(x, y)
trained on the batch's (x, y) pairs (:func:`bounds.infonce`; a [B, B] score matrix of every x
against every label in the batch). Label informations are bounded by H(Y) <= log K, far below
log B, so the bound does not saturate the way the pair-side form I(X1; X2) - I(X1; X2 | Y) does
on data where the modalities share a continuous latent exactly (there I(X1; X2) is infinite).

How these differ from the PID: co-information = R - S_PID, and I(X1; Y | X2) = U1_PID + S_PID.
The chapter's S is redundancy net of synergy (negative when synergy wins) and its U1, U2 each
contain all the synergy. The three are differences of lower bounds, hence estimates, not bounds;
I(X1, X2; Y) is the hardest of the three to reach, so its shortfall pushes S up and U1, U2 down.
The keys name the quantities (``"I(X1;X2;Y)"``, ``"I(X1;Y|X2)"``, ...) so that the chapter's S is
never confused with PID synergy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bounds import SeparableCritic, infonce

from ..device import seed_everything, select_device

__all__ = ["coinformation_terms"]

LOG2 = math.log(2.0)


def _fit_label_critic(
    x: torch.Tensor, y1h: torch.Tensor, fit: np.ndarray, stop: np.ndarray, epochs: int, batch_size: int, seed: int
) -> SeparableCritic:
    critic = SeparableCritic(x.shape[1], y1h.shape[1], hidden_dim=128, embed_dim=32).to(x.device)
    opt = torch.optim.AdamW(critic.parameters(), lr=1e-3, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    best, best_state, bad = -math.inf, None, 0
    for _ in range(epochs):
        critic.train()
        order = rng.permutation(fit)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            b = order[i : i + batch_size]
            loss = -infonce(critic(x[b], y1h[b]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        value = _mean_infonce(critic, x, y1h, stop, batch_size)
        if value > best + 1e-4:
            best, bad = value, 0
            best_state = {k: v.detach().clone() for k, v in critic.state_dict().items()}
        else:
            bad += 1
            if bad >= 4:
                break
    if best_state is not None:
        critic.load_state_dict(best_state)
    return critic.eval()


@torch.no_grad()
def _mean_infonce(critic: SeparableCritic, x: torch.Tensor, y1h: torch.Tensor, idx: np.ndarray, m: int) -> float:
    critic.eval()
    values = [float(infonce(critic(x[idx[i : i + m]], y1h[idx[i : i + m]]))) for i in range(0, len(idx) - m + 1, m)]
    return float(np.mean(values)) if values else float("nan")


def coinformation_terms(
    x1: np.ndarray,
    x2: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 256,
    eval_fraction: float = 0.3,
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """The chapter's S = I(X1; X2; Y), U1 = I(X1; Y | X2), U2 = I(X2; Y | X1) in bits, estimated with I_NCE.

    Inputs are checked samples (:func:`~.estimate.check_samples`): x1 [N, d1], x2 [N, d2], labels
    0..K-1 [N]. Each label information is the held-out I_NCE (batches of ``batch_size``) of a
    separable critic trained on the other rows. Returns ``"I(X1;X2;Y)"`` (the chapter's S), ``"I(X1;Y|X2)"`` (its U1),
    ``"I(X2;Y|X1)"`` (its U2), the three label informations and the estimator's description.
    """
    seed_everything(seed)
    dev = select_device(device)
    n = len(labels)
    m = min(batch_size, max(2, n // 4))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_eval = max(int(round(eval_fraction * n)), m)
    eval_idx, fit_idx = perm[:n_eval], perm[n_eval:]
    n_stop = max(int(0.15 * len(fit_idx)), m)
    stop_idx, train_idx = fit_idx[:n_stop], fit_idx[n_stop:]

    def standardised(a: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(a, dtype=torch.float32)
        mean, std = t[fit_idx].mean(dim=0), t[fit_idx].std(dim=0)
        return ((t - mean) / torch.where(std > 0, std, torch.ones_like(std))).to(dev)

    t1, t2 = standardised(x1), standardised(x2)
    y1h = F.one_hot(torch.as_tensor(labels, dtype=torch.long), int(labels.max()) + 1).float().to(dev)
    values: dict[str, float] = {}
    inputs = {"I(X1;Y)": t1, "I(X2;Y)": t2, "I(X1,X2;Y)": torch.cat([t1, t2], dim=1)}
    for name, x in tqdm(inputs.items(), desc="I_NCE label critics", disable=not progress, dynamic_ncols=True):
        critic = _fit_label_critic(x, y1h, train_idx, stop_idx, epochs, m, seed)
        values[name] = _mean_infonce(critic, x, y1h, eval_idx, m) / LOG2
    i1, i2, i12 = values["I(X1;Y)"], values["I(X2;Y)"], values["I(X1,X2;Y)"]
    return {
        "I(X1;X2;Y)": i1 + i2 - i12,
        "I(X1;Y|X2)": i12 - i2,
        "I(X2;Y|X1)": i12 - i1,
        **values,
        "estimator": f"I_NCE, separable critics, held-out batches of {m}",
        "units": "bits",
    }
