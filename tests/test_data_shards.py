"""Array pairs in webdataset shards (``data.kind: shards``, ``factorcl to-shards``): the round trip, the split
of an epoch over ranks and workers, skipped samples, and ``factorcl train`` streaming them with an exact resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from factorcl.cli import main
from factorcl.config import ConfigError, load_config
from factorcl.data.arrays import load_arrays
from factorcl.data.shards import (
    ARRAY_SKIP_REASONS,
    ArrayShardDataset,
    ArrayShardPass,
    arrays_to_shards,
    load_array_shards,
    make_array_shard_loader,
)
from factorcl.run import run_config
from factorcl.shards import write_tar_shards

pytest.importorskip("webdataset")


def coded_arrays(path: Path, n: int = 120, sequences: bool = False) -> Path:
    """``n`` rows whose x1[:, 0] is the row id (so every row can be found again), labels ``id % 3``."""
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(n, 3)).astype(np.float32)
    x1[:, 0] = np.arange(n)
    arrays = {"x1": x1, "y": np.arange(n) % 3}
    if sequences:
        arrays["x2"] = rng.normal(size=(n, 5, 2)).astype(np.float32)
        arrays["mask2"] = rng.random((n, 5)) < 0.7
    else:
        arrays["x2"] = rng.normal(size=(n, 4)).astype(np.float32)
    np.savez(path, **arrays)
    return path


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def ids_of(items) -> list[int]:
    return [int(v) for item in items for v in torch.atleast_1d(item["x1"][..., 0]).tolist()]


# ------------------------------------------------------------------------------------- the format
def test_to_shards_keeps_every_row_of_every_split(tmp_path):
    data = load_arrays(coded_arrays(tmp_path / "pairs.npz", sequences=True))
    written = arrays_to_shards(data, tmp_path / "shards", shard_size=16)
    assert {s: len(p) for s, p in written.items()} == {"train": 6, "valid": 1, "test": 1}  # 96 / 16, 12, 12
    assert json.loads((tmp_path / "shards/train/classes.json").read_text()) == ["0", "1", "2"]
    for split in ("train", "valid", "test"):
        expected = data.split(split).tensors()
        rows = list(ArrayShardPass(tmp_path / "shards" / split))
        assert sorted(ids_of(rows)) == sorted(expected["x1"][:, 0].long().tolist())
        by_id = {int(r["x1"][0]): r for r in rows}
        for i, row_id in enumerate(expected["x1"][:, 0].long().tolist()):
            row = by_id[row_id]
            torch.testing.assert_close(row["x1"], expected["x1"][i], rtol=0, atol=0)
            torch.testing.assert_close(row["x2"], expected["x2"][i], rtol=0, atol=0)
            assert torch.equal(row["mask2"], expected["mask2"][i]) and row["mask2"].dtype == torch.bool
            assert int(row["y"]) == int(expected["y"][i])
    # shuffled by default: a shard is not a run of consecutive rows
    first = ids_of(ArrayShardPass(written["train"][0]))
    assert first != sorted(first)


def test_load_array_shards_caps_the_probe_rows_and_keeps_the_stream(tmp_path):
    arrays_to_shards(load_arrays(coded_arrays(tmp_path / "pairs.npz", n=200)), tmp_path / "shards", shard_size=20)
    data = load_array_shards(tmp_path / "shards", batch_size=16, probe_samples=50)
    assert len(data.train) == 50 and len(data.valid) == 20 and len(data.test) == 20  # valid/test under the cap
    assert data.input_shapes == ((3,), (4,)) and data.num_classes == 3 and data.has_labels
    summary = data.summary()
    assert summary["stream"]["epoch_samples"] == 160 and summary["stream"]["shards"] == 8
    assert summary["info"]["probe_samples"] == 50
    assert len(data.stream) == 160  # 10 whole batches of 16
    data = load_array_shards(tmp_path / "shards", batch_size=16, train_num_samples=64)
    assert len(data.stream) == 64 and len(data.train) == 160


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_epoch_streams_every_row_once_over_ranks_and_workers(tmp_path, num_workers):
    arrays_to_shards(load_arrays(coded_arrays(tmp_path / "p.npz", n=120)), tmp_path / "shards", shard_size=8)
    train_ids = sorted(ids_of(ArrayShardPass(tmp_path / "shards/train")))  # 96 rows in 12 shards

    def epoch(rank: int, epoch: int) -> list[int]:
        dataset = ArrayShardDataset(tmp_path / "shards/train", batch_size=8, world_size=2, rank=rank, seed=3)
        dataset.set_epoch(epoch)
        return ids_of(make_array_shard_loader(dataset, num_workers=num_workers))

    first = [epoch(r, 0) for r in (0, 1)]
    assert len(first[0]) == len(first[1]) == 48
    assert sorted(first[0] + first[1]) == train_ids  # every row exactly once, across both ranks
    second = [epoch(r, 1) for r in (0, 1)]
    assert sorted(second[0] + second[1]) == train_ids and second != first  # each epoch in a new order


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    good = [
        {"x1.npy": npy(np.full(3, i, np.float32)), "x2.npy": npy(np.ones(2, np.float32)), "cls": b"1"} for i in range(6)
    ]
    bad = [
        {"x1.npy": b"not an array", "x2.npy": npy(np.ones(2, np.float32)), "cls": b"0"},  # bad_array
        {"x1.npy": npy(np.ones(4, np.float32)), "x2.npy": npy(np.ones(2, np.float32)), "cls": b"0"},  # bad_array
        {"x1.npy": npy(np.array([1.0, np.nan, 0.0], np.float32)), "x2.npy": npy(np.ones(2, np.float32)), "cls": b"0"},
        {"x1.npy": npy(np.ones(3, np.float32)), "cls": b"0"},  # no_array
        {"x1.npy": npy(np.ones(3, np.float32)), "x2.npy": npy(np.ones(2, np.float32)), "cls": b"7"},  # bad_label
        {"x1.npy": npy(np.ones(3, np.float32)), "x2.npy": npy(np.ones(2, np.float32))},  # bad_label
    ]
    write_tar_shards(good[:3] + bad + good[3:], tmp_path / "s", shard_size=20, classes=["a", "b"])
    reader = ArrayShardPass(tmp_path / "s")
    rows = list(reader)
    assert ids_of(rows) == [0, 1, 2, 3, 4, 5]
    assert reader.skipped == dict(zip(ARRAY_SKIP_REASONS, (1, 3, 2, 0)))


def test_the_first_sample_fixes_the_layout_and_a_bad_one_is_named(tmp_path):
    write_tar_shards([{"x2.npy": npy(np.ones(2, np.float32))}], tmp_path / "a", shard_size=1)
    with pytest.raises(
        ValueError,
        match=r"00000\.tar \(sample 000000000\) has no x1\.npy \(members: x2\.npy\): .*KEY\.x1\.npy and KEY\.x2\.npy",
    ):
        ArrayShardPass(tmp_path / "a")
    four_d = {"x1.npy": npy(np.ones((1, 2, 3, 4), np.float32)), "x2.npy": npy(np.ones(2, np.float32))}
    write_tar_shards([four_d], tmp_path / "b", shard_size=1)
    with pytest.raises(ValueError, match=r"x1\.npy has shape \(1, 2, 3, 4\): one row is \[d\], \[T, d\]"):
        ArrayShardPass(tmp_path / "b")


def test_splits_with_other_arrays_are_refused(tmp_path):
    arrays_to_shards(load_arrays(coded_arrays(tmp_path / "p.npz")), tmp_path / "a", shard_size=50)
    arrays_to_shards(load_arrays(coded_arrays(tmp_path / "q.npz", sequences=True)), tmp_path / "b", shard_size=50)
    path = {"train": str(tmp_path / "a/train"), "test": str(tmp_path / "b/test")}
    with pytest.raises(ValueError, match=r"the test shards .* hold fields x1 \(3,\), x2 \(5, 2\), mask2 \(5,\)"):
        load_array_shards(path, batch_size=8)
    with pytest.raises(ValueError, match="need a 'train' entry"):
        load_array_shards({"test": str(tmp_path / "a/test")}, batch_size=8)
    with pytest.raises(ValueError, match="names no shards"):
        load_array_shards(tmp_path / "p.npz", batch_size=8)


# ---------------------------------------------------------------------------------- factorcl train
def shard_config(path, out_dir, **train) -> dict:
    return {
        "data": {"kind": "shards", "path": path, "probe_samples": 300},
        "model": {"embed_dim": 8, "critic_hidden": 16, "critic_embed": 8},
        "train": {"epochs": 2, "batch_size": 32, "seed": 0, "progress": False, "tensorboard": False, **train},
        "probe": {"l2_grid": [1e-2, 1e-1], "max_iter": 50},
        "out_dir": str(out_dir),
    }


@pytest.fixture(scope="module")
def synthetic_shards(tmp_path_factory) -> Path:
    """The built-in synthetic data (600 rows) as shards of 40, written by the command line from a run config."""
    folder = tmp_path_factory.mktemp("synthetic_shards")
    config = {"data": {"kind": "synthetic", "synthetic": {"num_samples": 600, "input_dim": 30}}}
    (folder / "data.yaml").write_text(yaml.safe_dump(config))
    assert main(["to-shards", str(folder / "data.yaml"), str(folder / "shards"), "--shard-size", "40"]) == 0
    return folder / "shards"


def test_factorcl_train_streams_shards_and_probes_a_capped_sample(synthetic_shards, tmp_path):
    results = run_config(shard_config(str(synthetic_shards), tmp_path / "run"))
    assert results["train"]["steps"] == 2 * (420 // 32)  # 420 train rows (0.7 of 600), whole batches
    assert results["data"]["sizes"] == {"train": 300, "valid": 60, "test": 120}
    assert results["data"]["stream"]["epoch_samples"] == 420
    assert sum(results["data"]["stream"]["skipped"].values()) == 0
    assert results["accuracy"] > 0.6  # the synthetic label is learnable (chance: 0.5)
    saved = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    assert saved["data"]["path"] == str(synthetic_shards.resolve())
    assert main(["probe", "--run", str(tmp_path / "run")]) == 0  # the run folder rebuilds the data from the shards
    probe = json.loads((tmp_path / "run/probe_results.json").read_text())
    assert probe["accuracy"] == pytest.approx(results["accuracy"], abs=1e-6)


def test_a_stopped_shard_run_resumes_exactly(synthetic_shards, tmp_path):
    def weights(run: str) -> dict[str, torch.Tensor]:
        return torch.load(tmp_path / run / "checkpoint.pt", weights_only=False)["model"]

    kw = dict(num_workers=2)
    run_config(shard_config(str(synthetic_shards), tmp_path / "full", **kw), overrides=["probe.enabled=false"])
    run_config(shard_config(str(synthetic_shards), tmp_path / "part", stop_after=17, **kw), ["probe.enabled=false"])
    resumed = run_config(shard_config(str(synthetic_shards), tmp_path / "part", resume="auto", **kw))
    assert resumed["train"]["steps"] == 26
    full = weights("full")
    for name, value in weights("part").items():
        torch.testing.assert_close(value, full[name], rtol=0, atol=0, msg=name)


def test_a_relative_shard_pattern_is_found_beside_the_config(synthetic_shards, tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "sh").symlink_to(synthetic_shards, target_is_directory=True)
    config = shard_config({"train": "sh/train/{00000..00010}.tar", "test": "sh/test"}, tmp_path / "run", epochs=1)
    (folder / "run.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # not the config's folder: the pattern is looked up beside the config
    assert main(["train", "--config", str(folder / "run.yaml"), "--quiet"]) == 0
    saved = yaml.safe_load((tmp_path / "run/config.yaml").read_text())["data"]["path"]
    assert saved["train"] == str((folder / "sh/train").resolve() / "{00000..00010}.tar")
    assert json.loads((tmp_path / "run/results.json").read_text())["data"]["stream"]["shards"] == 11


def test_shard_data_mistakes_are_named_before_training(synthetic_shards, tmp_path, capsys):
    config = shard_config(str(synthetic_shards / "train"), tmp_path / "run")  # no test split
    with pytest.raises(ValueError, match="has no test split .* the linear probe needs one"):
        run_config(config)
    assert not (tmp_path / "run/checkpoint.pt").exists()
    with pytest.raises(ConfigError, match="'data.probe_samples' is only used with data.kind 'shards'"):
        load_config({"data": {"kind": "arrays", "path": "x.npz", "probe_samples": 10}})
    with pytest.raises(ConfigError, match="'data.train_num_samples' must be an integer >= 1"):
        load_config({"data": {"kind": "shards", "path": "x", "train_num_samples": 0}})


def test_to_shards_never_overwrites_silently(tmp_path, capsys):
    data = coded_arrays(tmp_path / "p.npz")
    assert main(["to-shards", str(data), str(tmp_path / "out"), "--shard-size", "30"]) == 0
    assert "train: 96 rows in 4 shard(s)" in capsys.readouterr().out
    assert main(["to-shards", str(data), str(tmp_path / "out")]) == 2
    assert "already holds 4 shard(s), e.g. 00000.tar; pass --overwrite" in capsys.readouterr().err
    assert main(["to-shards", str(data), str(tmp_path / "out"), "--overwrite", "--shard-size", "50"]) == 0
    assert sorted(p.name for p in (tmp_path / "out/train").glob("*.tar")) == ["00000.tar", "00001.tar"]
    assert main(["to-shards", str(tmp_path / "missing.npz"), str(tmp_path / "o2")]) == 2
    assert "data file not found" in capsys.readouterr().err


def _train_on_shards_as_rank(rank: int, world: int, shards: str, out_dir: str) -> dict:
    """``run_config`` on the shards as one of ``world`` gloo ranks; returns the train rows this rank decoded."""
    import factorcl.data.shards as array_shards

    seen: list[float] = []
    decode = array_shards.ArrayShardDataset._decode

    def recording(self, sample, worker):
        item = decode(self, sample, worker)
        if item is not None and type(self) is array_shards.ArrayShardDataset:  # the stream, not the probe's pass
            seen.append(float(item["x1"].sum()))
        return item

    array_shards.ArrayShardDataset._decode = recording
    results = run_config(shard_config(shards, out_dir, epochs=1), ["probe.enabled=false"])
    return {"seen": seen, "steps": None if results is None else results["train"]["steps"]}


def test_two_gloo_ranks_stream_disjoint_rows_covering_the_epoch(synthetic_shards, tmp_path):
    from test_distributed_helpers import run_ranks

    results = run_ranks(_train_on_shards_as_rank, tmp_path, world=2, args=(str(synthetic_shards), str(tmp_path / "r")))
    assert results[0]["steps"] == 420 // 64 and results[1]["steps"] is None  # rank 0 reports; 32 rows x 2 ranks
    seen = [r["seen"] for r in results]
    assert len(seen[0]) == len(seen[1]) == 6 * 32
    train = [float(r["x1"].sum()) for r in ArrayShardPass(synthetic_shards / "train")]
    assert len(set(seen[0] + seen[1])) == len(seen[0] + seen[1])  # no row on two ranks, none twice
    assert set(seen[0] + seen[1]) <= set(train) and len(set(train)) == 420


# ------------------------------------------------------------------------------ review follow-ups
def records(n: int, width: int = 3, label: bool = True) -> list[dict[str, bytes]]:
    out = []
    for i in range(n):
        record = {"x1.npy": npy(np.full(width, i, np.float32)), "x2.npy": npy(np.ones(2, np.float32))}
        if label:
            record["cls"] = str(i % 2).encode()
        out.append(record)
    return out


def test_an_overwrite_replaces_the_metadata_and_an_interrupted_one_changes_nothing(tmp_path):
    write_tar_shards(records(40), tmp_path / "s", shard_size=10, classes=["a", "b"])
    write_tar_shards(records(30, label=False), tmp_path / "s", shard_size=20, overwrite=True)
    assert not (tmp_path / "s/classes.json").exists()  # unlabelled now: a stale classes.json would reject all
    assert json.loads((tmp_path / "s/sizes.json").read_text()) == {"00000.tar": 20, "00001.tar": 10}
    assert sorted(p.name for p in (tmp_path / "s").glob("*.tar")) == ["00000.tar", "00001.tar"]
    assert "y" not in next(iter(ArrayShardPass(tmp_path / "s")))

    def failing():
        yield from records(25)
        raise RuntimeError("disk full")

    before = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}
    with pytest.raises(RuntimeError, match="disk full"):
        write_tar_shards(failing(), tmp_path / "s", shard_size=10, classes=["a", "b"], overwrite=True)
    after = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir() if not p.name.endswith(".tmp")}
    assert after == before  # the old shards, sizes.json and no classes.json: as they were
    write_tar_shards(records(5), tmp_path / "s", shard_size=10, overwrite=True)
    assert not list((tmp_path / "s").glob("*.tmp"))  # the next write clears what the interrupted one left


def test_the_probe_rows_are_the_first_rows_in_shard_order(tmp_path):
    write_tar_shards(records(390), tmp_path / "d/train", shard_size=390, classes=["a", "b"])
    write_tar_shards(records(10), tmp_path / "d/train2", shard_size=10, classes=["a", "b"])
    (tmp_path / "d/train2/00000.tar").rename(tmp_path / "d/train/00001.tar")
    (tmp_path / "d/train/sizes.json").write_text(json.dumps({"00000.tar": 390, "00001.tar": 10}))
    write_tar_shards(records(50), tmp_path / "d/val", shard_size=10, classes=["a", "b"])
    with pytest.warns(UserWarning, match="the valid shards hold 50 samples; the probe uses their first 30"):
        data = load_array_shards(tmp_path / "d", batch_size=8, probe_samples=30, num_workers=2)
    assert ids_of([data.train[i] for i in range(len(data.train))]) == list(range(30))  # a val/ folder is valid
    assert len(data.valid) == 30 and data.test is None
    assert data.info["split_samples"] == {"train": 400, "valid": 50}
    data = load_array_shards(tmp_path / "d", batch_size=8, probe_samples=395)
    assert len(data.train) == 395  # across shards, not an even share per worker


def test_a_corrupt_first_sample_does_not_decide_the_layout_and_masks_must_be_bool(tmp_path):
    seq = {"x1.npy": npy(np.ones(3, np.float32)), "x2.npy": npy(np.ones((4, 2), np.float32))}
    good = [{**seq, "mask2.npy": npy(np.array([1, 1, 0, 0], np.uint8))} for _ in range(3)]
    bad_mask = {**seq, "mask2.npy": npy(np.array([1.0, 0.5, 0.0, 0.0], np.float32))}
    write_tar_shards([{"x1.npy": b"garbage", "x2.npy": b"garbage"}, *good, bad_mask], tmp_path / "s", 10)
    reader = ArrayShardPass(tmp_path / "s")
    assert reader.shapes == {"x1": (3,), "x2": (4, 2), "mask2": (4,)}
    rows = list(reader)
    assert len(rows) == 3 and rows[0]["mask2"].tolist() == [True, True, False, False]
    assert reader.skipped["bad_array"] == 2  # the garbage sample and the 0.5 mask
    write_tar_shards([{"x1.npy": b"garbage", "x2.npy": b"garbage"}] * 2, tmp_path / "g", 10)
    with pytest.raises(ValueError, match=r"x1\.npy is not a readable \.npy array .*\(and the 1 sample\(s\) after"):
        ArrayShardPass(tmp_path / "g")


def test_lists_and_patterns_with_braced_folders_resolve_beside_the_config(tmp_path):
    from factorcl.config import resolve_shard_spec

    (tmp_path / "sh/train").mkdir(parents=True)
    (tmp_path / "sh/train/00000.tar").write_bytes(b"")
    resolved = resolve_shard_spec(["sh/train/00000.tar", "sh/{train,valid}/{00000..00001}.tar"], tmp_path)
    assert resolved == [str(tmp_path / "sh/train/00000.tar"), str(tmp_path / "sh/{train,valid}/{00000..00001}.tar")]
    assert resolve_shard_spec("pipe:cat x.tar::s3://b/{0..1}.tar", tmp_path) == "pipe:cat x.tar::s3://b/{0..1}.tar"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_shard_spec("nowhere/{0..1}.tar", tmp_path)
