import pytest
import torch

import factorcl
from factorcl.data import make_labels, make_synthetic


def test_shapes_splits_and_reproducibility():
    a = make_synthetic(num_samples=1000, seed=3)
    b = make_synthetic(num_samples=1000, seed=3)
    assert a.x1.shape == (1000, 100) and a.x2.shape == (1000, 100)
    assert a.w_s.shape == (1000, 10) and a.w_1.shape == (1000, 6) and a.w_2.shape == (1000, 6)
    torch.testing.assert_close(a.x1, b.x1)
    sizes = {k: len(v) for k, v in a.indices.items()}
    assert sizes == {"train": 700, "val": 100, "test": 200}
    all_idx = torch.cat(list(a.indices.values()))
    assert len(torch.unique(all_idx)) == 1000
    assert not torch.equal(make_synthetic(num_samples=1000, seed=4).x1, a.x1)


def test_inputs_are_the_published_linear_maps_of_the_latents():
    d = make_synthetic(num_samples=500, seed=0)
    z1 = torch.cat([d.w_s, d.w_1], 1).double()
    sol = torch.linalg.lstsq(z1, d.x1.double()).solution
    torch.testing.assert_close(z1 @ sol, d.x1.double(), atol=1e-4, rtol=1e-4)
    assert 0.0 <= float(sol.min()) and float(sol.max()) <= 1.0  # U(0, 1) transform entries


def probe_acc(features, y, data):
    tr, te = data.indices["train"], data.indices["test"]
    return factorcl.linear_probe(features[tr], y[tr], features[te], y[te]).accuracy


@pytest.mark.parametrize("label", ["linear", "nonlinear"])
def test_unique_ratio_moves_the_label_between_shared_and_unique_latents(label):
    data = make_synthetic(num_samples=6000, seed=0)
    shared_only = data.relabel(0.0, label)
    unique_only = data.relabel(1.0, label)
    wu = torch.cat([data.w_1, data.w_2], 1)
    # Ratio 0: w_s determines the label and the unique latents carry nothing about it; ratio 1: the reverse.
    assert probe_acc(wu, shared_only.y, data) < 0.56
    assert probe_acc(data.w_s, unique_only.y, data) < 0.56
    if label == "linear":
        assert probe_acc(data.w_s, shared_only.y, data) > 0.97
        assert probe_acc(wu, unique_only.y, data) > 0.97


def test_nonlinear_labels_are_not_linearly_separable_in_the_latents():
    data = make_synthetic(num_samples=6000, seed=0, label="nonlinear", unique_ratio=0.5)
    latents = torch.cat([data.w_s, data.w_1, data.w_2], 1)
    linear = make_synthetic(num_samples=6000, seed=0, label="linear", unique_ratio=0.5)
    assert probe_acc(latents, linear.y, linear) > 0.97
    assert probe_acc(latents, data.y, data) < 0.90


def test_labels_are_balanced_and_bad_arguments_fail():
    d = make_synthetic(num_samples=4000, seed=1)
    for r in (0.0, 0.5, 1.0):
        for label in ("linear", "nonlinear"):
            assert abs(float(d.relabel(r, label).y.float().mean()) - 0.5) < 0.05
    with pytest.raises(ValueError, match=r"unique_ratio must be in \[0, 1\]"):
        make_synthetic(num_samples=100, unique_ratio=1.5)
    with pytest.raises(ValueError, match="transform must be one of"):
        make_synthetic(num_samples=100, transform="cubic")
    with pytest.raises(ValueError, match="splits must be three"):
        make_synthetic(num_samples=100, splits=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="label must be one of"):
        make_labels(d.w_s, d.w_1, d.w_2, 0.5, "quadratic")
    with pytest.raises(ValueError, match="split must be one of"):
        d.split("dev")


def test_nonlinear_transform_and_noise():
    d = make_synthetic(num_samples=300, transform="nonlinear", noise_std=0.1, seed=0)
    assert d.x1.shape == (300, 100) and torch.isfinite(d.x1).all()


def test_nuisance_latents_and_their_optimal_augmentation():
    """With nuisance_dim, x = [w, n_s, n_i] T; the augmentation redraws exactly the nuisance part."""
    d = make_synthetic(num_samples=500, nuisance_dim=4, seed=0)
    assert d.n_s.shape == d.n_1.shape == d.n_2.shape == (500, 4)
    torch.testing.assert_close(make_synthetic(num_samples=500, seed=0).w_s, d.w_s)  # task latents unchanged
    for modality, own in ((1, d.n_1), (2, d.n_2)):
        x = (d.x1 if modality == 1 else d.x2)[:64]
        before = x.clone()
        aug = d.nuisance_augmentation(modality)
        xa = aug(x, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(x, before)  # the input is not modified
        t = d.transforms[modality - 1]
        lat, lat_a = x.double() @ torch.linalg.pinv(t), xa.double() @ torch.linalg.pinv(t)
        task = 10 + 6
        torch.testing.assert_close(lat_a[:, :task], lat[:, :task], atol=1e-4, rtol=0)  # w_s, w_i kept
        torch.testing.assert_close(lat[:, task : task + 4], d.n_s[:64].double(), atol=1e-4, rtol=0)
        torch.testing.assert_close(lat[:, task + 4 :], own[:64].double(), atol=1e-4, rtol=0)
        assert float((lat_a[:, task:] - lat[:, task:]).abs().mean()) > 0.3  # nuisance redrawn
    with pytest.raises(ValueError, match="nuisance_dim > 0"):
        make_synthetic(num_samples=100).nuisance_augmentation(1)
    with pytest.raises(ValueError, match="transform='linear'"):
        make_synthetic(num_samples=100, nuisance_dim=2, transform="nonlinear").nuisance_augmentation(1)
    with pytest.raises(ValueError, match="nuisance_dim must be >= 0"):
        make_synthetic(num_samples=100, nuisance_dim=-1)


def test_synergy_label_needs_both_modalities():
    """XOR of two unique directions: no single modality's latents predict it, both together do."""
    data = make_synthetic(num_samples=6000, seed=0).relabel(label="synergy")
    y = data.y
    assert 0.45 < float(y.float().mean()) < 0.55
    w1 = torch.cat([data.w_s, data.w_1], 1)
    w2 = torch.cat([data.w_s, data.w_2], 1)
    assert probe_acc(w1, y, data) < 0.6 and probe_acc(w2, y, data) < 0.6
    # The product of the two signed projections is linear-separable once given as a feature.
    gen = torch.Generator().manual_seed(10_007 * 1 + 29)
    v1 = torch.randn(6, generator=gen, dtype=torch.float64)
    v2 = torch.randn(6, generator=gen, dtype=torch.float64)
    joint = ((data.w_1.double() @ v1) * (data.w_2.double() @ v2)).float().unsqueeze(1)
    assert probe_acc(joint, y, data) > 0.95
