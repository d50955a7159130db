"""Weights & Biases logging through MetricsLog, in offline mode: the run's files, its logged history and
config, the same W&B run on resume, and a clear error without wandb."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from factorcl.metrics_log import MetricsLog
from factorcl.wandb_log import WANDB_ID_NAME

CONFIG = {"lr": 0.001, "epochs": 2, "out_dir": "somewhere", "grad_clip": None}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """wandb offline, silent, with every one of its folders inside tmp_path."""
    pytest.importorskip("wandb")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.delenv("WANDB_RESUME", raising=False)
    return tmp_path


def wandb_records(path: Path) -> list:
    """The records of an offline ``run-<id>.wandb`` file.

    Its format is LevelDB's log: a 7-byte file header (``:W&B``, magic, version), then 32 KiB blocks
    of chunks, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, pending, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # the zero padding at a block's end
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """The records of a finished offline run, once its ``exit`` record is on disk.

    ``run.finish()`` returns when W&B's service has the run, and a loaded machine (a CI run of the
    whole suite) was seen reading the file before its history had been written; so wait for the end.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def history(path: Path) -> dict[int, dict[str, float]]:
    """``{step: {key: value}}`` of the metrics logged to an offline W&B run."""
    steps: dict[int, dict[str, float]] = {}
    for record in finished_records(path):
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            steps[items.pop("_step")] = {k: v for k, v in items.items() if not k.startswith("_")}
    return steps


def config_of(path: Path) -> dict:
    for record in finished_records(path):
        if record.WhichOneof("record_type") == "config":
            return {u.key: json.loads(u.value_json) for u in record.config.update}
    return {}


def train(out_dir: Path, steps: range, resume_step: int | None) -> MetricsLog:
    log = MetricsLog(
        out_dir, resume_step, tensorboard=False, wandb_project="factorcl-tests", wandb_name="tiny", config=CONFIG
    )
    for step in steps:
        log.write({"step": step, "epoch": 0, "lr": 0.001, "loss": 1.0 / step, "shared_keep": 0.1 * step})
        if step % 2 == 0:
            log.write_eval(step, {"knn_top1": step / 10})
    log.close()
    return log


def test_offline_run_logs_every_row_the_evaluations_and_the_config(offline):
    out = offline / "run"
    log = train(out, range(1, 5), None)
    run_id = (out / WANDB_ID_NAME).read_text().strip()
    assert log.wandb.id == run_id
    (run_file,) = (out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    logged = history(run_file)
    assert sorted(logged) == [1, 2, 3, 4]
    assert logged[3] == {"epoch": 0, "lr": 0.001, "loss": pytest.approx(1 / 3), "shared_keep": pytest.approx(0.3)}
    assert logged[2]["eval/knn_top1"] == pytest.approx(0.2) and logged[2]["loss"] == 0.5
    assert "eval/knn_top1" not in logged[3]
    assert {k: v for k, v in config_of(run_file).items() if k in CONFIG} == CONFIG
    assert (out / "metrics.csv").is_file() and (out / "eval.csv").is_file()  # the files are written as before


def test_resume_continues_the_same_wandb_run_and_a_new_run_gets_a_new_one(offline):
    out = offline / "run"
    train(out, range(1, 4), None)
    first = (out / WANDB_ID_NAME).read_text().strip()
    train(out, range(3, 6), resume_step=2)
    assert (out / WANDB_ID_NAME).read_text().strip() == first
    # Offline, each session is its own folder (offline-run-<time>-<id>, "-1" added when the time is
    # the same); `wandb sync` joins them into one run.
    runs = list((out / "wandb").glob(f"offline-run-*-{first}*/run-{first}.wandb"))
    assert sorted(sorted(history(run)) for run in runs) == [[1, 2, 3], [3, 4, 5]]

    train(out, range(1, 2), None)
    assert (out / WANDB_ID_NAME).read_text().strip() != first


@pytest.mark.parametrize("resume_step", [None, 1])
def test_no_wandb_installed_names_the_extra_and_changes_nothing(tmp_path, monkeypatch, resume_step):
    (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.25\n")
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing it raises ImportError
    with pytest.raises(ImportError, match=r'pip install "factorcl\[wandb\]"'):
        MetricsLog(tmp_path, resume_step, tensorboard=False, wandb_project="p")
    assert (tmp_path / "metrics.csv").read_text() == "step,loss\n1,0.5\n2,0.25\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_a_bad_mode_is_named(tmp_path):
    with pytest.raises(ValueError, match="wandb_mode='ofline' is not valid: one of online, offline, disabled"):
        MetricsLog(tmp_path, None, tensorboard=False, wandb_project="p", wandb_mode="ofline")


def test_the_trainer_logs_a_run_to_wandb_offline(offline):
    import factorcl
    from factorcl_helpers import small_data, small_model

    out = offline / "fit"
    loader = small_data().split("train").loader(64, shuffle=True, drop_last=True, seed=0)
    kw = dict(epochs=1, critic_steps=1, progress=False, tensorboard=False, device="cpu", plot=False)
    result = factorcl.fit(small_model(), loader, out_dir=str(out), wandb_project="factorcl-tests", **kw)
    run_id = (out / WANDB_ID_NAME).read_text().strip()
    (run_file,) = (out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    logged = history(run_file)
    assert sorted(logged) == list(range(1, result.step + 1))
    assert logged[result.step]["loss"] == pytest.approx(result.metrics["loss"])
    config = config_of(run_file)
    assert config["train"]["epochs"] == 1 and config["train"]["wandb_project"] == "factorcl-tests"
    with pytest.raises(ValueError, match="wandb_project"):
        factorcl.fit(small_model(), loader, wandb_project="factorcl-tests", **kw)  # W&B needs an out_dir
