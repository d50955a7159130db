"""augment.base: calling convention, validation, Compose / RandomChoice / RandomApply / Identity."""

from __future__ import annotations

import pytest
import torch

from augment import (
    Augmentation,
    Compose,
    FeatureDropout,
    GaussianNoise,
    Identity,
    RandomApply,
    RandomChoice,
    TimeMask,
    WordDeletion,
    WordMask,
    seeded_global_rng,
)
from augment.base import check_probability, rand

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class AddConst(Augmentation):
    """Deterministic marker branch: adds ``c`` (and ``cond`` when given) to every entry."""

    def __init__(self, c: float) -> None:
        self.c = c

    def forward(self, x, *, cond=None, generator=None, **kwargs):
        out = x + self.c
        if cond is not None:
            out = out + cond.view(-1, *([1] * (x.dim() - 1)))
        return out


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "x"])
def test_probability_outside_unit_interval_rejected_at_construction(bad):
    with pytest.raises(ValueError, match=r"^p must be"):
        RandomApply(Identity(), p=bad)
    with pytest.raises(ValueError, match=r"^p must be"):
        FeatureDropout(p=bad)


def test_probability_message_names_value():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        check_probability(1.5, "p")


def test_empty_batch_rejected():
    for aug in (Identity(), Compose([Identity()]), RandomChoice([Identity()]), RandomApply(Identity())):
        with pytest.raises(ValueError, match=r"x has an empty batch \(B=0\)"):
            aug(torch.zeros(0, 4))
        with pytest.raises(ValueError, match=r"x has an empty batch \(B=0\)"):
            aug([])


def test_cond_batch_mismatch_rejected():
    with pytest.raises(ValueError, match=r"cond has batch 4 but x has batch 5"):
        Compose([GaussianNoise()])(torch.zeros(5, 3), cond=torch.zeros(4, 2))


def test_non_tensor_and_bad_generator_rejected():
    with pytest.raises(ValueError, match=r"x must be a torch.Tensor"):
        GaussianNoise()(3.0)
    with pytest.raises(ValueError, match=r"generator must be a torch.Generator"):
        GaussianNoise()(torch.zeros(2, 3), generator=123)


def test_container_arguments_validated():
    with pytest.raises(ValueError, match="at least one"):
        Compose([])
    with pytest.raises(ValueError, match="sequence of augmentations"):
        RandomChoice(Identity())
    with pytest.raises(ValueError, match=r"augmentations\[1\] must be callable"):
        Compose([Identity(), 3])
    with pytest.raises(ValueError, match="weights has 1 entries but there are 2"):
        RandomChoice([Identity(), Identity()], weights=[1.0])
    with pytest.raises(ValueError, match=r"weights\[0\] must be >= 0"):
        RandomChoice([Identity(), Identity()], weights=[-1.0, 2.0])


# --------------------------------------------------------------------------------------------
# Identity / Compose
# --------------------------------------------------------------------------------------------


def test_identity_returns_equal_copy_not_alias():
    x = torch.randn(4, 3)
    y = Identity()(x)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


def test_compose_applies_in_order_with_shared_generator():
    x = torch.randn(64, 10, 8)
    a, b = TimeMask(p=0.3), GaussianNoise(0.5)
    composed = Compose([a, b])(x, generator=gen(3))
    g = gen(3)
    manual = b(a(x, generator=g), generator=g)
    assert torch.equal(composed, manual)


def test_compose_passes_cond_and_kwargs():
    x = torch.zeros(3, 5, 2)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[:, :2] = False
    out = Compose([AddConst(1.0), TimeMask(p=1.0)])(x, cond=torch.tensor([1.0, 2.0, 3.0]), mask=mask)
    # AddConst saw cond (+1 +cond_i), TimeMask saw the mask (valid steps zeroed, padding kept).
    assert torch.equal(out[:, 2:], torch.zeros(3, 3, 2))
    assert torch.equal(out[:, :2, 0], torch.tensor([[2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]))


# --------------------------------------------------------------------------------------------
# RandomChoice / RandomApply: per-sample choice
# --------------------------------------------------------------------------------------------


def test_random_choice_is_per_sample_with_weights():
    b = 8000
    x = torch.zeros(b, 2)
    weights = [0.6, 0.3, 0.1]
    out = RandomChoice([AddConst(1.0), AddConst(2.0), Identity()], weights=weights)(x, generator=gen(1))
    # Every sample got exactly one branch, applied to all its entries.
    assert torch.equal(out[:, 0], out[:, 1])
    values = out[:, 0]
    assert set(values.unique().tolist()) == {0.0, 1.0, 2.0}
    for value, w in zip((1.0, 2.0, 0.0), weights):
        assert abs((values == value).float().mean().item() - w) < 0.02


def test_random_choice_slices_per_sample_kwargs_and_cond():
    b, t = 200, 6
    x = torch.zeros(b, t, 1)
    lengths = torch.randint(1, t + 1, (b,), generator=gen(0))
    cond = torch.arange(b, dtype=torch.float32)
    out = RandomChoice([AddConst(1.0), Identity()])(x, cond=cond, lengths=lengths, generator=gen(2))
    # The AddConst branch received the matching row of cond for each of its samples.
    hit = out[:, 0, 0] != 0
    assert 0 < hit.sum() < b
    assert torch.equal(out[hit, 0, 0], cond[hit] + 1.0)

    masked = RandomChoice([TimeMask(p=1.0), Identity()])(torch.ones(b, t, 1), lengths=lengths, generator=gen(2))
    valid = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    assert torch.equal(masked[~valid], torch.ones(int((~valid).sum()), 1))  # padding untouched
    chosen = masked[:, 0, 0] == 0
    assert torch.equal(masked[chosen][valid[chosen]], torch.zeros(int(valid[chosen].sum()), 1))


def test_random_choice_reproducible_and_does_not_mutate():
    x = torch.randn(50, 7, 4)
    x0 = x.clone()
    aug = RandomChoice([GaussianNoise(1.0), TimeMask(p=0.5), Identity()])
    a, b = aug(x, generator=gen(5)), aug(x, generator=gen(5))
    c = aug(x, generator=gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, x0)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_random_choice_rejects_mismatched_branch_shapes():
    class Halve(Augmentation):
        def forward(self, x, *, cond=None, generator=None):
            return x[:, : x.shape[1] // 2]

    with pytest.raises(ValueError, match="same per-sample shape"):
        RandomChoice([Halve(), Identity()])(torch.zeros(100, 4), generator=gen(0))


def test_random_choice_on_string_lists():
    texts = [f"w{i} a b c d e f g" for i in range(300)]
    out = RandomChoice([WordMask(p=1.0, mask_word="M"), Identity()])(texts, generator=gen(0))
    masked = [o.split()[0] == "M" for o in out]
    assert 0.4 < sum(masked) / len(out) < 0.6
    for t, o, m in zip(texts, out, masked):
        assert o == (" ".join(["M"] * 8) if m else t)


@pytest.mark.parametrize("p", [0.0, 0.25, 1.0])
def test_random_apply_fraction(p):
    x = torch.zeros(8000, 3)
    out = RandomApply(AddConst(1.0), p=p)(x, generator=gen(4))
    applied = (out[:, 0] == 1.0).float().mean().item()
    assert abs(applied - p) < 0.02
    assert torch.equal(out[:, 0], out[:, 2])


def test_random_apply_on_strings_keeps_untouched_samples():
    texts = ["one two three four"] * 400
    out = RandomApply(WordDeletion(p=1.0), p=0.5)(texts, generator=gen(0))
    changed = sum(o != t for o, t in zip(out, texts))
    assert 150 < changed < 250


# --------------------------------------------------------------------------------------------
# Random-number plumbing
# --------------------------------------------------------------------------------------------


def test_seeded_global_rng_is_reproducible_and_restores_global_state():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with seeded_global_rng(gen(9), "cpu"):
        a = torch.rand(5)
    assert torch.equal(torch.random.get_rng_state(), before)
    with seeded_global_rng(gen(9), "cpu"):
        b = torch.rand(5)
    assert torch.equal(a, b)


def test_no_generator_uses_global_rng():
    x = torch.randn(16, 5)
    torch.manual_seed(0)
    a = GaussianNoise(1.0)(x)
    torch.manual_seed(0)
    b = GaussianNoise(1.0)(x)
    assert torch.equal(a, b)


@cuda
def test_cpu_generator_with_cuda_tensor():
    x = torch.randn(32, 5, 4, device="cuda")
    aug = RandomChoice([GaussianNoise(0.5), TimeMask(p=0.5), Identity()])
    a, b = aug(x, generator=gen(1)), aug(x, generator=gen(1))
    assert a.device == x.device and torch.equal(a, b)
    assert rand((3,), gen(0), "cuda").device.type == "cuda"
