"""benchmarks/objective_cost.py (a smoke run with real numbers) and benchmarks/gpu_check.sh without a GPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import objective_cost

ROOT = Path(__file__).resolve().parents[1]


def test_objective_cost_quick_counts_and_times_every_method(tmp_path, capsys):
    out = tmp_path / "cost.json"
    methods = ["simclr", "factorcl-ssl", "factorcl-ssl:aux_critic_hidden=16"]
    argv = ["--quick", "--encoders", "vector", "--methods", *methods, "--repeats", "1", "--out", str(out)]
    assert objective_cost.main(argv) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    assert list(rows) == methods
    simclr, fcl, narrow = (rows[m] for m in methods)
    assert simclr["x_time"] == 1.0 and simclr["x_macs"] == 1.0
    # SimCLR: two encoders and one critic; FactorCL-SSL encodes the views too and has more terms.
    assert fcl["macs_per_sample"] > 2 * simclr["macs_per_sample"]
    assert narrow["macs_per_sample"] < fcl["macs_per_sample"]  # 16- instead of 512-wide removal critics
    assert all(r["ms_per_step"] > 0 and len(r["times_ms"]) == 1 for r in rows.values())
    printed = capsys.readouterr().out
    assert "MMAC/sample" in printed and "x simclr" in printed


def test_objective_cost_compile_times_a_compiled_step_next_to_the_eager_one(tmp_path):
    out = tmp_path / "cost.json"
    argv = ["--quick", "--encoders", "vector", "--methods", "simclr", "--repeats", "1", "--compile", "--out", str(out)]
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    assert objective_cost.main(argv) == 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the loss was really compiled
    eager, compiled = json.loads(out.read_text())["results"]
    assert (eager["method"], compiled["method"]) == ("simclr", "simclr (compiled)")
    assert not eager["compiled"] and compiled["compiled"] and compiled["first_steps_s"] > 0
    assert compiled["macs_per_sample"] == eager["macs_per_sample"]  # the same products, however they run
    assert eager["x_time"] == 1.0 and compiled["x_time"] == compiled["ms_per_step"] / eager["ms_per_step"]


def test_objective_cost_method_specs_and_bad_settings():
    assert objective_cost.parse_method("factorcl-ssl:conditioning=concat,critic_hidden=64") == (
        "factorcl-ssl",
        {"conditioning": "concat", "critic_hidden": 64},
    )
    assert objective_cost.parse_value("none") is None and objective_cost.parse_value("0.5") == 0.5
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        objective_cost.parse_settings(["critic_hidden"], "--set")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_refuses_to_run_without_cuda(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "nothing was run" in done.stderr


def test_measuring_sets_and_restores_threads_and_value_checks():
    import bounds
    from benchmarks import _common

    threads, checks = torch.get_num_threads(), bounds.value_checks_enabled()
    with pytest.raises(RuntimeError, match="inside"):
        with _common.measuring(1):
            assert torch.get_num_threads() == 1 and not bounds.value_checks_enabled()
            raise RuntimeError("inside")
    assert torch.get_num_threads() == threads and bounds.value_checks_enabled() == checks
