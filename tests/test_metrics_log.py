"""MetricsLog: metrics.csv and eval.csv keep every column, resumes drop the rows past the checkpoint, and
a missing TensorBoard is warned about once."""

from __future__ import annotations

import csv
import sys
import types
import warnings
from pathlib import Path

import pytest

import factorcl
from factorcl import metrics_log
from factorcl.metrics_log import EVAL_NAME, MetricsLog, read_metrics
from factorcl.train import METRICS_NAME, Trainer
from factorcl_helpers import small_data, small_model

FIT = dict(epochs=1, lr=3e-3, critic_steps=1, progress=False, tensorboard=False, device="cpu")


def rows_of(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def row(step: int, **extra: float) -> dict[str, float]:
    return {"step": step, "epoch": 0, "lr": 0.1, "loss": 1.0 / step, **extra}


def test_columns_that_appear_later_are_kept_and_earlier_rows_get_empty_cells(tmp_path):
    log = MetricsLog(tmp_path, None, tensorboard=False)
    log.write(row(1))
    log.write(row(2, late=5.0))
    log.write(row(3))
    log.close()
    columns, rows = rows_of(tmp_path / METRICS_NAME)
    assert columns == ["step", "epoch", "lr", "loss", "late"]
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert [r["late"] for r in rows] == ["", "5.0", ""]
    assert not list(tmp_path.glob(".*.tmp"))  # the widening rewrite went through a temporary file


def test_eval_metrics_go_to_eval_csv_one_row_per_step(tmp_path):
    log = MetricsLog(tmp_path, None, tensorboard=False)
    for step in (1, 2, 3, 4):
        log.write(row(step))
    log.write_eval(2, {"knn_top1": 0.5})
    log.write_eval(2, {"eval/zero_shot_top1": 0.25})  # a second evaluation of the same step: same row
    log.write_eval(4, {"knn_top1": 0.75, "image_to_text_R@1": 0.125})
    log.write(row(5, **{"eval/knn_top1": 0.8}))  # eval/ keys of a training row go to eval.csv too
    log.close()
    columns, rows = rows_of(tmp_path / EVAL_NAME)
    assert columns == ["step", "eval/knn_top1", "eval/zero_shot_top1", "eval/image_to_text_R@1"]
    assert rows == [
        {"step": "2", "eval/knn_top1": "0.5", "eval/zero_shot_top1": "0.25", "eval/image_to_text_R@1": ""},
        {"step": "4", "eval/knn_top1": "0.75", "eval/zero_shot_top1": "", "eval/image_to_text_R@1": "0.125"},
        {"step": "5", "eval/knn_top1": "0.8", "eval/zero_shot_top1": "", "eval/image_to_text_R@1": ""},
    ]
    train_columns, train_rows = rows_of(tmp_path / METRICS_NAME)
    assert train_columns == ["step", "epoch", "lr", "loss"]  # metrics.csv stays one row per step
    assert [r["step"] for r in train_rows] == ["1", "2", "3", "4", "5"]


def test_resume_drops_rows_past_the_step_in_both_files_and_a_new_run_starts_empty(tmp_path):
    log = MetricsLog(tmp_path, None, tensorboard=False)
    for step in range(1, 7):
        log.write(row(step))
        if step % 2 == 0:
            log.write_eval(step, {"knn_top1": step / 10})
    log.close()
    with (tmp_path / METRICS_NAME).open("a") as f:
        f.write("7,0,0.1")  # the last line of a run killed while writing it

    MetricsLog(tmp_path, 3, tensorboard=False).close()
    assert [r["step"] for r in rows_of(tmp_path / METRICS_NAME)[1]] == ["1", "2", "3"]
    assert rows_of(tmp_path / EVAL_NAME) == (["step", "eval/knn_top1"], [{"step": "2", "eval/knn_top1": "0.2"}])

    resumed = MetricsLog(tmp_path, 3, tensorboard=False)
    resumed.write(row(4))
    resumed.write_eval(4, {"knn_top1": 0.4})
    resumed.close()
    assert [r["step"] for r in rows_of(tmp_path / METRICS_NAME)[1]] == ["1", "2", "3", "4"]
    assert [r["step"] for r in rows_of(tmp_path / EVAL_NAME)[1]] == ["2", "4"]

    MetricsLog(tmp_path, None, tensorboard=False).close()  # a new run (or overwrite): no old rows survive
    assert not (tmp_path / METRICS_NAME).exists() and not (tmp_path / EVAL_NAME).exists()


def test_read_metrics_leaves_out_incomplete_rows(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("step,loss\n1,0.5\n2,0.25\n3\n,0.1\n")
    assert read_metrics(path) == (["step", "loss"], [{"step": "1", "loss": "0.5"}, {"step": "2", "loss": "0.25"}])


def test_no_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = MetricsLog(None, None, tensorboard=True, wandb_project="never-started")
    log.write(row(1, **{"eval/knn_top1": 0.5}))
    log.write_eval(1, {"knn_top1": 0.5})
    log.close()
    assert list(tmp_path.iterdir()) == []


def test_trainer_resume_rewrites_the_rows_the_stopped_run_wrote_after_its_checkpoint(tmp_path):
    """A run killed at step 3 (checkpoint at 2), resumed: every step and evaluation is there exactly once."""
    data = small_data(num_samples=256)

    def trainer(resume: str | None, crash_at: int | None) -> Trainer:
        loader = data.split("train").loader(32, shuffle=True, drop_last=True, seed=0)
        t = Trainer(small_model(), loader, out_dir=str(tmp_path), checkpoint_every=2, resume=resume, **FIT)

        def evaluate(metrics_row: dict[str, float]) -> None:  # what an evaluation callback does
            step = int(metrics_row["step"])
            if step % 2 == 1:
                t.metrics_log.write_eval(step, {"knn_top1": step / 100})
            if step == crash_at:
                raise KeyboardInterrupt

        t.callbacks.append(evaluate)
        return t

    with pytest.raises(KeyboardInterrupt):
        trainer(None, crash_at=3).fit()
    assert [r["step"] for r in rows_of(tmp_path / METRICS_NAME)[1]] == ["1", "2", "3"]
    assert [r["step"] for r in rows_of(tmp_path / EVAL_NAME)[1]] == ["1", "3"]

    result = trainer("auto", crash_at=None).fit()
    steps = [r["step"] for r in rows_of(tmp_path / METRICS_NAME)[1]]
    assert steps == [str(s) for s in range(1, result.step + 1)]
    evals = rows_of(tmp_path / EVAL_NAME)[1]
    assert [r["step"] for r in evals] == [str(s) for s in range(1, result.step + 1, 2)]
    assert float(evals[1]["eval/knn_top1"]) == 0.03


class FakeSummaryWriter:
    """Stands in for TensorBoard's writer (not installed here): records the scalars."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir, self.scalars, self.closed = log_dir, [], False

    def add_scalar(self, key: str, value: float, step: int) -> None:
        self.scalars.append((key, value, step))

    def close(self) -> None:
        self.closed = True


def test_tensorboard_gets_training_and_eval_scalars(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeSummaryWriter))
    log = MetricsLog(tmp_path, None, tensorboard=True)
    log.write(row(1))
    log.write_eval(1, {"knn_top1": 0.5})
    log.close()
    assert log.writer.log_dir == str(tmp_path / "tensorboard") and log.writer.closed
    assert log.writer.scalars == [("lr", 0.1, 1), ("loss", 1.0, 1), ("eval/knn_top1", 0.5, 1)]


def test_missing_tensorboard_warns_once_per_process(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it raises ImportError
    monkeypatch.setattr(metrics_log, "_tensorboard_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MetricsLog(tmp_path / "a", None, tensorboard=False).close()
        assert caught == []  # not asked for: nothing to say
        for name in ("b", "c"):
            log = MetricsLog(tmp_path / name, None, tensorboard=True)
            log.write(row(1))
            log.close()
            assert log.writer is None
    (warning,) = caught
    message = str(warning.message)
    assert "pip install tensorboard" in message and 'pip install "factorcl[tensorboard]"' in message
    assert "tensorboard=False" in message
    assert (tmp_path / "c" / METRICS_NAME).is_file()  # the CSV is still written


def test_tensorboard_errors_other_than_a_missing_package_raise(tmp_path, monkeypatch):
    def broken(log_dir: str) -> None:
        raise PermissionError(f"cannot write {log_dir}")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=broken))
    with pytest.raises(PermissionError, match="cannot write"):
        MetricsLog(tmp_path, None, tensorboard=True)


def test_fit_without_tensorboard_installed_warns_and_trains(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setattr(metrics_log, "_tensorboard_warned", False)
    loader = small_data(num_samples=128).split("train").loader(32, shuffle=True, drop_last=True, seed=0)
    with pytest.warns(UserWarning, match="tensorboard package is not installed"):
        result = factorcl.fit(small_model(), loader, out_dir=str(tmp_path), **{**FIT, "tensorboard": True})
    assert len(rows_of(tmp_path / METRICS_NAME)[1]) == result.step
