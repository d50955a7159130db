"""benchmarks/shard_loading.py runs and prints the loading-rate and memory tables (quick settings)."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("webdataset")

from benchmarks import shard_loading  # noqa: E402


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the memory part reads /proc")
def test_shard_loading_benchmark_quick(tmp_path, capsys) -> None:
    out = shard_loading.main(["--quick", "--out", str(tmp_path / "r.json")])
    text = capsys.readouterr().out
    assert "Loading rate (images/s)" in text and "Unique memory (MiB)" in text
    assert [r["workers"] for r in out["rate"]] == [0, 1]
    assert all(r["csv"] > 0 and r["shards"] > 0 for r in out["rate"])
    rows = {(m["rows"], m["loader"]) for m in out["memory"]}
    assert rows == {(400, "csv"), (400, "shards"), (1600, "csv"), (1600, "shards")}
    assert all(len(m["worker_uss_mb"]) == 1 and m["worker_uss_mb"][0] > 0 for m in out["memory"])
    assert (tmp_path / "r.json").is_file()
