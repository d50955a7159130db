"""benchmarks/multibench.py: the Table 4.2 protocol on small generated files in the real formats."""

from __future__ import annotations

import json

import pytest

from benchmarks import multibench as bench


def test_quick_runs_the_whole_protocol(tmp_path, capsys):
    out = tmp_path / "mb.json"
    assert bench.main(["--quick", "--out", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    data = json.loads(out.read_text())
    assert data["config"]["quick"] is True and not data["skipped"]
    assert data["config"]["methods"] == list(bench.METHODS) and data["config"]["datasets"] == list(bench.DATASETS)
    runs = data["runs"]
    assert len(runs) == len(bench.METHODS) * len(bench.DATASETS)
    assert all("error" not in r and 0.0 <= r["accuracy"] <= 1.0 for r in runs)
    for r in runs:
        parts = set(r["probe"])
        assert parts == ({"all", "S", "U1", "U2"} if r["method"] in bench.FACTORISED else {"all"})
    assert set(data["summary"]["factorcl-sup"]["mimic"]) >= {"mean", "std", "n", "S", "U1", "U2"}
    printed = capsys.readouterr().out
    for col in ("MIMIC", "MOSEI", "MOSI", "UR-FUNNY", "MUSTARD", "Paper (Table 4.2)", "factorcl-sup U1"):
        assert col in printed
    # Every run left its checkpoint and config behind.
    assert (tmp_path / "work" / "mosi" / "factorcl-sup" / "seed0" / "checkpoint.pt").is_file()


def test_missing_files_are_skipped_and_file_overrides(tmp_path, capsys):
    from factorcl.data.fake import write_fake_affect

    path = write_fake_affect(tmp_path / "my_sarcasm.pkl", "sarcasm", sizes=(24, 8, 8))
    out = tmp_path / "mb.json"
    rc = bench.main(
        [
            "--data-dir",
            str(tmp_path / "empty"),
            "--file",
            f"mustard={path}",
            "--methods",
            "simclr",
            "supcon",
            "--datasets",
            "mosi",
            "mustard",
            "--epochs",
            "1",
            "--seeds",
            "0",
            "1",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "MOSI: skipped (file not found: mosi_raw.pkl or mosi_data.pkl in" in printed
    data = json.loads(out.read_text())
    assert set(data["skipped"]) == {"mosi"}
    assert len(data["runs"]) == 4 and {r["dataset"] for r in data["runs"]} == {"sarcasm"}
    assert data["summary"]["simclr"]["sarcasm"]["n"] == 2
    assert "±" in printed


def test_argument_errors(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--methods", "simclrr", "--quick"])
    assert "--methods" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main([])
    assert "--data-dir" in capsys.readouterr().err
