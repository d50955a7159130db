"""MIMIC im.pk: NaN/inf handling, MultiBench's split, z-scoring with train statistics only, tasks, errors."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from factorcl.data import load_mimic, shuffled_split
from factorcl.data.fake import write_fake_mimic
from factorcl.data.mimic import parse_task

N = 60


def _multibench_split(n: int) -> dict[str, list[int]]:
    """MultiBench's partition, computed the way its loader does (random.seed(10); random.shuffle)."""
    order = list(range(n))
    random.seed(10)
    random.shuffle(order)
    return {"valid": order[: n // 10], "test": order[n // 10 : n // 5], "train": order[n // 5 :]}


def _data(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    split = _multibench_split(n)
    static = rng.standard_normal((n, 5))
    static[split["test"]] += 5.0  # test rows shifted: train-only statistics leave them far from 0
    ts = rng.standard_normal((n, 24, 12)) * 3.0 + 7.0
    ts[0, 0, 0], ts[1, 1, 1], static[2, 3] = np.nan, np.inf, -np.inf
    adm = np.zeros((n, 6))
    adm[0] = [0, 0, 0, 0, 0, 0]
    adm[1] = [0, 0, 1, 0, 0, 1]  # first positive column 2 -> class 2
    adm[2] = [1, 0, 0, 0, 0, 0]  # column 0 is not a mortality class -> 0
    adm[3] = [0, 1, 0, 0, 0, 0]
    adm[4] = [0, 0, 0, 0, 0, 1]
    icd = (rng.random((n, 20)) > 0.5).astype(np.float64)
    return {"ep_tdata": ts, "adm_features_all": static, "adm_labels_all": adm, "y_icd9": icd}


def _write(tmp_path, data, name="im.pk"):
    path = tmp_path / name
    with path.open("wb") as f:
        pickle.dump(data, f)
    return path


def test_split_zscore_and_cleaning(tmp_path):
    raw = _data()
    ds = load_mimic(_write(tmp_path, raw))
    assert ds.modalities == ("static", "timeseries") and ds.num_classes == 6
    split = _multibench_split(N)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == tuple(len(split[s]) for s in ("train", "valid", "test"))
    # Expected values: NaN/inf -> 0, then statistics of the train rows only.
    st = np.nan_to_num(raw["adm_features_all"], nan=0.0, posinf=0.0, neginf=0.0)
    ts = np.nan_to_num(raw["ep_tdata"], nan=0.0, posinf=0.0, neginf=0.0)
    tr = split["train"]
    st_z = (st - st[tr].mean(0)) / st[tr].std(0)
    ts_z = (ts - ts[tr].mean((0, 1))) / ts[tr].std((0, 1))
    for name in ("train", "valid", "test"):
        f = getattr(ds, name).fields
        idx = split[name]
        np.testing.assert_allclose(f["x1"].numpy(), st_z[idx], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(f["x2"].numpy(), ts_z[idx], rtol=1e-4, atol=1e-4)
        assert "mask1" not in f and f["x1"].dtype == torch.float32
    x_train, x_test = ds.train.fields["x1"], ds.test.fields["x1"]
    assert float(x_train.mean(0).abs().max()) < 1e-4 and float((x_train.std(0, unbiased=False) - 1).abs().max()) < 1e-3
    # No leakage: the shifted test rows are NOT centred (all-row statistics would pull them towards 0).
    assert float(x_test.mean()) > 3.0
    assert bool(torch.isfinite(ds.train.fields["x2"]).all())


def test_mortality_labels_and_tasks(tmp_path):
    raw = _data()
    path = _write(tmp_path, raw)
    ds = load_mimic(path, splits=(1 / 3, 1 / 3, 1 / 3), seed=0)
    ys = torch.cat([ds.train.fields["y"], ds.valid.fields["y"], ds.test.fields["y"]])
    assert sorted(ys.tolist()).count(0) == N - 3 and sorted(ys.tolist())[-3:] == [1, 2, 5]
    expected = np.zeros(N, dtype=int)
    expected[[1, 3, 4]] = [2, 1, 5]
    idx = shuffled_split(N, (1 / 3, 1 / 3, 1 / 3), 0)
    for name in ("train", "valid", "test"):
        assert getattr(ds, name).fields["y"].tolist() == expected[idx[name]].tolist()
    binary = load_mimic(path, task="mortality-binary")
    assert binary.num_classes == 2 and set(binary.train.fields["y"].tolist()) <= {0, 1}
    icd = load_mimic(path, task="icd9-3")
    split = _multibench_split(N)
    assert icd.num_classes == 2
    assert icd.test.fields["y"].tolist() == raw["y_icd9"][split["test"], 3].astype(int).tolist()
    assert load_mimic(path, task=3).test.fields["y"].tolist() == icd.test.fields["y"].tolist()


def test_parse_task():
    assert parse_task(-1) == ("mortality", None) and parse_task("mortality") == ("mortality", None)
    assert (
        parse_task("icd9-7") == ("icd9", 7) and parse_task(19) == ("icd9", 19) and parse_task("icd9:0") == ("icd9", 0)
    )
    for bad in (20, -2, "icd9-20", "death", True):
        with pytest.raises(ValueError, match="task must be"):
            parse_task(bad)


def test_modalities_swap_and_split_fractions(tmp_path):
    path = _write(tmp_path, _data())
    ds = load_mimic(path, modalities=("timeseries", "static"), splits=(0.5, 0.25, 0.25), seed=3)
    assert ds.input_shapes == ((24, 12), (5,))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (30, 15, 15)
    again = load_mimic(path, modalities=("timeseries", "static"), splits=(0.5, 0.25, 0.25), seed=3)
    assert torch.equal(again.test.fields["x1"], ds.test.fields["x1"])  # seeded
    other = load_mimic(path, modalities=("timeseries", "static"), splits=(0.5, 0.25, 0.25), seed=4)
    assert not torch.equal(other.test.fields["x1"], ds.test.fields["x1"])


def test_errors(tmp_path):
    raw = _data()
    with pytest.raises(FileNotFoundError, match="im.pk"):
        load_mimic(tmp_path / "im.pk")
    missing = {k: v for k, v in raw.items() if k != "adm_features_all"}
    with pytest.raises(
        ValueError, match=r"missing key 'adm_features_all' in im.pk \(has: ep_tdata, adm_labels_all, y_icd9\)"
    ):
        load_mimic(_write(tmp_path, missing))
    with pytest.raises(ValueError, match=r"'ep_tdata' in im.pk must be \[N, 24, 12\] \(3-D\), got shape \(60, 288\)"):
        load_mimic(_write(tmp_path, {**raw, "ep_tdata": raw["ep_tdata"].reshape(N, -1)}))
    with pytest.raises(ValueError, match="'adm_features_all' has 59 rows but 'ep_tdata' has 60"):
        load_mimic(_write(tmp_path, {**raw, "adm_features_all": raw["adm_features_all"][1:]}))
    with pytest.raises(ValueError, match=r"'adm_labels_all' in im.pk must be \[N, >=6\]"):
        load_mimic(_write(tmp_path, {**raw, "adm_labels_all": raw["adm_labels_all"][:, :3]}))
    # The ICD-9 task does not need adm_labels_all, mortality does not need y_icd9.
    no_icd = {k: v for k, v in raw.items() if k != "y_icd9"}
    load_mimic(_write(tmp_path, no_icd))
    with pytest.raises(ValueError, match="missing key 'y_icd9'"):
        load_mimic(_write(tmp_path, no_icd), task="icd9-1")
    with pytest.raises(ValueError, match="modalities must be"):
        load_mimic(_write(tmp_path, raw), modalities=("static", "text"))
    with pytest.raises(ValueError, match="splits must be three"):
        load_mimic(_write(tmp_path, raw), splits=(0.5, 0.5))


def test_fake_file(tmp_path):
    ds = load_mimic(write_fake_mimic(tmp_path / "im.pk", n=50))
    assert ds.input_shapes == ((5,), (24, 12))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (40, 5, 5)
    assert all(
        bool(torch.isfinite(getattr(ds, s).fields[k]).all()) for s in ("train", "valid", "test") for k in ("x1", "x2")
    )
