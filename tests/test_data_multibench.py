"""MultiBench affect pickles: processing rules on hand-built arrays, label rules, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from factorcl.data import PairDataset, SplitDataset, load_multibench
from factorcl.data.fake import write_fake_affect
from factorcl.data.multibench import canonical_dataset, infer_dataset

T = 5


def _split(rows: int = 4) -> dict[str, np.ndarray]:
    """Four hand-made samples (T=5, dims vision 2, audio 3, text 4); see the assertions for what each tests."""
    vision = np.arange(rows * T * 2, dtype=np.float32).reshape(rows, T, 2) + 1.0  # non-zero everywhere
    audio = np.ones((rows, T, 3), dtype=np.float32)
    text = np.zeros((rows, T, 4), dtype=np.float32)
    text[0, 2:] = 1.0  # row 0: front padding of 2 steps
    # row 1: all-zero text -> dropped
    text[2, :] = 2.0  # row 2: no padding
    audio[2, 3, 1] = -np.inf  # -inf in audio -> 0
    text[3, 1:] = 3.0
    text[3, 3] = 0.0  # row 3: a zero step after the first word stays valid (only the prefix is padding)
    labels = np.array([1.5, -2.0, 0.0, -0.5], dtype=np.float32)[:rows].reshape(rows, 1, 1)
    return {
        "vision": vision,
        "audio": audio,
        "text": text,
        "labels": labels,
        "id": np.array(["a", "b", "c", "d"])[:rows],
    }


def _write(tmp_path, data, name="mosi_raw.pkl"):
    path = tmp_path / name
    with path.open("wb") as f:
        pickle.dump(data, f)
    return path


@pytest.fixture
def mosi_file(tmp_path):
    return _write(tmp_path, {s: _split() for s in ("train", "valid", "test")})


def test_processing_rules(mosi_file):
    ds = load_multibench(mosi_file, modalities=("vision", "text"))
    assert isinstance(ds, SplitDataset) and ds.name == "mosi" and ds.num_classes == 2
    tr = ds.train.fields
    # The all-zero-text row is gone: rows 0, 2, 3 remain.
    assert len(ds.train) == 3 and ds.info["train"]["dropped_all_zero_text"] == 1
    expected = torch.tensor([[False, False, True, True, True], [True] * 5, [False, True, True, True, True]])
    assert torch.equal(tr["mask1"], expected) and torch.equal(tr["mask2"], expected)
    assert tr["x1"].dtype == torch.float32 and tr["x1"].shape == (3, T, 2) and tr["x2"].shape == (3, T, 4)
    raw = _split()
    # Vision had values before the first word: they are padding now (zeroed); valid steps unchanged.
    assert torch.equal(tr["x1"][0, :2], torch.zeros(2, 2))
    assert torch.equal(tr["x1"][0, 2:], torch.from_numpy(raw["vision"][0, 2:]))
    assert torch.equal(tr["x1"][1], torch.from_numpy(raw["vision"][2]))
    assert torch.equal(tr["x2"][2, 3], torch.zeros(4))  # the zero step inside the valid suffix is kept as is
    # Sentiment > 0 -> 1; exactly 0 -> 0 (MultiBench's rule, the default).
    assert tr["y"].tolist() == [1, 0, 0] and tr["y"].dtype == torch.long
    assert ds.dims == (2, 4) and ds.input_shapes == ((T, 2), (T, 4))
    item = ds.train[0]
    assert set(item) == {"x1", "x2", "y", "mask1", "mask2"}


def test_audio_neg_inf_replaced(mosi_file):
    ds = load_multibench(mosi_file, modalities=("audio", "text"))
    x = ds.test.fields["x1"]
    assert bool(torch.isfinite(x).all())
    assert float(x[1, 3, 1]) == 0.0 and float(x[1, 3, 0]) == 1.0  # row 2 of the file is row 1 after the drop
    assert ds.info["test"]["audio_neg_inf_replaced"] == 1


@pytest.mark.parametrize("rule, labels", [("negative", [1, 0, 0]), ("positive", [1, 1, 0]), ("drop", [1, 0])])
def test_zero_label_rules(mosi_file, rule, labels):
    ds = load_multibench(mosi_file, zero_label=rule)
    assert ds.valid.fields["y"].tolist() == labels
    if rule == "drop":
        assert ds.info["valid"]["dropped_zero_label"] == 1
        assert ds.valid.fields["mask1"].shape == (2, T)


@pytest.mark.parametrize("name, values", [("humor.pkl", [0.0, 1.0, 1.0, 0.0]), ("sarcasm.pkl", [-1.0, 1.0, 1.0, -1.0])])
def test_binary_datasets(tmp_path, name, values):
    split = _split()
    split["labels"] = np.array(values, dtype=np.float32).reshape(4, 1)
    ds = load_multibench(_write(tmp_path, {s: split for s in ("train", "valid", "test")}, name))
    assert ds.name == name.split(".")[0]
    assert ds.train.fields["y"].tolist() == [0, 1, 0]  # row 1 dropped (all-zero text)


def test_binary_labels_must_be_binary(tmp_path):
    split = _split()
    split["labels"] = np.array([0.0, 2.0, 1.0, 0.5]).reshape(4, 1)
    with pytest.raises(ValueError, match=r"binary dataset.*0/1 or -1/1"):
        load_multibench(_write(tmp_path, {s: split for s in ("train", "valid", "test")}, "humor.pkl"))


def test_dataset_names():
    assert infer_dataset("data/mosei_senti_data.pkl") == "mosei"
    assert infer_dataset("mosi_raw.pkl") == "mosi"
    assert infer_dataset("urfunny.pkl") == "humor" and infer_dataset("MUStARD.pkl") == "sarcasm"
    assert canonical_dataset("UR-FUNNY") == "humor"
    with pytest.raises(ValueError, match="dataset must be one of"):
        canonical_dataset("avmnist")


def test_dataset_needed_when_name_is_unknown(tmp_path):
    path = _write(tmp_path, {s: _split() for s in ("train", "valid", "test")}, "features.pkl")
    with pytest.raises(ValueError, match="pass dataset="):
        load_multibench(path)
    assert load_multibench(path, dataset="CMU-MOSEI").name == "mosei"


def _bad(tmp_path, mutate):
    data = {s: _split() for s in ("train", "valid", "test")}
    mutate(data)
    return _write(tmp_path, data)


def test_error_missing_key(tmp_path):
    path = _bad(tmp_path, lambda d: d["valid"].pop("vision"))
    with pytest.raises(
        ValueError, match=r"missing key 'vision' in split 'valid' of mosi_raw.pkl \(has: audio, text, labels, id\)"
    ):
        load_multibench(path)


def test_error_missing_split(tmp_path):
    path = _bad(tmp_path, lambda d: d.pop("test"))
    with pytest.raises(ValueError, match=r"missing key 'test' in mosi_raw.pkl \(has: train, valid\)"):
        load_multibench(path)


def test_error_wrong_rank(tmp_path):
    def mutate(d):
        d["train"]["audio"] = np.zeros((10, 5), dtype=np.float32)

    with pytest.raises(
        ValueError, match=r"train\['audio'\] in mosi_raw.pkl must be \[N, T, d\] \(3-D\), got shape \(10, 5\)"
    ):
        load_multibench(_bad(tmp_path, mutate), modalities=("audio", "text"))


def test_error_mismatched_rows_and_steps(tmp_path):
    def rows(d):
        d["train"]["vision"] = d["train"]["vision"][:3]

    with pytest.raises(ValueError, match=r"train\['vision'\] in mosi_raw.pkl has 3 rows but train\['text'\] has 4"):
        load_multibench(_bad(tmp_path, rows))

    def steps(d):
        d["test"]["vision"] = d["test"]["vision"][:, :4]

    with pytest.raises(ValueError, match="has 4 time steps but test\\['text'\\] has 5"):
        load_multibench(_bad(tmp_path, steps))

    def labels(d):
        d["train"]["labels"] = np.zeros((4, 1, 7))

    with pytest.raises(
        ValueError, match=r"labels'\] in mosi_raw.pkl must be \[N\], \[N, 1\] or \[N, 1, 1\].*\(4, 1, 7\)"
    ):
        load_multibench(_bad(tmp_path, labels))


def test_error_empty_after_filtering(tmp_path):
    def mutate(d):
        d["test"]["text"][:] = 0.0

    with pytest.raises(
        ValueError, match=r"split 'test' of mosi_raw.pkl is empty after filtering: all 4 rows were dropped"
    ):
        load_multibench(_bad(tmp_path, mutate))


def test_errors_missing_file_and_bad_arguments(tmp_path, mosi_file):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_multibench(tmp_path / "nope.pkl")
    with pytest.raises(ValueError, match="modalities must be two of"):
        load_multibench(mosi_file, modalities=("video", "text"))
    with pytest.raises(ValueError, match="two different"):
        load_multibench(mosi_file, modalities=("text", "text"))
    with pytest.raises(ValueError, match="zero_label"):
        load_multibench(mosi_file, zero_label="neutral")


def test_splits_with_different_lengths_are_front_padded(tmp_path):
    data = {s: _split() for s in ("train", "valid", "test")}
    short = data["test"]
    for key in ("vision", "audio", "text"):
        short[key] = short[key][:, 2:]  # T = 3
    ds = load_multibench(_write(tmp_path, data))
    te = ds.test.fields
    assert te["x1"].shape[1] == T and not bool(te["mask1"][:, :2].any())
    assert torch.equal(te["x1"][:, :2], torch.zeros(3, 2, 2))


def test_fake_file_roundtrip(tmp_path):
    path = write_fake_affect(tmp_path / "mosei_raw.pkl", "mosei", sizes=(20, 6, 6), seq_len=7)
    ds = load_multibench(path, modalities=("audio", "vision"))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (19, 5, 5)
    assert ds.info["train"]["audio_neg_inf_replaced"] >= 1
    for split in (ds.train, ds.valid, ds.test):
        f = split.fields
        assert bool(torch.isfinite(f["x1"]).all())
        # Masks are suffixes (front padding) with at least one valid step.
        m = f["mask1"].long()
        assert bool((m[:, 1:] >= m[:, :-1]).all()) and bool(m[:, -1].all())
        assert torch.equal(f["x1"][~f["mask1"]], torch.zeros_like(f["x1"][~f["mask1"]]))
    assert isinstance(ds.train, PairDataset)
    batch = next(iter(ds.train.loader(8, shuffle=True, seed=0)))
    assert batch["mask1"].dtype == torch.bool and batch["x1"].shape == (8, 7, 5)
