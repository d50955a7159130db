"""Smoke tests of benchmarks/clip_step.py: --quick on the CPU, and full mode skipping cleanly without CUDA."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import clip_step


def test_quick_mode_measures_both_steps_and_writes_json(tmp_path, capsys):
    out = tmp_path / "clip_step.json"
    threads = torch.get_num_threads()
    assert clip_step.main(["--quick", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # restored
    data = json.loads(out.read_text())
    assert data["skipped"] is None and data["config"]["quick"] is True and data["config"]["batch_size"] == 8
    assert [r["method"] for r in data["results"]] == ["clip", "factorcl-ssl"]
    for r in data["results"]:
        assert r["step_ms"] > 0 and r["pairs_per_s"] == pytest.approx(8 / (r["step_ms"] / 1e3))
    assert data["ratio"] == pytest.approx(data["results"][1]["step_ms"] / data["results"][0]["step_ms"])
    printed = capsys.readouterr().out
    assert "pairs/s" in printed and "ratio (FactorCL step time / CLIP step time)" in printed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_full_mode_skips_cleanly_without_cuda(tmp_path, capsys):
    out = tmp_path / "full.json"
    assert clip_step.main(["--out", str(out)]) == 0
    assert "skipped: needs CUDA" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert (
        "needs CUDA" in data["skipped"]
        and data["config"]["model"] == "ViT-B-32"
        and data["config"]["batch_size"] == 256
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_full_mode_on_cuda_small_batch(tmp_path):
    out = tmp_path / "cuda.json"
    assert clip_step.main(["--batch-size", "32", "--repeats", "2", "--warmup", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert all(r["peak_gib"] > 0 for r in data["results"])
    ratio = data["ratio"]
    assert math.isfinite(ratio) and ratio > 0 and data["target_ratio"] == 2.3
    assert data["passed"] is (ratio <= 2.3)
