"""``factorcl quantify`` end to end: synthetic config, a generated MultiBench file, an npz, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from factorcl import cli
from factorcl.data.fake import write_fake_affect

pytest.importorskip("cvxpy")


def _config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    return path


@pytest.mark.slow
def test_quantify_synthetic_config_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(
        tmp_path, {"kind": "synthetic", "synthetic": {"num_samples": 3000, "unique_ratio": 1.0, "label": "two_bits"}}
    )
    out = tmp_path / "q"
    args = ["quantify", "--config", str(cfg), "--out-dir", str(out), "--bootstrap", "5", "--quiet"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "PID of I(X1,X2;Y) (BATCH, bits)" in text and "unique U1" in text
    assert "The FactorCL chapter's terms" in text and "I(X1;Y|X2)" in text
    assert "FactorCL's unique terms are expected to matter" in text and "Rests on" in text
    record = json.loads((out / "quantify.json").read_text())
    assert record["split"] == "train" and record["rows"] == 2100 and record["method"] == "batch"
    pid = record["pid"]
    assert pid["R"] + pid["U1"] + pid["U2"] + pid["S"] == pytest.approx(pid["total"])
    assert pid["shares"]["unique_share"] > 0.5 and set(pid["ci"]) >= {"R", "U1", "unique_share"}
    assert record["chapter_terms"]["I(X1;Y|X2)"] > 0.4
    assert (out / "quantify.png").read_bytes()[:4] == b"\x89PNG"
    # Nothing is overwritten without --overwrite.
    assert cli.main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite", "--method", "cvx", "--clusters", "6", "--no-chapter-terms"]) == 0
    assert json.loads((out / "quantify.json").read_text())["method"] == "cvx"
    # Every split together, and a BatchConfig setting from the command line.
    more = ["--overwrite", "--split", "all", "--no-chapter-terms", "--bootstrap", "0"]
    assert cli.main([*args, *more, "--batch-option", "align_epochs=2", "--batch-option", "lr=0.002"]) == 0
    record = json.loads((out / "quantify.json").read_text())
    assert record["rows"] == 3000 and record["pid"]["info"]["config"]["align_epochs"] == 2
    assert record["pid"]["info"]["config"]["lr"] == 0.002
    capsys.readouterr()
    assert cli.main([*args, *more, "--batch-option", "align_epochs"]) == 2
    assert "--batch-option must be KEY=VALUE" in capsys.readouterr().err


def test_quantify_generated_multibench_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkl = write_fake_affect(tmp_path / "mosi_raw.pkl", "mosi", sizes=(400, 40, 40), seq_len=6)
    cfg = _config(tmp_path, {"kind": "multibench", "path": str(pkl), "modalities": ["vision", "text"]})
    out = tmp_path / "mb"
    args = ["quantify", "--config", str(cfg), "--out-dir", str(out), "--method", "cvx", "--clusters", "5"]
    assert cli.main([*args, "--bootstrap", "3", "--no-chapter-terms", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "PID of I(X1,X2;Y) (CVX, bits)" in text
    record = json.loads((out / "quantify.json").read_text())
    assert record["modalities"] == ["vision", "text"] and "masked time mean" in record["inputs"]
    assert record["pid"]["info"]["discretization"]["joint_shape"] == [5, 5, 2]


def test_quantify_npz_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=300)
    x1 = (2 * y - 1)[:, None] + rng.standard_normal((300, 1))
    x2 = rng.standard_normal((300, 1))
    np.savez(tmp_path / "pairs.npz", x1=x1, x2=x2, y=y)
    out = tmp_path / "npz"
    base = ["quantify", "--data", str(tmp_path / "pairs.npz"), "--out-dir", str(out), "--quiet", "--no-chapter-terms"]
    assert cli.main([*base, "--bins", "8", "--bootstrap", "0"]) == 0
    record = json.loads((out / "quantify.json").read_text())
    assert record["method"] == "cvx"  # auto: both modalities are 1-D
    assert record["pid"]["U1"] > 3 * max(record["pid"]["U2"], record["pid"]["R"], 1e-3)
    capsys.readouterr()
    # Continuous labels, a one-class file, too many clusters, a bad flag: each a clear error.
    np.savez(tmp_path / "cont.npz", x1=x1, x2=x2, y=rng.standard_normal(300))
    assert cli.main(["quantify", "--data", str(tmp_path / "cont.npz"), "--out-dir", str(tmp_path / "c")]) == 2
    assert "y in cont.npz must hold integer class labels" in capsys.readouterr().err
    np.savez(tmp_path / "one.npz", x1=x1, x2=x2, y=np.zeros(300, dtype=int))
    assert cli.main(["quantify", "--data", str(tmp_path / "one.npz"), "--out-dir", str(tmp_path / "o")]) == 2
    assert "y must hold at least two classes" in capsys.readouterr().err
    wide = rng.standard_normal((300, 3))
    np.savez(tmp_path / "wide.npz", x1=wide, x2=wide, y=y)
    args = ["quantify", "--data", str(tmp_path / "wide.npz"), "--method", "cvx", "--clusters", "400"]
    assert cli.main([*args, "--out-dir", str(tmp_path / "w")]) == 2
    assert "clusters=400 needs at least 400 samples of x1" in capsys.readouterr().err
    assert cli.main([*base, "--overwrite", "--bootstrap", "-1"]) == 2
    assert "--bootstrap must be >= 0" in capsys.readouterr().err
