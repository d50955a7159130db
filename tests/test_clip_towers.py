"""factorcl.clip towers: CLIP's loss as the shared term, normalisation, locking, checkpointing, the scorer."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import factorcl
from clip_helpers import batch_of, tiny
from factorcl.clip import (
    ClipLogitCritic,
    ImageCaptionDataset,
    ImageTextScorer,
    ImageTower,
    TextTower,
    build_clip_factorcl,
    make_loader,
)


@pytest.fixture(scope="module")
def demo(clip_demo):
    return clip_demo(32)


def test_image_tower_applies_clips_normalisation_and_text_tower_encodes_tokens(demo):
    b = tiny()
    batch = batch_of(b, demo)
    mean = torch.tensor(b.mean).view(1, 3, 1, 1)
    std = torch.tensor(b.std).view(1, 3, 1, 1)
    ref = b.model.encode_image((batch["x2"] - mean) / std)
    torch.testing.assert_close(ImageTower(b.model, b.mean, b.std)(batch["x2"]), ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(TextTower(b.model)(batch["x1"]), b.model.encode_text(batch["x1"]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="integer"):
        TextTower(b.model)(batch["x1"].float())
    # The towers are not duplicated: one copy of every CLIP parameter in the FactorCL model.
    model = build_clip_factorcl(b, method="simclr")
    n_clip = sum(p.numel() for p in b.model.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_clip


@pytest.mark.parametrize("method", ["simclr", "factorcl-ssl"])
def test_shared_keep_with_clips_critic_is_exactly_log_b_minus_the_clip_loss(demo, method):
    b = tiny()
    batch = batch_of(b, demo, n=8)
    with torch.no_grad():
        b.model.logit_scale.fill_(math.log(20.0))  # away from the init, so a wrong scale would show
    model = build_clip_factorcl(b, method=method)
    assert isinstance(model.heads["s1" if method == "factorcl-ssl" else "z1"], nn.Identity)
    assert isinstance(model.estimators["shared_keep"].critic, ClipLogitCritic)
    torch.manual_seed(0)
    loss, metrics = model.loss(batch)
    image = F.normalize(ImageTower(b.model, b.mean, b.std)(batch["x2"]), dim=-1)
    text = F.normalize(b.model.encode_text(batch["x1"]), dim=-1)
    ref = open_clip.ClipLoss()(image, text, b.model.logit_scale.exp())
    assert abs(math.log(8) - float(metrics["shared_keep"]) - float(ref.detach())) < 1e-5
    if method == "simclr":  # CLIP-loss fine-tuning: the same loss, so the same gradients
        torch.testing.assert_close(loss, ref - math.log(8), rtol=0, atol=1e-5)
        grads = torch.autograd.grad(loss, [b.model.logit_scale, b.model.visual.proj, b.model.text_projection])
        ref_grads = torch.autograd.grad(ref, [b.model.logit_scale, b.model.visual.proj, b.model.text_projection])
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_learned_shared_critic_keeps_factorcls_heads(demo):
    b = tiny()
    model = build_clip_factorcl(b, method="factorcl-ssl", shared_critic="learned", embed_dim=16)
    assert not isinstance(model.heads["s1"], nn.Identity)
    reps = model.embed(*(batch_of(b, demo, 4)[k] for k in ("x1", "x2")))
    assert {k: tuple(v.shape) for k, v in reps.items()} == {k: (4, 16) for k in ("s1", "s2", "u1", "u2")}
    with pytest.raises(ValueError, match="embed_dim must be"):
        build_clip_factorcl(tiny(), shared_critic="clip", embed_dim=16)


def _snapshot(clip):
    return {k: v.detach().clone() for k, v in clip.named_parameters()}


def test_locked_towers_stay_bit_identical_through_training(demo):
    b = tiny()
    model = build_clip_factorcl(b, method="factorcl-ssl", lock_image=True, lock_text=True, unlocked_blocks=1)
    trainable = {k for k, p in b.model.named_parameters() if p.requires_grad}
    # The last block of each tower, its final norm and projection, and CLIP's temperature.
    assert trainable == {
        k
        for k, _ in b.model.named_parameters()
        if k.startswith(("visual.transformer.resblocks.1.", "visual.ln_post.", "transformer.resblocks.1.", "ln_final."))
        or k in ("visual.proj", "text_projection", "logit_scale")
    }
    before = _snapshot(b.model)
    ds = ImageCaptionDataset(demo, b.preprocess_cfg)
    factorcl.fit(
        model,
        make_loader(ds, b.tokenizer, 8),
        epochs=1,
        lr=1e-2,
        weight_decay=0.1,
        progress=False,
        device="cpu",
        stop_after=3,
    )
    after = _snapshot(b.model)
    for k, p in b.model.named_parameters():
        if k in trainable:
            continue
        assert p.grad is None and torch.equal(before[k], after[k]), k
    assert all(not torch.equal(before[k], after[k]) for k in trainable)


def test_locking_one_tower_leaves_the_other_trainable(demo):
    b = tiny()
    model = build_clip_factorcl(b, method="simclr", lock_text=True)
    before = _snapshot(b.model)
    ds = ImageCaptionDataset(demo, b.preprocess_cfg)
    factorcl.fit(model, make_loader(ds, b.tokenizer, 8), epochs=1, lr=1e-2, progress=False, device="cpu", stop_after=2)
    after = _snapshot(b.model)
    text = [k for k in before if not k.startswith("visual.") and k != "logit_scale"]
    assert text and all(torch.equal(before[k], after[k]) for k in text)
    assert not torch.equal(before["visual.conv1.weight"], after["visual.conv1.weight"])


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(demo):
    batch = batch_of(tiny(), demo, 8)
    grads = []
    for ckpt in (False, True):
        b = tiny(seed=0)
        model = build_clip_factorcl(b, method="simclr", grad_checkpointing=ckpt)
        assert b.model.transformer.grad_checkpointing is ckpt
        loss, _ = model.loss(batch)
        loss.backward()
        grads.append((loss.detach(), b.model.visual.conv1.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_scorer_uses_the_current_towers_without_gradients_in_eval_mode(demo):
    b = tiny()
    batch = batch_of(b, demo, 4)
    text, image = TextTower(b.model), ImageTower(b.model, b.mean, b.std)
    scorer = ImageTextScorer(text, image)
    cands = torch.stack([batch["x2"], batch["x2"].flip(-1), torch.rand_like(batch["x2"])], dim=1)
    b.model.train()
    scores = scorer(batch["x1"], cands)
    assert scores.shape == (4, 3) and not scores.requires_grad and b.model.training
    ref = F.cosine_similarity(image(batch["x2"]), text(batch["x1"]), dim=-1)
    torch.testing.assert_close(scores[:, 0], ref, rtol=0, atol=1e-5)
    # unique-scored views: the kept candidate is the best-scoring one of K.
    model = build_clip_factorcl(b, method="factorcl-ssl", image_aug="unique-scored", num_candidates=3)
    out, s, chosen = model.augment2.augment_with_scores(batch["x2"], cond=batch["x1"])
    assert out.shape == batch["x2"].shape and torch.equal(chosen, s.argmax(1))
