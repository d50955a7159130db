"""``compile=True`` (torch.compile of the loss) trains with the eager loss, on CPU."""

from __future__ import annotations

import pytest
import torch

import augment
import factorcl
from factorcl_helpers import small_data, small_model


@pytest.fixture
def eager_random():
    """Random ops inside a compiled graph draw from inductor's own generator unless told to fall back
    to eager's: only then do the augmentations, and so the losses, match draw for draw. Set through
    inductor's own ``patch``: monkeypatch's undo deletes the config entry, and later compiles fail."""
    inductor = pytest.importorskip("torch._inductor.config")
    with inductor.patch(fallback_random=True):
        yield


@pytest.fixture
def no_value_checks():
    """The estimators' NaN/inf checks off, as factorcl.fit runs the loss (each reads a value back)."""
    import bounds

    enabled = bounds.value_checks_enabled()
    bounds.set_value_checks(False)
    yield
    bounds.set_value_checks(enabled)


@pytest.mark.slow
def test_compiled_loss_equals_the_eager_loss(eager_random):
    data = small_data(num_samples=256)
    kw = dict(epochs=1, lr=3e-3, critic_steps=1, progress=False, tensorboard=False, device="cpu", seed=0, stop_after=2)

    def run(**extra):
        loader = data.split("train").loader(64, shuffle=True, drop_last=True, seed=0)
        return [row["loss"] for row in factorcl.fit(small_model(), loader, **kw, **extra).history]

    torch._dynamo.reset()
    eager, compiled = run(), run(compile=True)
    assert len(compiled) == 2
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(
    ("method", "conditioning"), [("factorcl-ssl", "sampled"), ("factorcl-ssl", "concat"), ("cross+self+fact", None)]
)
def test_self_supervised_loss_compiles_into_one_graph(method, conditioning, no_value_checks):
    """The self-supervised losses torch.compile sees have no graph break: the sampled conditional terms
    used to build a scorer module per call, and dynamo fell back to eager at every such call. (The
    supervised methods break it in several places: label checks on the host and data-sized masks.)"""
    model = small_model(method, **({} if conditioning is None else {"conditioning": conditioning}))
    model.train()
    data = small_data(num_samples=64)
    batch = next(iter(data.split("train").loader(32, shuffle=False, drop_last=True)))
    assert conditioning is None or model.conditioning == conditioning
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model.loss)(batch)
    assert explanation.graph_break_count == 0, [str(r.reason) for r in explanation.break_reasons]
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_compiled_loss_takes_a_batch_of_another_size(eager_random, no_value_checks):
    """A batch of a new size (an epoch's last batch) recompiles the loss with dynamic shapes: the
    augmentations' random draws must accept symbolic sizes, and the values still match eager."""
    views = augment.Compose([augment.GaussianNoise(0.1), augment.FeatureDropout(0.1)])  # rand and randn draws
    model = small_model(augment1=views, augment2=views)
    model.train()
    data = small_data(num_samples=64).split("train")
    torch._dynamo.reset()
    compiled = torch.compile(model.loss)
    for size in (32, 24, 20):
        batch = next(iter(data.loader(size, shuffle=False, drop_last=True)))
        torch.manual_seed(size)
        want = model.loss(batch)[0].item()
        torch.manual_seed(size)
        got = compiled(batch)[0].item()
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), size
