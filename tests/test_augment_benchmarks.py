"""Smoke tests of benchmarks/augment_speed.py and benchmarks/augment_gallery.py (quick modes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import augment_gallery, augment_speed


def test_speed_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    result = augment_speed.main(["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert set(data) == {"config", "sequences", "images", "checks"}
    # One PASS/FAIL line per sequence row: on CPU the claim is "never slower than the loop".
    assert len(data["checks"]) == 4
    for line, row in zip(data["checks"], data["sequences"]):
        assert line.startswith(("PASS: ", "FAIL: ")) and row["name"] in line and ">= 1x" in line
        assert line.startswith("PASS") == (row["speedup"] >= 1.0)
    assert data["config"]["quick"] is True
    names = [r["name"] for r in data["sequences"]]
    assert "random choice per sample" in names and len(names) == 4
    for r in data["sequences"]:
        assert r["loop_ms"] > 0 and r["vectorised_ms"] > 0
        assert r["speedup"] == pytest.approx(r["loop_ms"] / r["vectorised_ms"])
    assert [r["preset"] for r in data["images"]] == ["standard", "unique"]
    for r in data["images"]:
        assert r["kornia_ms"] > 0 and r["albumentations_ms"] > 0
        assert r["kornia_speedup"] == pytest.approx(r["albumentations_ms"] / r["kornia_ms"])
    printed = capsys.readouterr().out
    assert "speedup" in printed and "albumentations" in printed


def test_gallery_writes_png(tmp_path):
    out = tmp_path / "gallery.png"
    path = augment_gallery.main(["--out", str(out), "--views", "2"])
    assert Path(path) == out
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # not a blank canvas
