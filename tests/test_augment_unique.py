"""augment.unique: UniqueAugment (K candidates scored against x1) and RelevanceMask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from augment import (
    Compose,
    FeatureDropout,
    GaussianNoise,
    Identity,
    ImageAugment,
    RandomChoice,
    RelevanceMask,
    TimeMask,
    UniqueAugment,
    pair_scorer,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
K_REL = 4  # x1 refers to the first K_REL dimensions of x2


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pair(b: int = 1024, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x2 = torch.randn(b, d, generator=gen(seed))
    return x2[:, :K_REL].clone(), x2


def distance_scorer(x1: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    """Known cross-modal score: how well a candidate still contains what x1 refers to."""
    return -((cands[..., :K_REL] - x1.unsqueeze(1)) ** 2).sum(-1)


def dot_scorer(x1: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    return (cands[..., :K_REL] * x1.unsqueeze(1)).sum(-1)


def mean_score(x1: torch.Tensor, x2_aug: torch.Tensor) -> float:
    return distance_scorer(x1, x2_aug.unsqueeze(1)).mean().item()


@pytest.mark.parametrize("base", [FeatureDropout(0.3), GaussianNoise(0.5)], ids=repr)
def test_unique_beats_base_on_known_scorer(base):
    x1, x2 = pair()
    base_score = mean_score(x1, base(x2, generator=gen(0)))
    uniq = UniqueAugment(base, distance_scorer, num_candidates=8)
    uniq_score = mean_score(x1, uniq(x2, cond=x1, generator=gen(0)))
    assert uniq_score > base_score + 0.5 * abs(base_score)


def test_best_mode_picks_argmax_and_is_vectorised():
    x1, x2 = pair(256)
    calls = []

    def scorer(a, c):
        calls.append(c.shape)
        return distance_scorer(a, c)

    uniq = UniqueAugment(FeatureDropout(0.3), scorer, num_candidates=5)
    out, scores, chosen = uniq.augment_with_scores(x2, cond=x1, generator=gen(0))
    assert calls == [(256, 5, 16)]  # one scorer call on all candidates
    assert torch.equal(chosen, scores.argmax(1))
    assert torch.allclose(distance_scorer(x1, out.unsqueeze(1))[:, 0], scores.max(1).values)
    assert torch.equal(out, uniq(x2, cond=x1, generator=gen(0)))


def test_contract_no_mutation_shape_dtype_reproducible():
    x1, x2 = pair(64)
    x2 = x2.double()
    x1 = x1.double()
    x2_0, x1_0 = x2.clone(), x1.clone()
    uniq = UniqueAugment(GaussianNoise(0.3), distance_scorer, num_candidates=4)
    y = uniq(x2, cond=x1, generator=gen(1))
    assert torch.equal(x2, x2_0) and torch.equal(x1, x1_0)
    assert y.shape == x2.shape and y.dtype == x2.dtype
    assert torch.equal(y, uniq(x2, cond=x1, generator=gen(1)))
    assert not torch.equal(y, uniq(x2, cond=x1, generator=gen(2)))


def test_threshold_mode_random_among_passing_and_fallback():
    x1, x2 = pair(2000)
    threshold = -0.5
    uniq = UniqueAugment(FeatureDropout(0.3), distance_scorer, num_candidates=8, mode="threshold", threshold=threshold)
    out, scores, chosen = uniq.augment_with_scores(x2, cond=x1, generator=gen(0))
    picked = scores.gather(1, chosen.unsqueeze(1))[:, 0]
    any_pass = (scores >= threshold).any(1)
    assert 0 < int(any_pass.sum()) < 2000
    assert bool((picked[any_pass] >= threshold).all())
    assert torch.equal(chosen[~any_pass], scores[~any_pass].argmax(1))
    # Not always the best: the choice is random among the passing candidates.
    several = (scores >= threshold).sum(1) >= 2
    not_best = (chosen != scores.argmax(1)) & several
    assert not_best.float().sum() > 0.2 * several.float().sum()
    assert mean_score(x1, out) > mean_score(x1, FeatureDropout(0.3)(x2, generator=gen(0)))


def test_single_candidate_equals_base():
    x1, x2 = pair(32)
    base = GaussianNoise(0.3)
    out = UniqueAugment(base, distance_scorer, num_candidates=1)(x2, cond=x1, generator=gen(3))
    assert torch.equal(out, base(x2, generator=gen(3)))


def test_sequences_with_padding_kwargs_repeated_per_candidate():
    b, t = 32, 8
    x2 = torch.randn(b, t, 6)
    lengths = torch.randint(1, t + 1, (b,), generator=gen(0))
    x1 = x2[:, :, :K_REL].sum(1)
    valid = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)

    def scorer(a, c):
        return -((c[..., :K_REL].sum(2) - a.unsqueeze(1)) ** 2).sum(-1)

    out = UniqueAugment(TimeMask(p=0.5), scorer, num_candidates=6)(x2, cond=x1, lengths=lengths, generator=gen(0))
    assert torch.equal(out[~valid], x2[~valid])
    assert out.shape == x2.shape


def test_images_with_clip_like_pair_scorer():
    """The CLIP use: image candidates scored against a text-side embedding with a pair scorer."""
    b = 8
    x2 = torch.zeros(b, 3, 32, 32)
    x2[:, 0, 8:24, 8:24] = 0.9  # a red square in the centre...
    x2[:, 2] = 0.6  # ...on blue
    x1 = torch.tensor([1.0, 0.0, 0.0]).repeat(b, 1)  # "a red square": the text embedding of "red"

    def red_centre(text, img):  # [N, 3], [N, 3, H, W] -> [N]: how red the centre still is
        centre = img[:, :, 12:20, 12:20].mean((2, 3))
        return F.cosine_similarity(centre, text, dim=-1)

    scorer = pair_scorer(red_centre)
    base = ImageAugment("standard")
    uniq = UniqueAugment(base, scorer, num_candidates=6)
    y = uniq(x2, cond=x1, generator=gen(0))
    assert y.shape == x2.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    s_base = red_centre(x1, base(x2, generator=gen(0))).mean()
    s_uniq = red_centre(x1, y).mean()
    assert s_uniq > s_base


def test_pair_scorer_matches_manual():
    x1 = torch.randn(3, 4)
    cands = torch.randn(3, 5, 4)
    s = pair_scorer(lambda a, c: (a * c).sum(-1))(x1, cands)
    assert s.shape == (3, 5)
    assert torch.allclose(s, torch.einsum("bd,bkd->bk", x1, cands))


def test_composes_with_unimodal_augmentations():
    x1, x2 = pair(128)
    aug = Compose([UniqueAugment(FeatureDropout(0.3), distance_scorer, 8), GaussianNoise(0.01)])
    y = aug(x2, cond=x1, generator=gen(0))
    assert y.shape == x2.shape
    mixed = RandomChoice([UniqueAugment(FeatureDropout(0.3), distance_scorer, 8), FeatureDropout(0.3)])
    assert mixed(x2, cond=x1, generator=gen(0)).shape == x2.shape


def test_validation():
    x1, x2 = pair(5)
    uniq = UniqueAugment(FeatureDropout(0.3), distance_scorer)
    with pytest.raises(ValueError, match=r"cond has batch 4 but x2 has batch 5"):
        uniq(x2, cond=x1[:4])
    with pytest.raises(ValueError, match="cond .* is required"):
        uniq(x2)
    with pytest.raises(ValueError, match=r"x2 has an empty batch \(B=0\)"):
        uniq(x2[:0], cond=x1[:0])
    with pytest.raises(ValueError, match=r"scorer must return \[B, K\] = \(5, 8\) scores, got shape \(5,\)"):
        UniqueAugment(FeatureDropout(0.3), lambda a, c: c.sum((1, 2)))(x2, cond=x1)
    with pytest.raises(ValueError, match="num_candidates must be >= 1"):
        UniqueAugment(FeatureDropout(0.3), distance_scorer, num_candidates=0)
    with pytest.raises(ValueError, match="mode must be"):
        UniqueAugment(FeatureDropout(0.3), distance_scorer, mode="worst")
    with pytest.raises(ValueError, match="threshold is required"):
        UniqueAugment(FeatureDropout(0.3), distance_scorer, mode="threshold")
    with pytest.raises(ValueError, match="scorer must be callable"):
        UniqueAugment(FeatureDropout(0.3), "clip")


# --------------------------------------------------------------------------------------------
# RelevanceMask
# --------------------------------------------------------------------------------------------


def test_relevance_mask_masks_only_low_relevance_dims():
    b, d = 512, 20
    x = torch.randn(b, d).abs() + 1.0
    relevance = torch.arange(d, dtype=torch.float32)  # dim j has relevance j
    aug = RelevanceMask(p=0.2, relevance=relevance, pool=0.5)
    y = aug(x, generator=gen(0))
    dropped = y == 0
    assert torch.equal(dropped.sum(1), torch.full((b,), 4))  # floor(0.2 * 20) per sample
    assert not bool(dropped[:, 10:].any())  # only the 10 least relevant dims are candidates
    freq = dropped[:, :10].float().mean(0)
    assert torch.allclose(freq, torch.full((10,), 0.4), atol=0.08)  # uniform within the pool
    exact = RelevanceMask(p=0.2, relevance=relevance, pool=0.2)(x, generator=gen(0))
    assert bool((exact[:, :4] == 0).all()) and bool((exact[:, 4:] != 0).all())


def test_relevance_mask_per_sample_relevance_at_call():
    b, d = 64, 10
    x = torch.ones(b, d)
    rel = torch.rand(b, d, generator=gen(1))
    y = RelevanceMask(p=0.3, pool=0.3)(x, relevance=rel, generator=gen(0))
    lowest = rel.argsort(1)[:, :3]
    assert bool((y.gather(1, lowest) == 0).all()) and int((y == 0).sum()) == b * 3


def test_relevance_mask_call_relevance_is_sliced_by_random_choice():
    b, d = 200, 8
    x = torch.ones(b, d)
    rel = torch.rand(b, d, generator=gen(2))
    y = RandomChoice([RelevanceMask(p=0.25, pool=0.25), Identity()])(x, relevance=rel, generator=gen(0))
    hit = (y == 0).any(1)
    assert 0 < int(hit.sum()) < b
    lowest = rel[hit].argsort(1)[:, :2]
    assert bool((y[hit].gather(1, lowest) == 0).all()) and int((y == 0).sum()) == 2 * int(hit.sum())


def test_relevance_mask_from_scorer_gradient_beats_dropout():
    x1, x2 = pair(1024)
    aug = RelevanceMask(p=0.25, scorer=dot_scorer, pool=0.5)
    y = aug(x2, cond=x1, generator=gen(0))
    assert not bool((y[:, :K_REL] != x2[:, :K_REL]).any())  # relevant dims are never masked
    assert int((y[:, K_REL:] == 0).sum()) == 1024 * 4
    drop = FeatureDropout(0.25)(x2, generator=gen(0))
    assert mean_score(x1, y) > mean_score(x1, drop)
    assert not y.requires_grad  # the scorer's gradient probe leaves no graph behind
    # With an input that requires grad: the relevance gradient is not accumulated into it, and the
    # output's gradient is that of the masking alone (1 on kept entries, 0 on masked ones).
    leaf = x2.clone().requires_grad_(True)
    y = aug(leaf, cond=x1, generator=gen(0))
    assert leaf.grad is None
    y.sum().backward()
    assert torch.equal(leaf.grad, (y != 0).float())


def test_relevance_mask_sequences_and_padding():
    b, t, d = 32, 7, 12
    x2 = torch.randn(b, t, d).abs() + 1.0
    lengths = torch.randint(0, t + 1, (b,), generator=gen(0))
    valid = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    x1 = x2[:, :, :K_REL].sum(1)

    def scorer(a, c):
        return (c[..., :K_REL].sum(2) * a.unsqueeze(1)).sum(-1)

    y = RelevanceMask(p=0.25, scorer=scorer)(x2, cond=x1, lengths=lengths, generator=gen(0))
    assert torch.equal(y[~valid], x2[~valid])
    hit = (y == 0) & valid.unsqueeze(-1)
    assert not bool(hit[..., :K_REL].any())
    assert torch.equal(hit.any(1).sum(1)[lengths > 0], torch.full((int((lengths > 0).sum()),), 3))


def test_relevance_mask_validation():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match="needs relevance="):
        RelevanceMask()(x)
    with pytest.raises(ValueError, match=r"relevance must be \[D\] = \(6,\) for x2 with D=6, got shape \(5,\)"):
        RelevanceMask(relevance=torch.ones(5))(x)
    with pytest.raises(ValueError, match=r"relevance passed to the call must be \[B, D\] = \(4, 6\), got shape \(6,\)"):
        RelevanceMask()(x, relevance=torch.ones(6))
    with pytest.raises(ValueError, match=r"relevance given at construction must be \[D\]"):
        RelevanceMask(relevance=torch.ones(4, 6))
    with pytest.raises(ValueError, match="cond .* is required"):
        RelevanceMask(scorer=dot_scorer)(x)
    with pytest.raises(ValueError, match=r"pool must be in \[0, 1\]"):
        RelevanceMask(pool=2.0)
    with pytest.raises(ValueError, match=r"x2 must be \[B, D\] or \[B, T, D\], got shape \(6,\)"):
        RelevanceMask(relevance=torch.ones(6))(torch.ones(6))


@cuda
def test_unique_on_cuda():
    x1, x2 = pair(64)
    x1, x2 = x1.cuda(), x2.cuda()
    uniq = UniqueAugment(FeatureDropout(0.3), distance_scorer, 4, mode="threshold", threshold=-1.0)
    y = uniq(x2, cond=x1, generator=gen(0))
    assert y.device == x2.device and torch.equal(y, uniq(x2, cond=x1, generator=gen(0)))
    r = RelevanceMask(0.25, scorer=dot_scorer)(x2, cond=x1, generator=gen(0))
    assert r.device == x2.device
