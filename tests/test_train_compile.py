"""``compile=True`` (torch.compile of the loss) trains with the eager loss, on CPU."""

from __future__ import annotations

import pytest
import torch

import factorcl
from factorcl_helpers import small_data, small_model


@pytest.mark.slow
def test_compiled_loss_equals_the_eager_loss(monkeypatch):
    inductor = pytest.importorskip("torch._inductor.config")
    # Random ops inside a compiled graph draw from inductor's own generator unless told to fall back
    # to eager's: only then do the augmentations, and so the losses, match draw for draw.
    monkeypatch.setattr(inductor, "fallback_random", True)
    data = small_data(num_samples=256)
    kw = dict(epochs=1, lr=3e-3, critic_steps=1, progress=False, tensorboard=False, device="cpu", seed=0, stop_after=2)

    def run(**extra):
        loader = data.split("train").loader(64, shuffle=True, drop_last=True, seed=0)
        return [row["loss"] for row in factorcl.fit(small_model(), loader, **kw, **extra).history]

    torch._dynamo.reset()
    eager, compiled = run(), run(compile=True)
    assert len(compiled) == 2
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-5)
