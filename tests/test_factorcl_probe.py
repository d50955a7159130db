import pytest
import torch

import factorcl
from factorcl.probe import macro_f1, representation_parts
from factorcl_helpers import small_data, small_model


def blobs(n, seed, classes=3, dim=10):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 4
    y = torch.randint(0, classes, (n,), generator=gen)
    return centres[y] + torch.randn(n, dim, generator=gen), y


def test_probe_recovers_a_linearly_separable_labelling():
    xtr, ytr = blobs(600, 0)
    xte, yte = blobs(300, 1)
    result = factorcl.linear_probe(xtr, ytr, xte, yte)
    assert result.accuracy > 0.95 and result.macro_f1 > 0.95
    assert result.num_classes == 3 and result.l2 in factorcl.probe.DEFAULT_L2_GRID


def test_probe_is_at_chance_on_shuffled_labels():
    """Labels shuffled in both splits carry no information about the features: accuracy ~ 1/2."""
    xtr, ytr = blobs(2000, 0, classes=2)
    xte, yte = blobs(2000, 1, classes=2)
    gen = torch.Generator().manual_seed(3)
    result = factorcl.linear_probe(
        xtr, ytr[torch.randperm(2000, generator=gen)], xte, yte[torch.randperm(2000, generator=gen)]
    )
    assert abs(result.accuracy - 0.5) < 0.05  # 4.5 standard errors at n=2000


def test_macro_f1_known_value():
    pred, target = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 2])
    # class 0: P=1/2 R=1 F1=2/3; class 1: P=1 R=2/3 F1=0.8; class 2: 1
    assert macro_f1(pred, target) == pytest.approx((2 / 3 + 0.8 + 1) / 3)


def test_probe_bad_input():
    x, y = blobs(20, 0)
    with pytest.raises(ValueError, match="train_features must be a"):
        factorcl.linear_probe(x[0], y, x, y)
    with pytest.raises(ValueError, match="one label per row"):
        factorcl.linear_probe(x, y[:5], x, y)
    with pytest.raises(ValueError, match="test_features has 3 columns"):
        factorcl.linear_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="contains NaN"):
        factorcl.linear_probe(x * float("nan"), y, x, y)
    with pytest.raises(ValueError, match="is empty"):
        factorcl.linear_probe(x[:0], y[:0], x, y)


def test_extract_features_and_ablation():
    data = small_data()
    model = small_model("factorcl-ssl")
    feats, labels = factorcl.extract_features(model, data.split("test").loader(50))
    n = len(data.indices["test"])
    assert set(feats) == {"s1", "s2", "u1", "u2"} and feats["s1"].shape == (n, 8) and labels.shape == (n,)
    parts = representation_parts(feats)
    assert set(parts) == {"all", "S", "U1", "U2"} and parts["all"].shape == (n, 32)
    train_feats, train_labels = factorcl.extract_features(model, data.split("train").loader(100))
    results = factorcl.probe_ablation(train_feats, train_labels, feats, labels)
    assert set(results) == {"all", "S", "U1", "U2"}
    assert all(0.0 <= r.accuracy <= 1.0 for r in results.values())
    assert model.training, "extract_features restores train mode"
    with pytest.raises(ValueError, match="no batches"):
        factorcl.extract_features(model, [])


def test_probe_chooses_l2_on_explicit_validation_features():
    xtr, ytr = blobs(300, 0)
    xva, yva = blobs(200, 2)
    xte, yte = blobs(300, 1)
    result = factorcl.linear_probe(xtr, ytr, xte, yte, val_features=xva, val_labels=yva, l2_grid=(1.0, 1e-3))
    assert result.val_accuracy is not None and result.val_accuracy > 0.9 and result.accuracy > 0.95
    # The chosen strength is the one with the better validation accuracy.
    scores = {
        l2: factorcl.linear_probe(xtr, ytr, xva, yva, val_fraction=0.0, l2_grid=(l2,)).accuracy for l2 in (1.0, 1e-3)
    }
    assert scores[result.l2] == max(scores.values())
    with pytest.raises(ValueError, match="given together"):
        factorcl.linear_probe(xtr, ytr, xte, yte, val_features=xva)


def test_extract_features_takes_an_encode_and_tuple_batches():
    """A custom ``encode`` sees each batch on the device; labels come from the batch; the mode is restored."""
    data = small_data()
    model = small_model("simclr")
    x1, x2, y = data.x1[:70], data.x2[:70], data.y[:70]
    batches = [(x1[i : i + 32], x2[i : i + 32], y[i : i + 32]) for i in range(0, 70, 32)]
    feats, labels = factorcl.extract_features(
        model, batches, encode=lambda m, b: {"z": m.encoder1(b[0]), "twice": 2 * m.encoder1(b[0])}, device="cpu"
    )
    model.eval()
    with torch.no_grad():
        expected = model.encoder1(x1)
    torch.testing.assert_close(feats["z"], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(feats["twice"], 2 * expected, rtol=0, atol=1e-6)
    assert torch.equal(labels, y) and feats["z"].device.type == "cpu"
    model.train()
    default, none = factorcl.extract_features(model, [(x1, x2)])
    assert none is None and set(default) == {"z1", "z2"} and model.training


@pytest.mark.parametrize("with_valid", [False, True])
def test_probe_parts_is_one_linear_probe_per_feature_set(with_valid):
    (xtr, ytr), (xte, yte), (xva, yva) = blobs(300, 0), blobs(200, 1), blobs(150, 2)
    sets = lambda x: {"all": x, "half": x[:, :5]}  # noqa: E731
    settings = dict(l2_grid=(1.0, 1e-3), max_iter=50, seed=1)
    valid = dict(valid=sets(xva), valid_labels=yva) if with_valid else {}
    results = factorcl.probe.probe_parts(sets(xtr), ytr, sets(xte), yte, **valid, **settings)
    assert list(results) == ["all", "half"]
    for name, r in results.items():
        extra = dict(val_features=sets(xva)[name], val_labels=yva) if with_valid else {}
        assert r == factorcl.linear_probe(sets(xtr)[name], ytr, sets(xte)[name], yte, **extra, **settings), name
    with pytest.raises(ValueError, match="needs labels"):
        factorcl.probe.probe_parts(sets(xtr), None, sets(xte), yte)
    with pytest.raises(ValueError, match="same feature sets"):
        factorcl.probe.probe_parts(sets(xtr), ytr, sets(xte), yte, valid={"all": xva}, valid_labels=yva)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_probe_parts_runs_on_the_device_it_is_given():
    (xtr, ytr), (xte, yte) = blobs(300, 0), blobs(200, 1)
    cpu = factorcl.probe.probe_parts({"all": xtr}, ytr, {"all": xte}, yte)["all"]
    gpu = factorcl.probe.probe_parts({"all": xtr}, ytr, {"all": xte}, yte, device="cuda")["all"]
    assert gpu.l2 == cpu.l2 and abs(gpu.accuracy - cpu.accuracy) <= 0.01
