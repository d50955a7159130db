"""SLURM launches: the hostlist parser, the SLURM -> torchrun variable mapping and its precedence, and
two ``srun``-like processes (SLURM's variables only, no RANK/WORLD_SIZE) joining one gloo group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from factorcl import distributed as fd

REPO = Path(__file__).resolve().parents[1]
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

# One task of `srun --nodes=2 --ntasks-per-node=4` (task 5 = the second task on gpu08).
STEP = {
    "SLURM_JOB_ID": "123456",
    "SLURM_STEP_ID": "0",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "8",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
    "SLURM_NODELIST": "gpu[07-08]",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
}


# ------------------------------------------------------------------------------------ hostlists


@pytest.mark.parametrize(
    "nodelist, first",
    [
        ("node01", "node01"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("node[01-04]", "node01"),
        ("node[01-04,07],gpu5", "node01"),
        ("gpu5,node[01-04,07]", "gpu5"),
        ("node[07,01-04]", "node07"),  # the order as written, not the smallest index
        ("node[008-010]", "node008"),
        ("node[8-10]", "node8"),
        ("node[3]", "node3"),
        ("rack[1-2]-node[01-02]", "rack1-node01"),
        ("rack[2,5]-node[09-10],login1", "rack2-node09"),
        ("node[01-02]-ib", "node01-ib"),
        ("  node[01-02]\n", "node01"),
    ],
)
def test_first_host(nodelist, first):
    assert fd.first_host(nodelist) == first


@pytest.mark.parametrize(
    "nodelist",
    [
        "",
        "node[01-04",
        "node01]",
        "node[]",
        "node[a-b]",
        "node[04-01]",
        "node[01-]",
        "node[[1-2]]",
        "node[1-2]]x[",
        ",node01",
        "node01,",
        "node[1-2],,gpu5",
        "node 01",
        "gpu5,node[01-x]",  # a later group is checked too
    ],
)
def test_first_host_rejects_malformed_lists(nodelist):
    with pytest.raises(ValueError, match="invalid SLURM hostlist") as info:
        fd.first_host(nodelist)
    assert repr(nodelist.strip()) in str(info.value)


# ------------------------------------------------------------------------------------- mapping


def test_slurm_environment_maps_an_srun_task():
    assert fd.slurm_environment(STEP) == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(10000 + 123456 % 20000),
    }


def test_slurm_environment_keeps_an_explicit_master_and_derives_the_same_port_on_every_task():
    ports = {fd.slurm_environment({**STEP, "SLURM_PROCID": str(r)})["MASTER_PORT"] for r in range(8)}
    assert ports == {"13456"}
    assert fd.slurm_environment({**STEP, "SLURM_JOB_ID": "39999"})["MASTER_PORT"] == "29999"
    kept = fd.slurm_environment({**STEP, "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29500"})
    assert kept["MASTER_ADDR"] == "10.0.0.7" and kept["MASTER_PORT"] == "29500"


@pytest.mark.parametrize(
    "lists, addr",
    [
        # A step on part of the job's nodes: its own list says where task 0 runs.
        (
            {"SLURM_STEP_NODELIST": "gpu[12-13]", "SLURM_NODELIST": "gpu[11-13]", "SLURM_JOB_NODELIST": "gpu[10-13]"},
            "gpu12",
        ),
        ({"SLURM_NODELIST": "gpu[11-13]", "SLURM_JOB_NODELIST": "gpu[10-13]"}, "gpu11"),
        ({"SLURM_JOB_NODELIST": "gpu[10-13]"}, "gpu10"),
    ],
)
def test_slurm_environment_takes_the_first_host_of_the_step(lists, addr):
    env = {k: v for k, v in STEP.items() if not k.endswith("NODELIST")}
    assert fd.slurm_environment({**env, **lists})["MASTER_ADDR"] == addr


def test_slurm_environment_leaves_out_what_it_cannot_derive():
    env = {k: v for k, v in STEP.items() if not k.endswith("NODELIST") and k not in ("SLURM_JOB_ID", "SLURM_LOCALID")}
    assert fd.slurm_environment(env) == {"RANK": "5", "WORLD_SIZE": "8"}
    assert fd.slurm_environment({**env, "SLURM_JOBID": "42"})["MASTER_PORT"] == "10042"  # the older name


@pytest.mark.parametrize("name", ["SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_ID"])
def test_slurm_environment_names_a_malformed_variable(name):
    with pytest.raises(ValueError, match=f"{name} must be an integer, got 'x'"):
        fd.slurm_environment({**STEP, name: "x"})


def test_slurm_environment_names_a_malformed_nodelist():
    with pytest.raises(ValueError, match=r"invalid SLURM hostlist 'gpu\[07-'"):
        fd.slurm_environment({**STEP, "SLURM_STEP_NODELIST": "gpu[07-"})


def test_a_malformed_task_count_is_not_a_distributed_launch():
    # As a malformed WORLD_SIZE: the predicate the Trainer asks must not raise in a plain run.
    with mock.patch.dict(os.environ, {**STEP, "SLURM_STEP_NUM_TASKS": "eight"}, clear=True):
        assert not fd.launched_distributed() and fd.init_distributed() is False


@pytest.mark.parametrize(
    "torchrun",
    [
        # torchrun --nproc_per_node=4 run by `srun --ntasks-per-node=1` on 2 nodes: its workers keep its variables.
        {"RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2"},
        {"WORLD_SIZE": "8"},
        {"RANK": "6"},
        {"WORLD_SIZE": "1"},
    ],
)
def test_torchrun_variables_win(torchrun):
    one_task_per_node = {**STEP, "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NTASKS": "2"}
    env = {**one_task_per_node, "SLURM_STEP_NUM_TASKS": "2", **torchrun}
    assert fd.slurm_environment(env) is None
    with mock.patch.dict(os.environ, env, clear=True):
        assert fd.launched_distributed() is (int(torchrun.get("WORLD_SIZE", "1")) > 1)


NOT_DISTRIBUTED = {
    "no SLURM": {},
    "single-task srun": {
        **STEP,
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NTASKS": "1",
        "SLURM_STEP_NUM_TASKS": "1",
    },
    # salloc --ntasks=4: a shell in the allocation, no task of a step.
    "salloc shell": {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_JOB_NODELIST": "gpu[01-02]"},
    # The sbatch script itself (python run without srun): one process, though the job has 8 tasks.
    "sbatch script": {
        k: v for k, v in {**STEP, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}.items() if not k.startswith("SLURM_STEP")
    },
}


@pytest.mark.parametrize("env", NOT_DISTRIBUTED.values(), ids=NOT_DISTRIBUTED.keys())
def test_not_a_distributed_slurm_launch(env):
    assert fd.slurm_environment(env) is None
    with mock.patch.dict(os.environ, env, clear=True):
        assert not fd.launched_distributed()
        assert fd.init_distributed() is False and not fd.is_distributed()
        assert "RANK" not in os.environ and "WORLD_SIZE" not in os.environ


def test_launched_distributed_under_a_multi_task_step():
    with mock.patch.dict(os.environ, STEP, clear=True):
        assert fd.launched_distributed()


def test_init_distributed_sets_what_it_can_and_names_what_is_missing():
    env = {k: v for k, v in STEP.items() if not k.endswith("NODELIST")}
    with mock.patch.dict(os.environ, {**env, "LOCAL_RANK": "3"}, clear=True):
        with pytest.raises(RuntimeError, match="MASTER_ADDR not set"):
            fd.init_distributed()
        # Set before the check, so that they describe this task; LOCAL_RANK was set and is kept.
        assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("5", "8", "3")
        assert os.environ["MASTER_PORT"] == "13456" and fd.get_local_rank() == 3
    assert not fd.is_distributed()


# --------------------------------------------------------------------------------- end to end

TASK = """
import json, os
import torch
import torch.distributed as dist
from factorcl import distributed as fd

joined = fd.init_distributed(backend="gloo")
total = torch.tensor([float(fd.get_rank() + 1)])
dist.all_reduce(total)
print(json.dumps({
    "joined": joined, "rank": fd.get_rank(), "world": fd.get_world_size(), "local_rank": fd.get_local_rank(),
    "env": {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")},
    "sum": total.item(),
}))
fd.cleanup()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_srun_tasks_join_one_gloo_group(tmp_path):
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in TORCHRUN_VARS}
    base.update(
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",  # CPU only, also on a machine with fewer GPUs than tasks
        PYTHONPATH=os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")]),
        SLURM_JOB_ID="424242",
        SLURM_STEP_ID="0",
        SLURM_NTASKS="2",
        SLURM_STEP_NUM_TASKS="2",
        # Two loopback "nodes": task 0 listens on the first host, 127.0.0.1.
        SLURM_JOB_NODELIST="127.0.0.[1-2]",
        MASTER_PORT=str(port),  # a free port instead of the one derived from the job id
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TASK],
            env={**base, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r), "SLURM_NODEID": "0"},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for r in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"exit code {proc.returncode}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:  # a task whose peer died would wait in a collective: never leave one behind
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    for r, result in enumerate(outputs):
        assert result["joined"] is True and result["rank"] == r and result["world"] == 2 and result["local_rank"] == r
        assert result["env"] == {
            "RANK": str(r),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(r),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        assert result["sum"] == 3.0  # (0 + 1) + (1 + 1)
