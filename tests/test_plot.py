"""factorcl.plot and ``factorcl plot``: one panel per quantity, a valid PNG from real and awkward runs, clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import factorcl
from factorcl import cli
from factorcl.metrics_log import MetricsLog
from factorcl.plot import PLOT_NAME, find_metrics, load_series, panel_groups, plot_run
from factorcl_helpers import small_data, small_model

FIT = dict(epochs=1, lr=3e-3, critic_steps=1, progress=False, tensorboard=False, device="cpu")


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking that it is a complete one."""
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real (tiny) training run with evaluations, as the Trainer and an evaluation callback leave it,
    and the keys of the metrics the model returned."""
    out = tmp_path_factory.mktemp("run")
    loader = small_data(num_samples=256).split("train").loader(32, shuffle=True, drop_last=True, seed=0)
    result = factorcl.fit(small_model(), loader, out_dir=str(out), **FIT)
    log = MetricsLog(out, result.step, tensorboard=False)  # a resume at the last step: keeps every row
    log.write_eval(2, {"knn_top1": 0.5, "probe_loss": 1.5})
    log.write_eval(result.step, {"knn_top1": 0.75, "probe_loss": 1.25})
    log.close()
    return out, [k for k in result.metrics if "/" not in k]


@pytest.fixture(scope="module")
def run_dir(run):
    return run[0]


def write_csv(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_real_run_draws_every_quantity(run):
    run_dir, terms = run
    series = load_series(find_metrics(run_dir))
    groups = panel_groups(series)
    titles = list(groups)
    assert "shared_keep" in terms and "unique_keep1" in terms
    assert titles[0] == "loss"
    assert set(terms) <= set(titles)  # the loss and each term's estimate have their panel
    assert titles[-4:] == ["critic_loss", "lr", "evaluation", "eval/probe_loss"]
    assert groups["shared_remove"] == ["shared_remove", "bracket/shared_remove"]  # the diagnostic beside its term
    assert groups["evaluation"] == ["eval/knn_top1"]  # accuracies together; the loss on its own scale
    assert not {"step", "epoch", "time_s"} & set(series)
    steps, values = series["eval/knn_top1"]
    assert steps.tolist()[0] == 2 and values.tolist() == [0.5, 0.75]

    path = plot_run(run_dir)
    assert path == run_dir / PLOT_NAME
    width, height = png_size(path)
    assert width > 1000 and height > 1000  # a grid of 3 columns, several rows


def test_columns_select_the_panels_and_out_replaces_a_file(run_dir, tmp_path):
    out = tmp_path / "figs" / "loss.png"
    write_csv(out, "an older figure")
    assert plot_run(run_dir, out=out, columns=["loss"]) == out
    one_panel = png_size(out)
    assert one_panel[0] < 600  # one panel, not the grid
    assert [p.name for p in out.parent.iterdir()] == ["loss.png"]  # written through a temporary file, no leftover


def test_awkward_csvs_one_row_nan_missing_columns(tmp_path):
    # One row, a NaN, an empty cell, a column with no value at all, no epoch/lr columns.
    write_csv(tmp_path / "a" / "metrics.csv", "step,loss,critic_loss,shared_keep\n1,0.5,nan,\n")
    path = plot_run(tmp_path / "a")
    png_size(path)
    assert list(load_series(tmp_path / "a" / "metrics.csv")) == ["loss"]

    # Columns that appeared late (empty cells before), and a NaN in the middle of a series.
    write_csv(tmp_path / "b" / "metrics.csv", "step,loss,late\n1,0.5,\n2,nan,\n3,0.25,1.0\n")
    steps, values = load_series(tmp_path / "b" / "metrics.csv")["loss"]
    assert steps.tolist() == [1, 3] and values.tolist() == [0.5, 0.25]
    png_size(plot_run(tmp_path / "b"))


@pytest.mark.parametrize("n", [500, 5000])  # a moving mean; the mean and range of bins
def test_long_series(tmp_path, n):
    steps = np.arange(1, n + 1)
    lines = ["step,lr,loss"] + [f"{s},{1e-3 * (1 - s / n)},{math.sin(s / 20) + 0.3 * (-1) ** s}" for s in steps]
    write_csv(tmp_path / "metrics.csv", "\n".join(lines) + "\n")
    png_size(plot_run(tmp_path))


def test_a_clip_train_folder_is_found_in_its_train_subfolder(tmp_path):
    write_csv(tmp_path / "train" / "metrics.csv", "step,epoch,loss\n1,0,0.5\n2,0,0.4\n")
    write_csv(tmp_path / "train" / "eval.csv", "step,eval/zero_shot_top1\n2,0.3\n")
    assert find_metrics(tmp_path) == tmp_path / "train" / "metrics.csv"
    assert list(panel_groups(load_series(find_metrics(tmp_path)))) == ["loss", "evaluation"]
    path = plot_run(tmp_path)
    assert path == tmp_path / "train" / PLOT_NAME  # beside the metrics it draws, as the Trainer writes it
    png_size(path)


def test_errors_name_the_paths_and_the_columns(tmp_path, run_dir):
    with pytest.raises(FileNotFoundError) as err:
        plot_run(tmp_path / "nothing")
    assert str(tmp_path / "nothing" / "metrics.csv") in str(err.value)
    assert str(tmp_path / "nothing" / "train" / "metrics.csv") in str(err.value)
    with pytest.raises(ValueError, match=r"no values for column\(s\) los in .*columns with values: lr, .*loss"):
        plot_run(run_dir, out=tmp_path / "x.png", columns=["los"])
    write_csv(tmp_path / "empty" / "metrics.csv", "step,loss\n")
    with pytest.raises(ValueError, match="has no rows with values to plot"):
        plot_run(tmp_path / "empty")
    assert not (tmp_path / "empty" / PLOT_NAME).exists()


def test_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.png"
    assert cli.main(["plot", str(run_dir), "--out", str(out), "--columns", "loss", "eval/knn_top1"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert png_size(out)[0] < 1200  # two panels

    assert cli.main(["plot", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("factorcl plot: error: no metrics.csv in ") and str(tmp_path / "missing") in err
    assert cli.main(["plot", str(run_dir), "--out", str(out), "--columns", "nope"]) == 2
    assert "no values for column(s) nope" in capsys.readouterr().err
