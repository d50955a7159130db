"""Fault injection for runs: no run is lost or silently overwritten, and every bad input is named.

Each test provokes one fault a user can cause (a second run into a used folder, a resume with a
changed config, a full disk, an empty config, a one-class probe, ...) and checks both the message
and that nothing the user had was changed. The input-format faults (corrupt files, images) are in
``test_faults_inputs.py``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import factorcl
from factorcl import checkpoint as ckpt_io
from factorcl.checkpoint import CheckpointWriteError, ConfigChangedError, RunExistsError
from factorcl.config import ConfigError, load_config
from factorcl.fileio import file_mode
from factorcl.run import run_config
from factorcl.train import CHECKPOINT_NAME, SAFETENSORS_NAME, CheckpointWarning, NonFiniteLossError
from factorcl_helpers import small_data, small_model

FIT = dict(epochs=2, lr=3e-3, critic_steps=1, progress=False, tensorboard=False, device="cpu")


def loader_of(data, batch_size: int = 64) -> DataLoader:
    return data.split("train").loader(batch_size, shuffle=True, drop_last=True, seed=0)


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (to show that a refused call changed nothing)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write_pairs(path: Path, n: int = 96, labels: np.ndarray | None = None) -> Path:
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(n, 6)).astype("float32")
    x2 = (x1 + 0.3 * rng.normal(size=(n, 6))).astype("float32")
    y = (x1[:, 0] > 0).astype("int64") if labels is None else labels
    np.savez(path, x1=x1, x2=x2, y=y)
    return path


def run_cfg(tmp_path: Path, out: str = "run", **train) -> dict:
    pairs = tmp_path / "pairs.npz"
    if not pairs.exists():
        write_pairs(pairs)
    return {
        "data": {"kind": "arrays", "path": str(pairs)},
        "encoders": {
            "x1": {"type": "mlp", "hidden": 16, "out_dim": 8},
            "x2": {"type": "mlp", "hidden": 16, "out_dim": 8},
        },
        "model": {"embed_dim": 8, "critic_hidden": 16, "critic_embed": 8},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "lr": 1e-3,
            "progress": False,
            "tensorboard": False,
            "seed": 0,
            "device": "cpu",
            **train,
        },
        "probe": {"l2_grid": [1e-3]},
        "out_dir": str(tmp_path / out),
    }


# ------------------------------------------------------------------------- 1. overwrite refusal
def test_fit_refuses_a_folder_that_holds_a_run_and_changes_nothing(tmp_path):
    data = small_data()
    factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), **FIT)
    before = digest(tmp_path)
    with pytest.raises(
        RunExistsError,
        match=r"already holds a run \(checkpoint.pt, metrics.csv.*--resume.*"
        r"--overwrite.*--out-dir",
    ):
        factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), **{**FIT, "epochs": 1})
    assert digest(tmp_path) == before


def test_fit_overwrite_replaces_the_run(tmp_path):
    data = small_data()
    first = factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), **FIT)
    second = factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), overwrite=True, **{**FIT, "epochs": 1})
    assert second.step == first.step // 2
    assert ckpt_io.load(tmp_path / CHECKPOINT_NAME)["step"] == second.step
    assert len((tmp_path / "metrics.csv").read_text().strip().splitlines()) == second.step + 1  # header + rows


def test_resume_and_overwrite_exclude_each_other():
    with pytest.raises(ValueError, match="resume='auto' and overwrite=True exclude each other"):
        factorcl.TrainConfig(resume="auto", overwrite=True)


def test_cli_train_refuses_an_existing_run_and_names_the_choices(tmp_path):
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(run_cfg(tmp_path)))
    run_config(cfg_path)
    before = digest(tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "factorcl.cli", "train", "--config", str(cfg_path), "--epochs", "1", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "already holds a run" in proc.stderr and "--resume" in proc.stderr and "--overwrite" in proc.stderr
    assert digest(tmp_path / "run") == before
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "factorcl.cli",
            "train",
            "--config",
            str(cfg_path),
            "--epochs",
            "1",
            "--quiet",
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["train"]["steps"] == 4  # 77 train rows / 16


# ------------------------------------------------------------------- 2. resume keeps the record
def test_resume_without_probe_keeps_the_earlier_results(tmp_path):
    first = run_config(run_cfg(tmp_path))
    assert first["accuracy"] is not None
    cfg = run_cfg(tmp_path, resume="auto")
    cfg["probe"] = {"enabled": False}
    again = run_config(cfg)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert again["accuracy"] == saved["accuracy"] == first["accuracy"]
    assert saved["probe"] == first["probe"]


def test_resume_with_a_changed_schedule_is_refused_then_recorded(tmp_path):
    run_config(run_cfg(tmp_path))
    original = (tmp_path / "run" / "config.yaml").read_text()
    before = digest(tmp_path / "run")
    with pytest.raises(ConfigChangedError, match=r"config differs .*train.lr: 0.001 -> 0.5.*--allow-config-change"):
        run_config(run_cfg(tmp_path, resume="auto", lr=0.5))
    with pytest.raises(ConfigChangedError, match=r"train.batch_size: 16 -> 32"):
        run_config(run_cfg(tmp_path, resume="auto", batch_size=32))
    assert digest(tmp_path / "run") == before
    results = run_config(run_cfg(tmp_path, resume="auto", epochs=4, allow_config_change=True))
    assert results["train"]["steps"] == 4 * 4
    assert results["config_changes"] == [{"config": "config.resumed-1.yaml", "changes": {"train.epochs": [2, 4]}}]
    assert (tmp_path / "run" / "config.yaml").read_text() == original  # never overwritten
    assert load_config(tmp_path / "run" / "config.resumed-1.yaml").train["epochs"] == 4
    # The trainer's own record, in the checkpoint.
    assert ckpt_io.load(tmp_path / "run" / CHECKPOINT_NAME)["config_changes"][0]["changes"] == {"epochs": [2, 4]}


def test_resume_with_a_changed_model_says_config_differs(tmp_path):
    run_config(run_cfg(tmp_path))
    cfg = run_cfg(tmp_path, resume="auto")
    cfg["model"]["embed_dim"] = 16
    with pytest.raises(ConfigChangedError, match=r"config differs .* in the model: model.embed_dim: 8 -> 16"):
        run_config(cfg)
    cfg = run_cfg(tmp_path, resume="auto")
    cfg["model"]["critic"] = "concat"
    with pytest.raises(ConfigChangedError, match=r"model.critic: 'separable' -> 'concat'"):
        run_config(cfg)


def test_fit_resume_with_another_model_lists_the_differences(tmp_path):
    data = small_data()
    factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), **FIT)
    with pytest.raises(
        ConfigChangedError,
        match=r"config differs .*shapes differ: heads.s1.*\(8, 16\) in the "
        r"checkpoint, \(12, 16\) in the model",
    ):
        factorcl.fit(small_model(embed_dim=12), loader_of(data), out_dir=str(tmp_path), resume="auto", **FIT)
    with pytest.raises(ConfigChangedError, match=r"lr: 0.003 -> 0.01"):
        factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), resume="auto", **{**FIT, "lr": 1e-2})
    with pytest.raises(ConfigChangedError, match=r"batches_per_epoch \(batch size or data\): 5 -> 11"):
        factorcl.fit(small_model(), loader_of(data, 32), out_dir=str(tmp_path), resume="auto", **FIT)


def test_a_finished_fit_resumed_returns_its_metrics(tmp_path):
    data = small_data()
    first = factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), **FIT)
    again = factorcl.fit(small_model(seed=5), loader_of(data), out_dir=str(tmp_path), resume="auto", **FIT)
    assert again.step == first.step and again.metrics == pytest.approx(first.metrics)
    assert set(again.metrics) >= {"loss", "shared_keep"}


# --------------------------------------------------------------------------------- 3. full disk
def _disk_full_on(calls: set[int]):
    """A torch.save that fails with ENOSPC on the given (1-based) calls."""
    real = torch.save
    count = {"n": 0}

    def save(obj, f, *args, **kwargs):
        count["n"] += 1
        if count["n"] in calls:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *args, **kwargs)

    return save


def test_full_disk_mid_run_warns_keeps_training_and_writes_the_next_checkpoint(tmp_path, monkeypatch):
    data = small_data()
    monkeypatch.setattr(torch, "save", _disk_full_on({1}))  # the first epoch's checkpoint
    with pytest.warns(CheckpointWarning, match=r"no space left .*checkpoint.pt \(needs about .* MiB.*tries again"):
        result = factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), **FIT)
    state = ckpt_io.load(tmp_path / CHECKPOINT_NAME)
    assert state["step"] == result.step == 2 * 5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no half-written file left


def test_full_disk_at_the_last_checkpoint_raises_naming_the_path_and_keeps_the_last_good(tmp_path, monkeypatch):
    data = small_data()
    factorcl.fit(small_model(), loader_of(data), out_dir=str(tmp_path), **{**FIT, "epochs": 1})
    good = digest(tmp_path)[CHECKPOINT_NAME]
    monkeypatch.setattr(torch, "save", _disk_full_on({1, 2, 3}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        with pytest.raises(
            CheckpointWriteError,
            match=rf"{CHECKPOINT_NAME} \(needs about .*MiB free in .*the last "
            r"good checkpoint is .*checkpoint.pt \(step 5\)",
        ):
            factorcl.fit(
                small_model(),
                loader_of(data),
                out_dir=str(tmp_path),
                resume="auto",
                allow_config_change=True,
                **{**FIT, "epochs": 3},
            )
    assert digest(tmp_path)[CHECKPOINT_NAME] == good  # the last good checkpoint is intact


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_on_a_real_tiny_tmpfs(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(CheckpointWriteError, match=r"no space left .*tiny/checkpoint.pt \(needs about"):
            ckpt_io.save_atomic({"w": torch.zeros(100_000)}, mount / CHECKPOINT_NAME)
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# ---------------------------------------------------------------------------- 6. wrong inputs
def test_an_empty_config_file_is_refused(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"config file .*empty.yaml is empty"):
        load_config(path)
    proc = subprocess.run(
        [sys.executable, "-m", "factorcl.cli", "train", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "is empty" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_single_class_probe_is_refused(tmp_path):
    write_pairs(tmp_path / "pairs.npz", labels=np.zeros(96, dtype="int64"))
    with pytest.raises(ValueError, match=r"train split hold a single class \(0\): the linear probe needs at least 2"):
        run_config(run_cfg(tmp_path))


def test_an_empty_valid_split_falls_back_to_val_fraction_and_says_so(tmp_path):
    cfg = run_cfg(tmp_path)
    cfg["data"]["splits"] = [0.8, 0.0, 0.2]
    cfg["probe"] = {"l2_grid": [1e-2, 1e-4]}
    with pytest.warns(UserWarning, match="valid split .* is empty: the probe's L2 is chosen on a 0.2 fraction"):
        results = run_config(cfg)
    assert results["probe"]["all"]["selected_on"] == "val_fraction of train (the valid split is empty)"


def test_out_dir_that_is_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(NotADirectoryError, match=r"out_dir .*taken is a file, not a folder"):
        factorcl.fit(small_model(), loader_of(small_data()), out_dir=str(tmp_path / "taken"), **FIT)
    with pytest.raises(NotADirectoryError, match="is a file"):
        run_config(run_cfg(tmp_path, out="taken"))
    assert (tmp_path / "taken").read_text() == "mine"


def test_out_dir_that_is_not_writable_is_refused_before_training(tmp_path, monkeypatch):
    real = Path.write_bytes

    def read_only(self, data):
        if self.name.startswith(".factorcl-write-test"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)  # root ignores chmod, so simulate the file system
    with pytest.raises(PermissionError, match=r"out_dir .*ro is not writable \(Permission denied\)"):
        factorcl.fit(small_model(), loader_of(small_data()), out_dir=str(tmp_path / "ro"), **FIT)


def test_nan_in_an_input_names_the_input_and_rows():
    data = small_data()
    fields = data.split("train").tensors()
    x1, x2 = fields["x1"].clone(), fields["x2"].clone()
    x1[[3, 17]] = float("nan")
    loader = DataLoader(TensorDataset(x1[:64], x2[:64]), batch_size=64)
    with pytest.raises(NonFiniteLossError, match=r"x1 contains NaN at rows \[3, 17\] of this batch"):
        factorcl.fit(small_model(), loader, **FIT)


# ------------------------------------------------------------------------------ files on disk
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_run_file_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert file_mode() == 0o666 & ~umask
        run_config(run_cfg(tmp_path))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert set(modes) >= {"checkpoint.pt", "metrics.csv", "results.json", "config.yaml", SAFETENSORS_NAME}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_checkpoints_load_weights_only_and_safetensors_match_the_model(tmp_path):
    from safetensors.torch import load_file

    model = small_model()
    factorcl.fit(model, loader_of(small_data()), out_dir=str(tmp_path), **FIT)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)  # no pickled code
    assert state["step"] == 10
    weights = load_file(tmp_path / SAFETENSORS_NAME)
    assert set(weights) == set(model.state_dict())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0)


def test_a_checkpoint_with_numpy_rng_state_from_the_previous_format_still_loads(tmp_path):
    legacy = {"step": 3, "rng": {"numpy": np.random.get_state()}, "model": {"w": torch.ones(2)}}
    torch.save(legacy, tmp_path / "old.pt")
    state = ckpt_io.load(tmp_path / "old.pt")
    assert state["step"] == 3 and state["rng"]["numpy"][1].dtype == np.uint32


def test_a_checkpoint_with_foreign_objects_is_not_unpickled(tmp_path):
    torch.save({"step": 1, "payload": Path("x")}, tmp_path / "foreign.pt")
    with pytest.raises(
        ValueError, match=r"foreign.pt: it holds Python objects \(pathlib.PosixPath\) other than tensors"
    ):
        ckpt_io.load(tmp_path / "foreign.pt")


def test_a_truncated_checkpoint_says_so(tmp_path):
    model = small_model()
    factorcl.fit(model, loader_of(small_data()), out_dir=str(tmp_path / "r"), **FIT)
    data = (tmp_path / "r" / CHECKPOINT_NAME).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"could not read checkpoint .*cut.pt: not a complete torch checkpoint"):
        ckpt_io.load(tmp_path / "cut.pt")


def test_a_config_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes("out_dir: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"run.yaml is not UTF-8 \(byte 0xe9 at offset 12, line 1\)"):
        load_config(path)


# ------------------------------------------------------------- found by a new-user review
def _lrs(path: Path) -> list[float]:
    import csv

    with path.open() as f:
        return [float(row["lr"]) for row in csv.DictReader(f)]


def test_an_allowed_lr_change_is_applied_from_the_first_resumed_step(tmp_path):
    run_config(run_cfg(tmp_path, schedule="constant", stop_after=2, epochs=2))
    run_config(run_cfg(tmp_path, schedule="constant", epochs=2, resume="auto", lr=1e-2, allow_config_change=True))
    lrs = _lrs(tmp_path / "run" / "metrics.csv")
    assert lrs[:2] == [1e-3, 1e-3] and lrs[2:] == [1e-2] * 6


def test_a_resumed_cosine_schedule_continues_from_the_new_schedule_not_from_zero(tmp_path):
    import math

    run_config(run_cfg(tmp_path))  # 2 epochs x 4 steps, cosine to 0 at step 8
    run_config(run_cfg(tmp_path, resume="auto", epochs=4, lr=1e-2, allow_config_change=True))
    lrs = _lrs(tmp_path / "run" / "metrics.csv")
    expected = [1e-2 * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(8, 16)]
    assert lrs[8:] == pytest.approx(expected, rel=1e-9)


def test_a_second_resume_compares_with_the_latest_allowed_config(tmp_path):
    run_config(run_cfg(tmp_path))
    run_config(run_cfg(tmp_path, resume="auto", epochs=3, allow_config_change=True))
    again = run_config(run_cfg(tmp_path, resume="auto", epochs=3))  # the same settings: no change
    assert [c["config"] for c in again["config_changes"]] == ["config.resumed-1.yaml"]
    with pytest.raises(ConfigChangedError, match=r"config.resumed-1.yaml\): train.epochs: 3 -> 2"):
        run_config(run_cfg(tmp_path, resume="auto"))


def test_resume_of_a_run_without_its_checkpoint_says_so_and_writes_nothing(tmp_path):
    run_config(run_cfg(tmp_path))
    (tmp_path / "run" / CHECKPOINT_NAME).unlink()
    before = digest(tmp_path / "run")
    with pytest.raises(RunExistsError, match=r"but no checkpoint.pt to resume from .*--overwrite"):
        run_config(run_cfg(tmp_path, resume="auto", lr=1e-2, allow_config_change=True))
    with pytest.raises(RunExistsError, match=r"but no checkpoint.pt to resume from"):
        factorcl.fit(small_model(), loader_of(small_data()), out_dir=str(tmp_path / "run"), resume="auto", **FIT)
    assert digest(tmp_path / "run") == before


def test_full_disk_before_any_checkpoint_says_to_run_again_with_overwrite(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _disk_full_on(set(range(1, 10))))
    with pytest.warns(CheckpointWarning) as caught:
        with pytest.raises(
            CheckpointWriteError,
            match=r"no checkpoint of this run was written yet: free space and "
            r"run again with --overwrite",
        ):
            factorcl.fit(small_model(), loader_of(small_data()), out_dir=str(tmp_path), **FIT)
    disk = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(disk) == 1  # the first epoch's checkpoint; the last one raises instead of warning again


def test_a_run_that_fails_before_training_leaves_no_config_behind(tmp_path):
    write_pairs(tmp_path / "pairs.npz", labels=np.zeros(96, dtype="int64"))
    with pytest.raises(ValueError, match=r"labels 'y' of .* train split hold a single class \(0\)"):
        run_config(run_cfg(tmp_path))
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())  # refused before training
    write_pairs(tmp_path / "pairs.npz")
    assert run_config(run_cfg(tmp_path))["accuracy"] is not None  # the same folder, now without a refusal


def test_a_last_batch_of_one_row_is_refused_before_training(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"last training batch would hold 1 row \(77 train rows, train.batch_size "
        r"19, drop_last off\)",
    ):
        run_config(run_cfg(tmp_path, batch_size=19, drop_last=False))


@pytest.mark.parametrize("text", ["", "{}", "  \n"])
def test_an_empty_json_config_is_refused(tmp_path, text):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"run.json is empty"):
        load_config(path)


def test_linear_probe_itself_refuses_a_single_class():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match=r"train_labels hold a single class \(1, all 20 rows\)"):
        factorcl.linear_probe(x, torch.ones(20, dtype=torch.long), x, torch.ones(20, dtype=torch.long))
