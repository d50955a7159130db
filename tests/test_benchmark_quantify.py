"""benchmarks/quantify.py runs and its tables carry what the README quotes (quick settings)."""

from __future__ import annotations

import pytest

pytest.importorskip("cvxpy")
pytest.importorskip("dit")
pytest.importorskip("ecos")

from benchmarks import quantify  # noqa: E402


def test_quantify_benchmark_quick(tmp_path, capsys) -> None:
    out = quantify.main(["--quick", "--parts", "dit", "truth", "--labels", "two_bits", "--out-dir", str(tmp_path)])
    text = capsys.readouterr().out
    assert "PASS: pid_discrete matches dit's BROJA (cone) within 1e-3 bits" in text
    assert out["dit"]["worst"] < 1e-3 and len(out["dit"]["rows"]) == 26
    truth = out["truth"]["two_bits"]
    # The latent-level truth of two_bits: one redundant bit at 0, two unique bits at 1.
    assert truth["0.0"]["R"] == pytest.approx(1.0, abs=0.05) and truth["1.0"]["R"] < 0.05
    assert truth["1.0"]["U1"] + truth["1.0"]["U2"] == pytest.approx(2.0, abs=0.1)
    assert (tmp_path / "quantify_dit.json").exists() and (tmp_path / "quantify_truth.json").exists()
