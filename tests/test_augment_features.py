"""augment.features: feature / sequence augmentations, padding, statistics, validation."""

from __future__ import annotations

import math

import pytest
import torch

from augment import FeatureDropout, GaussianNoise, Mixup, TimeMask, TimeShuffle, valid_steps

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def front_padded_mask(b: int, t: int, seed: int = 0) -> torch.Tensor:
    """MultiBench layout: valid steps at the end, padding at the front (some fully padded)."""
    lengths = torch.randint(0, t + 1, (b,), generator=gen(seed))
    return torch.arange(t).unsqueeze(0) >= (t - lengths).unsqueeze(1)


SEQ_AUGS = [
    GaussianNoise(0.3),
    FeatureDropout(0.3),
    FeatureDropout(0.3, shared_over_time=False),
    TimeMask(p=0.3),
    TimeMask(max_width=4),
    TimeShuffle(),
    TimeShuffle(window=3),
    Mixup(0.4),
]
FEAT_AUGS = [GaussianNoise(0.3), FeatureDropout(0.3), Mixup(0.4)]


@pytest.mark.parametrize("aug", SEQ_AUGS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_sequence_contract(aug, dtype):
    x = torch.randn(16, 12, 5).to(dtype)
    x0 = x.clone()
    y = aug(x, generator=gen(1))
    assert torch.equal(x, x0), "input modified"
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.equal(y, aug(x, generator=gen(1))), "not reproducible"
    assert not torch.equal(y, aug(x, generator=gen(2))), "seed has no effect"


@pytest.mark.parametrize("aug", FEAT_AUGS, ids=repr)
def test_feature_contract(aug):
    x = torch.randn(32, 7)
    x0 = x.clone()
    y = aug(x, generator=gen(1))
    assert torch.equal(x, x0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y, aug(x, generator=gen(1)))


@pytest.mark.parametrize("aug", SEQ_AUGS, ids=repr)
@pytest.mark.parametrize("how", ["mask", "lengths"])
def test_padding_is_never_written(aug, how):
    b, t = 64, 10
    x = torch.randn(b, t, 4)
    if how == "mask":
        valid = front_padded_mask(b, t)
        kwargs = {"mask": valid}
    else:
        lengths = torch.randint(0, t + 1, (b,), generator=gen(3))
        valid = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
        kwargs = {"lengths": lengths}
    y = aug(x, generator=gen(0), **kwargs)
    assert torch.equal(y[~valid], x[~valid])
    # Something did change on the valid steps (the augmentation is not a no-op there).
    assert not torch.equal(y[valid], x[valid])


def test_valid_steps_from_lengths_and_mask():
    x = torch.zeros(2, 4, 1)
    assert torch.equal(valid_steps(x, lengths=torch.tensor([1, 3])), torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]]).bool())
    m = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]).bool()
    assert torch.equal(valid_steps(x, mask=m), m)
    assert valid_steps(x) is None


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def test_gaussian_noise_std_and_mean():
    x = torch.randn(2048, 128)
    d = GaussianNoise(0.25)(x, generator=gen(0)) - x
    assert abs(d.std().item() - 0.25) < 0.25 * 0.01
    assert abs(d.mean().item()) < 0.002


def test_gaussian_noise_zero_std_is_identity():
    x = torch.randn(8, 3, 2)
    assert torch.equal(GaussianNoise(0.0)(x), x)


@pytest.mark.parametrize("shared", [True, False])
def test_feature_dropout_fraction(shared):
    x = torch.randn(512, 20, 64).abs() + 1.0  # strictly positive: zeros are exactly the drops
    y = FeatureDropout(0.3, shared_over_time=shared)(x, generator=gen(0))
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.3) < 0.01
    same_over_time = bool((dropped == dropped[:, :1]).all())
    assert same_over_time == shared
    assert torch.equal(y[~dropped], x[~dropped])


def test_feature_dropout_value_and_features():
    x = torch.ones(4096, 16)
    y = FeatureDropout(0.2, value=-1.0)(x, generator=gen(0))
    assert set(y.unique().tolist()) == {-1.0, 1.0}
    assert abs((y == -1).float().mean().item() - 0.2) < 0.01


def test_time_mask_exact_count_per_sample():
    b, t = 256, 50
    mask = front_padded_mask(b, t, seed=1)
    x = torch.randn(b, t, 3).abs() + 1.0
    y = TimeMask(p=0.2)(x, mask=mask, generator=gen(0))
    masked_steps = (y == 0).all(-1)
    expected = torch.floor(mask.sum(1) * 0.2)
    assert torch.equal(masked_steps.sum(1).double(), expected.double())
    assert not bool((masked_steps & ~mask).any())
    # Every valid position gets masked sometimes (uniform choice, not a fixed block).
    y_full = TimeMask(p=0.2)(torch.ones(4000, 10, 1), generator=gen(1))
    rate = (y_full[..., 0] == 0).float().mean(0)
    assert torch.allclose(rate, torch.full((10,), 0.2), atol=0.03)


def test_time_mask_span_is_contiguous_and_bounded():
    b, t, w = 500, 30, 6
    mask = front_padded_mask(b, t, seed=2)
    x = torch.ones(b, t, 2)
    y = TimeMask(max_width=w)(x, mask=mask, generator=gen(0))
    hit = (y == 0).all(-1)
    widths = hit.sum(1)
    assert int(widths.max()) <= w and int(widths.max()) == w
    assert not bool((hit & ~mask).any())
    for row in hit[widths > 0]:
        idx = row.nonzero().squeeze(1)
        assert int(idx[-1] - idx[0]) + 1 == len(idx)  # contiguous (valid steps are contiguous here)
    mean_width = widths[mask.sum(1) >= w].float().mean().item()
    assert abs(mean_width - w / 2) < 0.5


def test_time_shuffle_permutes_valid_steps_only():
    b, t = 128, 12
    mask = front_padded_mask(b, t, seed=4)
    x = torch.arange(b * t, dtype=torch.float32).view(b, t, 1).expand(b, t, 3).contiguous()
    y = TimeShuffle()(x, mask=mask, generator=gen(0))
    for i in range(b):
        v = mask[i]
        assert torch.equal(y[i, v, 0].sort().values, x[i, v, 0])  # a permutation of the valid steps
        assert torch.equal(y[i, ~v], x[i, ~v])
    assert torch.equal(y[..., 0], y[..., 2])  # whole steps move together
    long = mask.sum(1) >= 6
    moved = (y[long, :, 0] != x[long, :, 0]).any(1).float().mean().item()
    assert moved > 0.95


def test_time_shuffle_window_keeps_blocks():
    b, t, w = 64, 12, 4
    x = torch.arange(t, dtype=torch.float32).view(1, t, 1).expand(b, t, 1)
    y = TimeShuffle(window=w)(x, generator=gen(0))
    block_in = torch.div(x[..., 0], w, rounding_mode="floor")
    block_out = torch.div(y[..., 0], w, rounding_mode="floor")
    assert torch.equal(block_in, block_out)
    assert not torch.equal(x, y)


def test_time_shuffle_differs_per_sample():
    x = torch.arange(8, dtype=torch.float32).view(1, 8, 1).expand(64, 8, 1)
    y = TimeShuffle()(x, generator=gen(0))[..., 0]
    assert len({tuple(r.tolist()) for r in y}) > 50


def test_mixup_convex_combination_with_dominant_weight():
    b = 64
    x = torch.eye(b)  # sample i = e_i, so y_i's entries are the mixing weights
    y = Mixup(alpha=1.0)(x, generator=gen(0))
    assert torch.allclose(y.sum(1), torch.ones(b))
    assert bool((y.diagonal() >= 0.5 - 1e-6).all())
    assert int((y > 0).sum(1).max()) <= 2
    lam = y.diagonal()
    # max(U, 1-U) for U ~ Beta(1, 1) is uniform on [0.5, 1]: mean 0.75.
    big = Mixup(alpha=1.0)(torch.eye(2000), generator=gen(1)).diagonal()
    assert abs(big[big < 1].mean().item() - 0.75) < 0.02
    assert lam.min() < 0.9  # actually mixes


def test_mixup_non_dominant_weights_cover_unit_interval():
    lam = Mixup(alpha=1.0, dominant=False)(torch.eye(2000), generator=gen(0)).diagonal()
    lam = lam[lam < 1]
    assert lam.min() < 0.1 and abs(lam.mean().item() - 0.5) < 0.03


def test_mixup_only_mixes_steps_valid_in_both():
    b, t = 32, 6
    mask = front_padded_mask(b, t, seed=5)
    x = torch.randn(b, t, 2)
    x_padded = x.masked_fill(~mask.unsqueeze(-1), 1e6)  # garbage in padding must never leak
    y = Mixup()(x_padded, mask=mask, generator=gen(0))
    assert float(y[mask].abs().max()) < 1e3
    assert torch.equal(y[~mask], x_padded[~mask])


def test_half_precision_noise_keeps_dtype():
    x = torch.randn(4, 8).half()
    y = GaussianNoise(0.1)(x, generator=gen(0))
    assert y.dtype == torch.float16 and float((y.float() - x.float()).std()) > 0.05


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aug,shape,expected",
    [
        (GaussianNoise(), (3,), r"x must be \[B, D\] or \[B, T, D\], got shape \(3,\)"),
        (FeatureDropout(), (2, 3, 4, 5), r"x must be \[B, D\] or \[B, T, D\], got shape \(2, 3, 4, 5\)"),
        (TimeMask(), (4, 5), r"x must be \[B, T, D\], got shape \(4, 5\)"),
        (TimeShuffle(), (4, 5), r"x must be \[B, T, D\], got shape \(4, 5\)"),
    ],
)
def test_wrong_rank_rejected(aug, shape, expected):
    with pytest.raises(ValueError, match=expected):
        aug(torch.zeros(shape))


@pytest.mark.parametrize("aug", SEQ_AUGS, ids=repr)
def test_empty_batch_rejected(aug):
    with pytest.raises(ValueError, match=r"x has an empty batch \(B=0\)"):
        aug(torch.zeros(0, 5, 3))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        FeatureDropout(1.5)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got -0.1"):
        TimeMask(p=-0.1)
    with pytest.raises(ValueError, match="std must be >= 0"):
        GaussianNoise(-1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        Mixup(0.0)
    with pytest.raises(ValueError, match="either p or max_width"):
        TimeMask(p=0.1, max_width=3)
    with pytest.raises(ValueError, match="window must be >= 1"):
        TimeShuffle(window=0)


def test_bad_padding_arguments():
    x = torch.zeros(3, 5, 2)
    with pytest.raises(ValueError, match=r"lengths must be \[B\] = \(3,\), got shape \(4,\)"):
        GaussianNoise()(x, lengths=torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match=r"lengths must be in \[0, T=5\]"):
        GaussianNoise()(x, lengths=torch.tensor([1, 2, 6]))
    with pytest.raises(ValueError, match=r"mask must be \[B, T\] = \(3, 5\), got shape \(3, 4\)"):
        GaussianNoise()(x, mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        GaussianNoise()(x, mask=torch.ones(3, 5))
    with pytest.raises(ValueError, match="either lengths or mask"):
        GaussianNoise()(x, lengths=torch.tensor([1, 2, 3]), mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"lengths is only valid for sequences"):
        GaussianNoise()(torch.zeros(3, 5), lengths=torch.tensor([1, 2, 3]))


def test_integer_input_rejected_where_float_needed():
    with pytest.raises(ValueError, match="x must be a floating-point tensor, got dtype torch.int64"):
        GaussianNoise()(torch.zeros(2, 3, dtype=torch.long))
    # Masking works on integer features (no arithmetic needed).
    y = TimeMask(p=0.5)(torch.ones(2, 4, 1, dtype=torch.long), generator=gen(0))
    assert y.dtype == torch.long and int((y == 0).sum()) == 4


def test_time_mask_p_rounding_edge_cases():
    x = torch.ones(10, 3, 1)
    assert torch.equal(TimeMask(p=0.3)(x, generator=gen(0)), x)  # floor(0.9) = 0 steps
    assert int((TimeMask(p=1.0)(x, generator=gen(0)) == 0).sum()) == 30
    assert math.isclose(TimeMask().p, 0.2)
    # floor(n * p) exactly: in floating point 100 * 0.29 = 28.999999999999996.
    for t, p, count in ((100, 0.29, 29), (100, 0.57, 57), (10, 0.7, 7), (1000, 0.001, 1), (7, 0.5, 3)):
        y = TimeMask(p=p)(torch.ones(2, t, 1), generator=gen(0))
        assert ((y[..., 0] == 0).sum(1) == count).all(), (t, p)


@cuda
@pytest.mark.parametrize("aug", SEQ_AUGS, ids=repr)
def test_cuda_device_and_generators(aug):
    x = torch.randn(16, 12, 5, device="cuda")
    mask = front_padded_mask(16, 12).cuda()
    y = aug(x, generator=gen(0), mask=mask)
    assert y.device == x.device and torch.equal(y, aug(x, generator=gen(0), mask=mask))
    assert torch.equal(y[~mask], x[~mask])
    g = torch.Generator(device="cuda").manual_seed(0)
    assert aug(x, generator=g).device == x.device
