"""Generic paired arrays (.npz / .pt): keys, splits, validation errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factorcl.data import SplitDataset, load_arrays, shuffled_split
from factorcl.data.arrays import split_sizes
from factorcl.data.fake import write_fake_pairs


def test_npz_random_split(tmp_path):
    path = write_fake_pairs(tmp_path / "pairs.npz", n=50)
    ds = load_arrays(path, splits=(0.6, 0.2, 0.2), seed=1)
    assert isinstance(ds, SplitDataset) and ds.name == "pairs" and ds.num_classes == 2
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (30, 10, 10)
    assert ds.input_shapes == ((6,), (5, 4))
    raw = np.load(path)
    idx = shuffled_split(50, (0.6, 0.2, 0.2), 1)
    np.testing.assert_array_equal(ds.test.fields["x2"].numpy(), raw["x2"][idx["test"]])
    np.testing.assert_array_equal(ds.test.fields["mask2"].numpy(), raw["mask2"][idx["test"]])
    assert ds.train.fields["y"].dtype == torch.long and "mask1" not in ds.train.fields
    # Same seed, same split; every row in exactly one split.
    assert torch.equal(load_arrays(path, splits=(0.6, 0.2, 0.2), seed=1).test.fields["x1"], ds.test.fields["x1"])
    assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(50))


def test_pt_with_split_key(tmp_path):
    path = write_fake_pairs(tmp_path / "pairs.pt", n=30, split=True)
    ds = load_arrays(path)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (18, 6, 6)
    assert ds.info["split"] == "given"


def test_split_files_and_unlabelled(tmp_path):
    a = write_fake_pairs(tmp_path / "train.npz", n=40, labels=False, seed=0)
    b = write_fake_pairs(tmp_path / "test.npz", n=10, labels=False, seed=1)
    ds = load_arrays({"train": a, "test": b}, splits=(0.75, 0.25, 0.0), seed=3)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (30, 10, 10)
    assert ds.num_classes is None and not ds.has_labels
    # valid is carved out of the train file by the same seeded split as a single file's.
    raw = np.load(a)
    idx = shuffled_split(40, (0.75, 0.25, 0.0), 3)
    np.testing.assert_array_equal(ds.valid.fields["x1"].numpy(), raw["x1"][idx["valid"]])
    np.testing.assert_array_equal(ds.train.fields["x1"].numpy(), raw["x1"][idx["train"]])


def test_split_sizes_match_multibench():
    for n in (7, 10, 36212, 123):
        assert split_sizes(n, (0.8, 0.1, 0.1)) == (n - n // 5, n // 10, n // 5 - n // 10)


def _save(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def test_errors(tmp_path):
    x1, x2 = np.zeros((10, 3), np.float32), np.zeros((10, 4, 2), np.float32)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_arrays(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"missing key 'x2' in bad.npz \(has: x1, y\)"):
        load_arrays(_save(tmp_path, x1=x1, y=np.zeros(10)))
    with pytest.raises(ValueError, match="x2 has 9 rows but x1 has 10"):
        load_arrays(_save(tmp_path, x1=x1, x2=x2[:9]))
    with pytest.raises(
        ValueError, match=r"x1 in bad.npz must be \[N, d\], \[N, T, d\] or \[N, C, H, W\], got shape \(10,\)"
    ):
        load_arrays(_save(tmp_path, x1=np.zeros(10), x2=x2))
    with pytest.raises(ValueError, match=r"mask2 in bad.npz must be \[N, T\] = \(10, 4\)"):
        load_arrays(_save(tmp_path, x1=x1, x2=x2, mask2=np.ones((10, 3), bool)))
    with pytest.raises(ValueError, match="mask1 in bad.npz is only valid for sequences"):
        load_arrays(_save(tmp_path, x1=x1, x2=x2, mask1=np.ones((10, 3), bool)))
    with pytest.raises(ValueError, match="y has 8 rows but x1 has 10"):
        load_arrays(_save(tmp_path, x1=x1, x2=x2, y=np.zeros(8)))
    with pytest.raises(ValueError, match="integer class labels"):
        load_arrays(_save(tmp_path, x1=x1, x2=x2, y=np.linspace(0, 1, 10)))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['z'\]"):
        load_arrays(_save(tmp_path, x1=x1, x2=x2, z=x1))
    with pytest.raises(ValueError, match="NaN or inf"):
        load_arrays(_save(tmp_path, x1=np.full((10, 3), np.nan), x2=x2))
    with pytest.raises(ValueError, match=r"split in bad.npz must hold 'train', 'valid' \(or 'val'\) or 'test'"):
        load_arrays(_save(tmp_path, x1=x1, x2=x2, split=np.array(["train"] * 9 + ["dev"])))
    with pytest.raises(ValueError, match="split 'test' of bad.npz is empty"):
        load_arrays(_save(tmp_path, x1=x1, x2=x2, split=np.array(["train"] * 10)))
    with pytest.raises(ValueError, match="unsupported file type"):
        (tmp_path / "a.csv").write_text("x")
        load_arrays(tmp_path / "a.csv")
