"""End to end: ``torchrun --nproc_per_node=2 factorcl synthetic`` on CPU (gloo), interrupted, then resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from factorcl.checkpoint import load
from factorcl.cli import main as cli_main

# 400 samples -> 280 train rows -> 140 per rank -> 8 batches of 16 per epoch; 2 epochs = 16 steps.
SWEEP = [
    "synthetic",
    "--samples",
    "400",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--methods",
    "factorcl-ssl",
    "simclr",
    "--ratios",
    "0",
    "1",
    "--seeds",
    "0",
    "--no-mi-probe",
    "--device",
    "cpu",
]
STEPS = 16


def _torchrun(args: list[str], timeout: float = 400.0) -> subprocess.CompletedProcess:
    """torchrun with two CPU processes; the whole process group is killed if it overruns."""
    launcher = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    cmd = [launcher] if launcher else [sys.executable, "-m", "torch.distributed.run"]
    # --standalone: a local rendezvous on a free port, so parallel test runs never collide.
    cmd += ["--standalone", "--nproc_per_node=2", "-m", "factorcl.cli", *args]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout:.0f} s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _check(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 0, (
        f"exit code {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-5000:]}"
    )
    return run.stdout


@pytest.mark.slow
def test_torchrun_synthetic_sweep_is_interrupted_then_resumed(tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "results.json"
    common = SWEEP + ["--work-dir", str(work), "--out", str(out)]

    printed = _check(_torchrun(common + ["--stop-after", "3"]))
    assert "stopped after 3 steps" in printed and "--resume" in printed
    first = load(work / "0" / "factorcl-ssl" / "checkpoint.pt")
    assert first["step"] == 3 and first["world_size"] == 2 and len(first["rank_rng"]) == 2
    assert not (work / "0" / "simclr").exists() and not out.exists()

    printed = _check(_torchrun(common + ["--resume"]))
    assert printed.count("Linear-probe test accuracy") == 1  # rank 0 alone reports
    assert "2 processes, global batch 2 x 16" in printed
    for spec in ("factorcl-ssl", "simclr"):
        state = load(work / "0" / spec / "checkpoint.pt")
        assert state["step"] == STEPS and state["world_size"] == 2, spec
    results = json.loads(out.read_text())
    assert set(results["accuracy"]) == {"factorcl-ssl", "simclr"}
    assert results["config"]["world_size"] == 2
    assert set(results["accuracy"]["factorcl-ssl"]) == {"0", "1"}

    # The same runs resumed by one process: a clear error, not a silently different run.
    capsys.readouterr()
    code = cli_main(common + ["--resume", "--out", str(tmp_path / "single.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "written with world size 2, but this run has 1" in err


def test_resume_needs_a_work_dir(capsys):
    assert cli_main(SWEEP + ["--resume"]) == 2
    assert "--resume needs --work-dir" in capsys.readouterr().err


def test_resumed_sweep_loads_finished_runs_and_reports_the_same_results(tmp_path):
    """Single process: a finished run is loaded from --work-dir, not retrained, and probes the same."""
    args = [
        "synthetic",
        "--samples",
        "400",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--methods",
        "simclr",
        "--ratios",
        "0",
        "--seeds",
        "0",
        "--no-mi-probe",
        "--device",
        "cpu",
        "--work-dir",
        str(tmp_path / "w"),
    ]
    assert cli_main(args + ["--out", str(tmp_path / "a.json")]) == 0
    state = load(tmp_path / "w" / "0" / "simclr" / "checkpoint.pt")
    assert cli_main(args + ["--resume", "--out", str(tmp_path / "b.json")]) == 0
    first, again = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    assert again["accuracy"] == first["accuracy"]
    assert load(tmp_path / "w" / "0" / "simclr" / "checkpoint.pt")["step"] == state["step"] == 280 // 32


@pytest.mark.slow
def test_torchrun_config_training_trains_on_every_rank_and_reports_once(tmp_path):
    config = {
        "data": {
            "kind": "synthetic",
            "synthetic": {"num_samples": 400, "input_dim": 20, "shared_dim": 4, "unique1_dim": 3, "unique2_dim": 3},
        },
        "encoders": {
            "x1": {"type": "mlp", "out_dim": 16, "hidden": 32},
            "x2": {"type": "mlp", "out_dim": 16, "hidden": 32},
        },
        "model": {"method": "factorcl-ssl", "embed_dim": 8, "critic_hidden": 32},
        "train": {"epochs": 1, "batch_size": 16, "device": "cpu", "progress": False},
        "out_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    printed = _check(_torchrun(["train", "--config", str(path)]))
    assert printed.count("results:") == 1  # rank 0 alone evaluates and reports
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["accuracy"] is not None
    state = load(tmp_path / "run" / "checkpoint.pt")
    assert state["world_size"] == 2 and state["step"] == results["train"]["steps"] > 0
