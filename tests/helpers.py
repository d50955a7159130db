"""Helpers shared by test modules."""

import torch


def train_estimator(estimator, sampler, steps: int, batch_size: int, gen: torch.Generator, lr: float = 5e-3) -> None:
    """Maximise an estimator's value with Adam (plus its critic loss, where it has one)."""
    opt = torch.optim.Adam(estimator.parameters(), lr=lr)
    for _ in range(steps):
        batch = sampler(batch_size, gen)
        loss = -estimator(*batch)
        if getattr(estimator, "has_critic_loss", False):
            loss = loss + estimator.critic_loss(*batch)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def held_out_mean(fn, sampler, batch_size: int, gen: torch.Generator, batches: int = 20) -> float:
    """Mean of fn(*batch) over fresh batches."""
    return sum(float(fn(*sampler(batch_size, gen))) for _ in range(batches)) / batches
