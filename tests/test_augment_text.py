"""augment.text: string augmentations and token-id augmentations."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from augment import TokenDeletion, TokenMask, WordDeletion, WordMask, WordSwap

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PAD, CLS, SEP, MASK = 0, 101, 102, 103


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def corpus(n: int = 400, words: int = 12) -> list[str]:
    return [" ".join(f"w{i}_{j}" for j in range(words)) for i in range(n)]


def token_batch(b: int = 256, length: int = 32, seed: int = 0, left: bool = False) -> torch.Tensor:
    """[CLS] content [SEP] then padding (or padding first when ``left``), content ids in [1000, 2000)."""
    g = gen(seed)
    n = torch.randint(0, length - 1, (b,), generator=g)
    ids = torch.full((b, length), PAD)
    for i, k in enumerate(n.tolist()):
        row = [CLS] + torch.randint(1000, 2000, (k,), generator=g).tolist() + [SEP]
        if left:
            ids[i, length - len(row) :] = torch.tensor(row)
        else:
            ids[i, : len(row)] = torch.tensor(row)
    return ids


# --------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aug", [WordDeletion(0.3), WordSwap(2), WordMask(0.3)], ids=repr)
def test_string_contract(aug):
    texts = corpus(20)
    before = list(texts)
    out = aug(texts, generator=gen(0))
    assert texts == before and isinstance(out, list) and len(out) == len(texts)
    assert out == aug(texts, generator=gen(0)) == aug(texts, generator=0)
    assert out != aug(texts, generator=gen(1))
    assert out != texts


def test_word_deletion_rate_and_never_empty():
    texts = corpus(400)
    out = WordDeletion(0.25)(texts, generator=gen(0))
    kept = sum(len(o.split()) for o in out) / sum(len(t.split()) for t in texts)
    assert abs(kept - 0.75) < 0.02
    for o, t in zip(out, texts):  # kept words stay in order
        words = t.split()
        positions = [words.index(w) for w in o.split()]
        assert positions == sorted(positions)
    assert all(len(o.split()) == 1 for o in WordDeletion(1.0)(texts[:10], generator=gen(0)))
    assert WordDeletion(0.5)(["", "one"], generator=gen(0))[0] == ""


def test_word_swap_preserves_words():
    texts = corpus(200)
    out = WordSwap(n_swaps=1)(texts, generator=gen(0))
    for o, t in zip(out, texts):
        a, b = o.split(), t.split()
        assert Counter(a) == Counter(b)
        assert sum(x != y for x, y in zip(a, b)) == 2  # exactly one pair of positions swapped
    assert WordSwap(3)(["single"], generator=gen(0)) == ["single"]


def test_word_mask_rate_and_positions():
    texts = corpus(400)
    out = WordMask(0.2, mask_word="<m>")(texts, generator=gen(0))
    total = masked = 0
    for o, t in zip(out, texts):
        for a, b in zip(o.split(), t.split()):
            total += 1
            if a == "<m>":
                masked += 1
            else:
                assert a == b
    assert abs(masked / total - 0.2) < 0.02


def test_string_validation():
    with pytest.raises(ValueError, match=r"texts has an empty batch \(B=0\)"):
        WordMask()([])
    with pytest.raises(ValueError, match="texts must be a list of strings, got str"):
        WordMask()("a single string")
    with pytest.raises(ValueError, match=r"texts\[1\] must be a str"):
        WordMask()(["ok", 3])
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 2"):
        WordDeletion(2)
    with pytest.raises(ValueError, match="mask_word must be a single non-empty word"):
        WordMask(mask_word="two words")
    with pytest.raises(ValueError, match="n_swaps must be >= 0"):
        WordSwap(-1)


# --------------------------------------------------------------------------------------------
# Token ids
# --------------------------------------------------------------------------------------------


def test_token_mask_never_touches_padding_or_specials():
    ids = token_batch()
    ids0 = ids.clone()
    out = TokenMask(mask_id=MASK, pad_id=PAD, special_ids=[CLS, SEP], p=0.3)(ids, generator=gen(0))
    assert torch.equal(ids, ids0)
    assert out.shape == ids.shape and out.dtype == ids.dtype
    protected = (ids == PAD) | (ids == CLS) | (ids == SEP)
    assert torch.equal(out[protected], ids[protected])
    content = ~protected
    changed = out != ids
    assert bool((out[changed] == MASK).all())
    assert abs(changed[content].float().mean().item() - 0.3) < 0.02
    again = TokenMask(mask_id=MASK, pad_id=PAD, special_ids=[CLS, SEP], p=0.3)(ids, generator=gen(0))
    assert torch.equal(out, again)


def test_token_mask_respects_explicit_mask():
    ids = torch.randint(1000, 2000, (64, 10), generator=gen(1))
    valid = torch.arange(10).unsqueeze(0) < 6
    out = TokenMask(mask_id=MASK, pad_id=PAD, p=1.0)(ids, mask=valid.expand(64, 10))
    assert torch.equal(out[:, 6:], ids[:, 6:])
    assert bool((out[:, :6] == MASK).all())


@pytest.mark.parametrize("left", [False, True])
def test_token_deletion_keeps_specials_order_and_padding(left):
    ids = token_batch(seed=2, left=left)
    ids0 = ids.clone()
    aug = TokenDeletion(pad_id=PAD, special_ids=[CLS, SEP], p=0.3, padding_side="left" if left else "right")
    out = aug(ids, generator=gen(0))
    assert torch.equal(ids, ids0) and out.shape == ids.shape and out.dtype == ids.dtype
    n_before = n_after = 0
    for a, b in zip(out.tolist(), ids.tolist()):
        kept = [t for t in a if t != PAD]
        orig = [t for t in b if t != PAD]
        # Packed: no padding inside the kept tokens, padding only on the chosen side.
        k = len(kept)
        packed = a[len(a) - k :] if left else a[:k]
        assert packed == kept
        # Specials kept at the ends; the content is an ordered subsequence of the original.
        assert kept[0] == CLS and kept[-1] == SEP
        it = iter(orig)
        assert all(t in it for t in kept)
        n_before += len(orig) - 2
        n_after += len(kept) - 2
    assert abs(n_after / n_before - 0.7) < 0.03
    assert torch.equal(out, aug(ids, generator=gen(0)))


def test_token_deletion_original_padding_stays_padding():
    ids = token_batch(seed=3)
    out = TokenDeletion(pad_id=PAD, special_ids=[CLS, SEP], p=0.5)(ids, generator=gen(0))
    assert bool((out[ids == PAD] == PAD).all())


def test_token_validation():
    with pytest.raises(ValueError, match=r"tokens must be \[B, L\] token ids, got shape \(5,\)"):
        TokenMask(MASK, PAD)(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens must be an integer tensor"):
        TokenMask(MASK, PAD)(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"tokens has an empty batch \(B=0\)"):
        TokenDeletion(PAD)(torch.zeros(0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        TokenMask(MASK, PAD, p=1.5)
    with pytest.raises(ValueError, match="padding_side must be"):
        TokenDeletion(PAD, padding_side="middle")
    with pytest.raises(ValueError, match=r"special_ids\[1\] must be an integer"):
        TokenMask(MASK, PAD, special_ids=[1, 2.5])
    with pytest.raises(ValueError, match="mask must be a bool"):
        TokenMask(MASK, PAD)(torch.ones(2, 5, dtype=torch.long), mask=torch.ones(2, 4, dtype=torch.bool))


@cuda
def test_token_augs_on_cuda():
    ids = token_batch().cuda()
    for aug in (TokenMask(MASK, PAD, [CLS, SEP], 0.3), TokenDeletion(PAD, [CLS, SEP], 0.3)):
        out = aug(ids, generator=gen(0))
        assert out.device == ids.device and torch.equal(out, aug(ids, generator=gen(0)))
