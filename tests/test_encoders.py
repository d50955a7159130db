"""Encoders: padding never reaches the output, specs by name, FactorCL on padded sequences."""

from __future__ import annotations

import pytest
import torch

import factorcl
from factorcl.encoders import GRUEncoder, MLPEncoder, TimmImageEncoder, TransformerEncoder, build_encoder, masked_mean

B, T, D = 5, 7, 4


def _front_padded(gen):
    x = torch.randn(B, T, D, generator=gen)
    lengths = torch.tensor([7, 3, 1, 5, 2])
    mask = torch.arange(T)[None, :] >= (T - lengths)[:, None]  # valid steps are a suffix (MultiBench)
    return x, mask, lengths


SEQ_ENCODERS = {
    "gru": lambda: GRUEncoder(D, 8, hidden=6),
    "gru-bi-2layer": lambda: GRUEncoder(D, None, hidden=6, layers=2, bidirectional=True),
    "transformer": lambda: TransformerEncoder(D, 8, d_model=8, heads=2, layers=2, dropout=0.1),
    "mlp-mean": lambda: MLPEncoder(D, 8, hidden=16),
}


@pytest.mark.parametrize("name", list(SEQ_ENCODERS))
def test_padding_values_do_not_change_the_output(name, gen):
    torch.manual_seed(0)
    enc = SEQ_ENCODERS[name]().eval()
    x, mask, _ = _front_padded(gen)
    out = enc(x, mask=mask)
    garbage = x.clone()
    garbage[~mask] = torch.randn(int((~mask).sum()), D, generator=gen) * 100
    assert torch.equal(enc(garbage, mask=mask), out)
    garbage[~mask] = float("nan")
    assert torch.equal(enc(garbage, mask=mask), out)
    assert out.shape == (B, enc.out_dim if hasattr(enc, "out_dim") else 8)


@pytest.mark.parametrize("name", list(SEQ_ENCODERS))
def test_padded_equals_unpadded(name, gen):
    """A front-padded sequence encodes like the bare sequence, and like the same sequence end-padded."""
    torch.manual_seed(0)
    enc = SEQ_ENCODERS[name]().eval()
    x, mask, lengths = _front_padded(gen)
    out = enc(x, mask=mask)
    end = torch.zeros_like(x)
    end_mask = torch.arange(T)[None, :] < lengths[:, None]
    for i, n in enumerate(lengths.tolist()):
        bare = enc(x[i : i + 1, T - n :])
        torch.testing.assert_close(out[i], bare[0], atol=1e-5, rtol=1e-4)
        end[i, :n] = x[i, T - n :]
    torch.testing.assert_close(enc(end, mask=end_mask), out, atol=1e-5, rtol=1e-4)


def test_published_last_step_bug_is_gone(gen):
    """The published encoder read the last time step; with end padding that is padding for short rows."""
    torch.manual_seed(0)
    enc = TransformerEncoder(D, 8, d_model=8, heads=2, layers=1).eval()
    x, _, lengths = _front_padded(gen)
    end_mask = torch.arange(T)[None, :] < lengths[:, None]
    out = enc(x * end_mask.unsqueeze(-1), mask=end_mask)
    changed = x.clone()
    changed[:, -1] = 5.0  # the last step: padding for every row shorter than T
    out2 = enc(changed * 1.0, mask=end_mask)
    full = lengths == T
    assert torch.equal(out[~full], out2[~full])


def test_a_row_with_no_valid_step_gives_a_finite_output_that_ignores_its_padding(gen):
    x = torch.randn(2, T, D, generator=gen)
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[0, 3:] = True
    other = x.clone()
    other[1] = 100.0 * torch.randn(T, D, generator=gen)  # only the all-padding row changes
    for name, make in SEQ_ENCODERS.items():
        enc = make().eval()
        out = enc(x, mask=mask)
        assert bool(torch.isfinite(out).all()), name
        assert torch.equal(enc(other, mask=mask), out), name  # the empty row's output is a constant
        if name == "gru":  # the GRU's state after "no step" is zeros
            assert torch.equal(out[1], torch.zeros_like(out[1]))
    # The pooling that the MLP and transformer use gives zeros for it.
    assert torch.equal(masked_mean(x, mask)[1], torch.zeros(D))


def test_gradients_flow_only_through_valid_steps(gen):
    for make in SEQ_ENCODERS.values():
        torch.manual_seed(0)
        enc = make()
        x, mask, _ = _front_padded(gen)
        x.requires_grad_(True)
        enc(x, mask=mask).pow(2).sum().backward()
        assert float(x.grad[~mask].abs().sum()) == 0.0 and float(x.grad[mask].abs().sum()) > 0


def test_build_encoder_by_name():
    enc, dim = build_encoder("gru", (T, D))
    assert isinstance(enc, GRUEncoder) and dim == 64
    enc, dim = build_encoder({"type": "transformer", "d_model": 8, "heads": 2, "layers": 1, "out_dim": None}, (T, D))
    assert isinstance(enc, TransformerEncoder) and dim == 8
    enc, dim = build_encoder("auto", (D,))
    assert isinstance(enc, MLPEncoder) and enc(torch.randn(3, D)).shape == (3, dim)
    assert isinstance(build_encoder(None, (T, D))[0], TransformerEncoder)
    enc, dim = build_encoder({"type": "mlp", "pool": "flatten", "out_dim": 3}, (T, D))
    assert enc(torch.randn(2, T, D)).shape == (2, 3)
    enc, dim = build_encoder({"type": "mlp", "out_dim": 5}, (3, 4, 4))  # images flattened
    assert enc(torch.randn(2, 3, 4, 4)).shape == (2, 5)


def test_build_encoder_errors():
    with pytest.raises(ValueError, match=r"encoders.x1.type must be one of .*got 'lstm'"):
        build_encoder("lstm", (T, D), where="encoders.x1")
    with pytest.raises(ValueError, match=r"unknown key encoder.hiden for a 'gru' encoder; did you mean 'hidden'\?"):
        build_encoder({"type": "gru", "hiden": 3}, (T, D))
    with pytest.raises(ValueError, match=r"a 'gru' encoder needs sequences"):
        build_encoder("gru", (D,))
    with pytest.raises(ValueError, match="timm encoder needs images"):
        build_encoder("timm:test_resnet", (T, D))
    with pytest.raises(ValueError, match="no automatic encoder"):
        build_encoder("auto", (3, 8, 8))
    with pytest.raises(ValueError, match="mask must be"):
        GRUEncoder(D, 4)(torch.randn(2, T, D), mask=torch.ones(2, T))


def test_timm_encoder_random_init_offline():
    torch.manual_seed(0)
    enc, dim = build_encoder("timm:test_resnet", (3, 32, 32))
    assert isinstance(enc, TimmImageEncoder) and enc(torch.randn(2, 3, 32, 32)).shape == (2, dim)
    enc, dim = build_encoder(
        {"type": "timm", "name": "test_vit", "out_dim": 6, "model_kwargs": {"img_size": 32}}, (3, 32, 32)
    )
    assert dim == 6 and enc(torch.randn(2, 3, 32, 32)).shape == (2, 6)
    with pytest.raises(ValueError, match="unknown timm model 'test_resnett'"):
        TimmImageEncoder("test_resnett")


def test_factorcl_trains_on_front_padded_sequences(gen):
    """Masks from the batch reach the encoders and the sequence augmentations (which leave padding alone)."""
    import augment

    torch.manual_seed(0)
    x1, mask, _ = _front_padded(gen)
    x2 = torch.randn(B, T, 3, generator=gen) * mask.unsqueeze(-1)
    seen = {}

    class Spy(GRUEncoder):
        def forward(self, x, mask=None):
            seen.setdefault("masks", []).append(mask)
            return super().forward(x, mask=mask)

    aug = augment.RandomChoice([augment.TimeShuffle(), augment.GaussianNoise(0.1), augment.TimeMask(p=0.2)])
    model = factorcl.FactorCL(
        Spy(D, 8, hidden=8),
        TransformerEncoder(3, 8, d_model=8, heads=2, layers=1),
        8,
        8,
        method="factorcl-ssl",
        augment1=aug,
        augment2=aug,
        embed_dim=4,
        critic_hidden=16,
        critic_embed=8,
    )
    loss, _ = model.loss({"x1": x1, "x2": x2, "mask1": mask, "mask2": mask})
    loss.backward()
    assert torch.isfinite(loss) and all(m is not None and m.shape[1] == T for m in seen["masks"])
    reps = model.embed(x1, x2, mask1=mask, mask2=mask)
    assert set(reps) == {"s1", "s2", "u1", "u2"}
