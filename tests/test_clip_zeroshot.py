"""factorcl.clip.zeroshot: retrieval recall and zero-shot accuracy on hand-computed cases, and the prompt-ensemble
classifier against a hand computation and open_clip's own builder on the tiny random-init CLIP."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip import zero_shot_metadata

import factorcl.clip.zeroshot as zs
from clip_helpers import tiny
from factorcl.clip import ImageCaptionDataset, clip_features, make_loader
from factorcl.clip.zeroshot import (
    default_templates,
    read_templates,
    retrieval_metrics,
    zero_shot_accuracy,
    zero_shot_and_retrieval,
    zero_shot_classifier,
)


def unit(*degrees: float) -> torch.Tensor:
    """2-D unit vectors at the given angles, so that cos(a, b) = cos(angle difference)."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], 1).float()


@pytest.fixture(scope="module")
def bundle():
    return tiny(seed=0, name="clip-test-zeroshot")


# ---- retrieval ----------------------------------------------------------------------------------------------------


def test_retrieval_hand_computed_asymmetric_case():
    # Images at 0, 90, 180 degrees; captions at 30, 60, 20 degrees. cos(angle difference):
    #            t0 (30)   t1 (60)   t2 (20)
    #   i0 (0)    .866      .500      .940     true t0: t2 is higher        -> rank 1
    #   i1 (90)   .500      .866      .342     true t1: best                -> rank 0
    #   i2 (180) -.866     -.500     -.940     true t2: t0 and t1 higher    -> rank 2
    # image->text ranks [1, 0, 2]: R@1 = 1/3, R@2 = 2/3, R@5 (capped at N = 3) = 1.
    # text->image (columns): t0 best i0 (rank 0), t1 best i1 (rank 0), t2: i0 .940 and i1 .342 beat
    # i2 -.940 (rank 2). Ranks [0, 0, 2]: R@1 = 2/3, R@2 = 2/3, R@5 = 1.
    # The norms differ per row to check that the features are normalised inside.
    images = unit(0, 90, 180) * torch.tensor([[2.0], [0.5], [3.0]])
    texts = unit(30, 60, 20) * torch.tensor([[0.1], [7.0], [1.0]])
    got = retrieval_metrics(images, texts, ks=(1, 2, 5))
    expected = {
        "image_to_text_R@1": 1 / 3,
        "image_to_text_R@2": 2 / 3,
        "image_to_text_R@5": 1.0,
        "text_to_image_R@1": 2 / 3,
        "text_to_image_R@2": 2 / 3,
        "text_to_image_R@5": 1.0,
    }
    assert list(got) == list(expected)
    assert got == pytest.approx(expected, abs=1e-12)


def test_retrieval_default_keys_and_perfect_pairs():
    feats = unit(0, 45, 90, 135, 180, 225, 270, 315)
    got = retrieval_metrics(feats, feats)
    assert list(got) == [f"{d}_R@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]
    assert all(v == 1.0 for v in got.values())


def reference_recall(sims: torch.Tensor, k: int) -> float:
    """Recall@k by sorting each row (no ties in random continuous data): is the diagonal among the top k?"""
    order = sims.argsort(dim=1, descending=True)[:, :k]
    return float(sum(i in order[i].tolist() for i in range(sims.shape[0])) / sims.shape[0])


@pytest.mark.parametrize("chunk_elements", [1 << 24, 7, 1])
@pytest.mark.parametrize("n,d", [(13, 4), (40, 8)])
def test_retrieval_matches_sorting_reference_in_any_chunking(monkeypatch, gen, chunk_elements, n, d):
    monkeypatch.setattr(zs, "_CHUNK_ELEMENTS", chunk_elements)
    images, texts = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    images = images + 0.8 * texts  # correlated so that recalls sit between 0 and 1
    sims = F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T
    got = retrieval_metrics(images, texts, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert got[f"image_to_text_R@{k}"] == pytest.approx(reference_recall(sims, k))
        assert got[f"text_to_image_R@{k}"] == pytest.approx(reference_recall(sims.T, k))


def test_retrieval_ties_rules():
    # Captions 0 and 1 are identical, so images 0 (0 deg) and 1 (10 deg) each score them the same and
    # above caption 2. Optimistic: no caption scores strictly higher than the true one, 3 hits at 1.
    # Pessimistic: the twin caption ties, so images 0 and 1 have rank 1 and miss at 1; image 2 hits.
    images = unit(0, 10, 180)
    texts = unit(0, 0, 180)
    opt = retrieval_metrics(images, texts, ks=(1,))
    pes = retrieval_metrics(images, texts, ks=(1,), ties="pessimistic")
    assert opt["image_to_text_R@1"] == 1.0
    assert pes["image_to_text_R@1"] == pytest.approx(1 / 3)  # only image 2
    # A collapsed model (all features equal) is perfect under the optimistic rule, hopeless under the other.
    same = torch.ones(5, 3)
    assert set(retrieval_metrics(same, same, ks=(1,)).values()) == {1.0}
    collapsed = retrieval_metrics(same, same, ks=(1, 5), ties="pessimistic")
    assert collapsed["image_to_text_R@1"] == 0.0 and collapsed["image_to_text_R@5"] == 1.0


def test_retrieval_errors():
    with pytest.raises(ValueError, match="paired"):
        retrieval_metrics(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="text_features holds NaN"):
        retrieval_metrics(torch.randn(3, 2), torch.tensor([[1.0, 0.0], [float("nan"), 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="non-empty"):
        retrieval_metrics(torch.zeros(0, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="positive integers"):
        retrieval_metrics(torch.randn(3, 2), torch.randn(3, 2), ks=(0,))
    with pytest.raises(ValueError, match="ties must be"):
        retrieval_metrics(torch.randn(3, 2), torch.randn(3, 2), ties="random")


# ---- zero-shot accuracy -------------------------------------------------------------------------------------------


def test_zero_shot_accuracy_hand_computed():
    # Classes at 0, 90, 180 degrees (columns of the [2, 3] classifier). Angle to each class:
    #   x0 = 10,  label 0: c0 10, c1 80,  c2 170 -> order c0 c1 c2, true c0 rank 0
    #   x1 = 100, label 2: c0 100, c1 10, c2 80  -> order c1 c2 c0, true c2 rank 1
    #   x2 = 200, label 1: c0 160, c1 110, c2 20 -> order c2 c1 c0, true c1 rank 1
    #   x3 = 300, label 1: c0 60, c1 150, c2 120 -> order c0 c2 c1, true c1 rank 2
    # top1 = 1/4, top2 = 3/4, top3 = 1; top5 is capped at C = 3 -> 1.
    classifier = unit(0, 90, 180).T
    images = unit(10, 100, 200, 300) * 4.0
    labels = torch.tensor([0, 2, 1, 1])
    got = zero_shot_accuracy(images, classifier, labels, topk=(1, 2, 5))
    assert got == pytest.approx({"top1": 0.25, "top2": 0.75, "top5": 1.0}, abs=1e-12)
    assert list(zero_shot_accuracy(images, classifier, labels)) == ["top1", "top5"]


def test_zero_shot_accuracy_matches_topk_reference(gen):
    feats, classifier = torch.randn(50, 6, generator=gen), F.normalize(torch.randn(6, 10, generator=gen), dim=0)
    labels = torch.randint(0, 10, (50,), generator=gen)
    top = (feats @ classifier).topk(5, dim=1).indices
    got = zero_shot_accuracy(feats, classifier, labels, topk=(1, 3, 5))
    for k in (1, 3, 5):
        assert got[f"top{k}"] == pytest.approx(float((top[:, :k] == labels[:, None]).any(1).float().mean()))


def test_zero_shot_accuracy_errors():
    classifier = unit(0, 90, 180).T
    with pytest.raises(ValueError, match="label 3 is out of range for 3 classes"):
        zero_shot_accuracy(unit(0, 1), classifier, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"classifier must be \[D, C\] with D = 2"):
        zero_shot_accuracy(unit(0, 1), classifier.T, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2 integer class indices"):
        zero_shot_accuracy(unit(0, 1), classifier, torch.tensor([0, 1, 2]))


# ---- templates ----------------------------------------------------------------------------------------------------


def test_read_templates_skips_comments_and_blanks(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("# CLIP prompts\n\na photo of a {}.\n  art of the {c}.  \n# done\n", encoding="utf-8")
    assert read_templates(path) == ["a photo of a {}.", "art of the {c}."]


def test_read_templates_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("a photo of a {}.\n# comment\na photo of a dog.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt, line 3: template 'a photo of a dog\.' has no placeholder"):
        read_templates(path)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty\.txt holds no templates"):
        read_templates(empty)
    with pytest.raises(FileNotFoundError, match=r"templates file not found: .*missing\.txt"):
        read_templates(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    "kind,attr,count", [("openai", "OPENAI_IMAGENET_TEMPLATES", 80), ("simple", "SIMPLE_IMAGENET_TEMPLATES", 7)]
)
def test_default_templates_are_open_clips(kind, attr, count):
    templates = default_templates(kind)
    originals = getattr(zero_shot_metadata, attr)
    assert len(templates) == count
    assert [t.format("golden retriever") for t in templates] == [t("golden retriever") for t in originals]


def test_default_templates_unknown_kind():
    with pytest.raises(ValueError, match="choose one of openai, simple"):
        default_templates("imagenet")


# ---- the classifier on the tiny CLIP ------------------------------------------------------------------------------

CLASSES = ["cat", "dog", "red car"]
TEMPLATES = ["a photo of a {}.", lambda c: f"art of the {c}.", "itap of a {c}."]  # both forms, mixed


def hand_classifier(model, tokenizer, classnames, prompts_of) -> torch.Tensor:
    """One prompt per forward: normalise each embedding, average over templates, normalise again; columns = classes."""
    columns = []
    with torch.no_grad():
        for c in classnames:
            embs = torch.cat([F.normalize(model.encode_text(tokenizer([p])), dim=-1) for p in prompts_of(c)])
            columns.append(F.normalize(embs.mean(0), dim=0))
    return torch.stack(columns, 1)


@pytest.mark.parametrize("batch_size", [256, 2, 1])
def test_classifier_equals_hand_computation(bundle, batch_size):
    model, tokenizer = bundle.model, bundle.tokenizer
    model.train()  # the classifier must use eval mode and give the caller's mode back
    got = zero_shot_classifier(model, tokenizer, CLASSES, TEMPLATES, device="cpu", batch_size=batch_size)
    assert model.training
    model.eval()
    expected = hand_classifier(
        model, tokenizer, CLASSES, lambda c: [f"a photo of a {c}.", f"art of the {c}.", f"itap of a {c}."]
    )
    assert got.shape == (bundle.embed_dim, len(CLASSES)) and got.dtype == torch.float32
    assert not got.requires_grad
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.norm(dim=0), torch.ones(len(CLASSES)))


def test_classifier_matches_open_clip_builder(bundle):
    model, tokenizer = bundle.model.eval(), bundle.tokenizer
    templates = default_templates("simple")
    ours = zero_shot_classifier(model, tokenizer, CLASSES, templates)
    theirs = open_clip.build_zero_shot_classifier(
        model, tokenizer, CLASSES, zero_shot_metadata.SIMPLE_IMAGENET_TEMPLATES, device="cpu"
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_template_forms_give_the_same_classifier(bundle):
    forms = (["a {} in a video game."], ["a {c} in a video game."], [lambda c: f"a {c} in a video game."])
    first, *rest = (zero_shot_classifier(bundle.model, bundle.tokenizer, CLASSES, t) for t in forms)
    for other in rest:
        torch.testing.assert_close(other, first, rtol=0, atol=0)


def test_classifier_columns_follow_classnames(bundle):
    # Images that sit exactly on a class's weights are classified as that class: column c is classnames[c].
    classifier = zero_shot_classifier(bundle.model, bundle.tokenizer, CLASSES, TEMPLATES)
    labels = torch.tensor([2, 0, 1, 2, 1])
    assert zero_shot_accuracy(classifier.T[labels], classifier, labels, topk=(1,)) == {"top1": 1.0}


@pytest.mark.parametrize(
    "classnames,templates,message",
    [
        ([], ["a {}."], "classnames is empty"),
        ("cat", ["a {}."], "list of strings"),
        (["cat", "cat"], ["a {}."], "'cat' appears twice"),
        (["cat", " "], ["a {}."], "non-empty string"),
        (["cat"], [], "templates is empty"),
        (["cat"], ["a photo."], "no placeholder"),
        (["cat"], [3], "callable"),
    ],
)
def test_classifier_input_errors(bundle, classnames, templates, message):
    with pytest.raises(ValueError, match=message):
        zero_shot_classifier(bundle.model, bundle.tokenizer, classnames, templates)


# ---- end to end on extracted features -----------------------------------------------------------------------------


def test_zero_shot_and_retrieval_on_clip_features(bundle, clip_demo):
    ds = ImageCaptionDataset(clip_demo(16), bundle.preprocess_cfg)
    feats, labels = clip_features(bundle, make_loader(ds, bundle.tokenizer, 8, shuffle=False), progress=False)
    templates = default_templates("simple")
    got = zero_shot_and_retrieval(bundle, None, feats["image"], feats["text"], labels, ds.classes, templates)
    classifier = zero_shot_classifier(bundle.model, bundle.tokenizer, ds.classes, templates)
    assert got["zero_shot"] == zero_shot_accuracy(feats["image"], classifier, labels)
    assert got["retrieval"] == retrieval_metrics(feats["image"], feats["text"])
    assert all(0.0 <= v <= 1.0 for part in got.values() for v in part.values())
    # Without class names (or labels) there is no zero-shot part, only retrieval.
    assert zero_shot_and_retrieval(bundle, None, feats["image"], feats["text"], labels)["zero_shot"] is None
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        zero_shot_and_retrieval(bundle.model, None, feats["image"], feats["text"], labels, ds.classes)
