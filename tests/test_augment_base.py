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
    ImageAugment,
    Mixup,
    RandomApply,
    RandomChoice,
    RelevanceMask,
    TimeMask,
    TokenMask,
    UniqueAugment,
    WordDeletion,
    WordMask,
    accepts_keyword,
    seeded_global_rng,
)
from augment.base import check_probability, floor_fraction, rand

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
    with pytest.raises(ValueError, match=r"generator must be a torch.Generator, an int seed or None, got float"):
        GaussianNoise()(torch.zeros(2, 3), generator=1.5)
    with pytest.raises(ValueError, match=r"generator must be a torch.Generator, an int seed or None, got bool"):
        GaussianNoise()(torch.zeros(2, 3), generator=True)
    # Containers take tensors or lists (of strings); the message says so.
    with pytest.raises(ValueError, match=r"x must be a torch.Tensor or a list \(e.g. of strings\), got str"):
        Compose([WordMask()])("one string")


def test_int_seed_works_through_containers_and_equals_a_seeded_generator():
    x = torch.randn(32, 6, 3)
    for aug in (
        GaussianNoise(0.5),
        Compose([TimeMask(p=0.5), GaussianNoise(0.5)]),
        RandomChoice([GaussianNoise(0.5), TimeMask(p=0.5)]),
        RandomApply(GaussianNoise(0.5), p=0.5),
    ):
        assert torch.equal(aug(x, generator=7), aug(x, generator=gen(7)))
        assert not torch.equal(aug(x, generator=7), aug(x, generator=8))
    texts = ["a b c d e f g h", "i j k l m n o p"] * 8
    chained = Compose([WordDeletion(0.3), WordMask(0.3)])
    assert chained(texts, generator=3) == chained(texts, generator=gen(3))
    assert RandomApply(WordMask(0.5))(texts, generator=3) == RandomApply(WordMask(0.5))(texts, generator=gen(3))


def test_containers_accept_tuples_of_strings():
    texts = ("a b c d e f", "g h i j k l", "m n o p q r")
    out = RandomChoice([WordMask(0.5), WordDeletion(0.5)])(texts, generator=gen(0))
    assert isinstance(out, list) and len(out) == 3
    assert Compose([Identity()])(texts) == list(texts)


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


class KeywordProbe(Augmentation):
    """Records the keywords its forward received; uses ``mask`` and nothing else."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def forward(self, x, *, cond=None, generator=None, mask=None):
        self.seen.append({"mask"} if mask is not None else set())
        return x.clone()


def test_call_time_keywords_reach_only_the_children_that_use_them():
    b, d = 16, 10
    x = torch.randn(b, d).abs() + 1.0
    relevance = torch.arange(d, dtype=torch.float32).expand(b, d)  # dims 0..2 least relevant
    # RelevanceMask takes relevance=, GaussianNoise does not: each gets its own.
    out = Compose([RelevanceMask(p=0.3, pool=0.3), GaussianNoise(0.0)])(x, relevance=relevance, generator=gen(0))
    assert torch.equal(out[:, :3], torch.zeros(b, 3)) and torch.equal(out[:, 3:], x[:, 3:])
    out = RandomChoice([RelevanceMask(p=0.3, pool=0.3), GaussianNoise(0.0)])(x, relevance=relevance, generator=gen(0))
    hit = (out[:, :3] == 0).all(1)
    assert 0 < int(hit.sum()) < b and torch.equal(out[~hit], x[~hit])
    out = RandomApply(RelevanceMask(p=0.3, pool=0.3), p=1.0)(x, relevance=relevance)
    assert torch.equal(out[:, :3], torch.zeros(b, 3))
    # A keyword that no child uses is dropped (an image augmentation ignores a sequence mask).
    images = torch.rand(4, 3, 8, 8)
    mask = torch.ones(4, 8, dtype=torch.bool)
    assert RandomApply(ImageAugment("unique"), p=1.0)(images, mask=mask, generator=gen(0)).shape == images.shape
    assert Compose([ImageAugment("unique")])(images, mask=mask, generator=gen(0)).shape == images.shape
    # Nested containers: the probe gets mask, a plain function that takes only x gets nothing.
    probe = KeywordProbe()
    seq = torch.randn(4, 5, 2)
    aug = Compose(
        [
            RandomApply(Compose([probe, lambda t: t * 2]), p=1.0),
            UniqueAugment(KeywordProbe(), lambda a, c: c.sum((2, 3)), 2),
        ]
    )
    out = aug(seq, mask=torch.ones(4, 5, dtype=torch.bool), cond=torch.zeros(4, 1))
    assert probe.seen == [{"mask"}] and torch.equal(out, seq * 2)
    # A leaf called directly takes only its own keywords.
    with pytest.raises(TypeError):
        GaussianNoise(0.1)(x, relevance=relevance)


def test_accepts_keyword_on_leaves_containers_and_plain_callables():
    # Leaves: what their forward names; cond only when they look at the other modality.
    assert accepts_keyword(GaussianNoise(), "mask") and accepts_keyword(GaussianNoise(), "lengths")
    assert not accepts_keyword(GaussianNoise(), "relevance") and not accepts_keyword(GaussianNoise(), "cond")
    assert accepts_keyword(TokenMask(1, 0), "mask") and not accepts_keyword(TokenMask(1, 0), "lengths")
    assert not accepts_keyword(ImageAugment(), "mask") and not accepts_keyword(WordMask(), "mask")
    assert not accepts_keyword(Identity(), "mask") and accepts_keyword(Identity(), "generator")
    assert accepts_keyword(RelevanceMask(), "relevance")
    assert accepts_keyword(RelevanceMask(scorer=lambda a, c: c.sum(-1)), "cond")
    assert not accepts_keyword(RelevanceMask(relevance=torch.ones(3)), "cond")
    unique = UniqueAugment(ImageAugment(), lambda a, c: c.mean((2, 3, 4)))
    assert accepts_keyword(unique, "cond") and not accepts_keyword(unique, "mask")
    assert accepts_keyword(UniqueAugment(TimeMask(), lambda a, c: c.sum((2, 3))), "lengths")
    # Containers: any child.
    assert accepts_keyword(Compose([ImageAugment(), TimeMask()]), "mask")
    assert not accepts_keyword(Compose([ImageAugment(), Identity()]), "mask")
    assert accepts_keyword(RandomChoice([Identity(), RelevanceMask()]), "relevance")
    assert accepts_keyword(RandomApply(Compose([unique])), "cond")
    assert not accepts_keyword(RandomApply(GaussianNoise()), "cond")
    # Plain callables: their signature (**kwargs accepts everything).
    assert not accepts_keyword(lambda x: x, "mask")
    assert accepts_keyword(lambda x, mask=None: x, "mask")
    assert accepts_keyword(lambda x, **kw: x, "cond")

    class Callable_:
        def __call__(self, x, *, generator=None):
            return x

    assert accepts_keyword(Callable_(), "generator") and not accepts_keyword(Callable_(), "cond")
    assert accepts_keyword(Compose([Callable_(), lambda x, cond=None: x]), "cond")


def test_unique_augment_rejects_batch_mixing_bases():
    with pytest.raises(ValueError, match="mixes samples of the batch"):
        UniqueAugment(Mixup(), lambda a, c: c.sum(-1))
    with pytest.raises(ValueError, match="mixes samples of the batch"):
        UniqueAugment(RandomChoice([GaussianNoise(), Mixup()]), lambda a, c: c.sum(-1))


def test_floor_fraction_is_exact_for_decimal_probabilities():
    assert floor_fraction(100, 0.29) == 29 and floor_fraction(100, 0.07, ceil=True) == 7
    assert floor_fraction(3, 1 / 3) == 1 and floor_fraction(10, 0.25) == 2 and floor_fraction(10, 0.25, ceil=True) == 3
    n = torch.tensor([100, 0, 7, 50])
    assert floor_fraction(n, 0.29).tolist() == [29, 0, 2, 14]


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
    with seeded_global_rng(gen(10), "cpu"):
        c = torch.rand(5)
    assert not torch.equal(a, c)  # the seed comes from the generator


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


@pytest.mark.skipif(not (torch.backends.mps.is_available()), reason="needs an MPS device")
def test_seeded_global_rng_forks_the_mps_generator():
    torch.mps.manual_seed(5)
    before = torch.mps.get_rng_state()
    with seeded_global_rng(gen(9), "mps"):
        a = torch.rand(5, device="mps")
    assert torch.equal(torch.mps.get_rng_state(), before)
    with seeded_global_rng(gen(9), "mps"):
        b = torch.rand(5, device="mps")
    assert torch.equal(a.cpu(), b.cpu())
