"""factorcl.distributed without a process group, and the harness the multi-process tests share.

``run_ranks`` starts ``world`` processes (spawn) that join a gloo group through a file store (no
ports to collide on), runs ``fn(rank, world, *args)`` in each and returns what each returned. Every
process is killed when one fails or the deadline passes, so a failing test never hangs.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from factorcl import distributed as fd

# ----------------------------------------------------------------------------------- harness


def _entry(index: int, fn, world: int, store: str, out_dir: str, args: tuple) -> None:
    os.environ.update(RANK=str(index), WORLD_SIZE=str(world), LOCAL_RANK=str(index))
    torch.set_num_threads(1)
    # A collective whose peer died fails after this timeout instead of waiting forever.
    fd.init_distributed(backend="gloo", init_method=f"file://{store}", timeout=datetime.timedelta(seconds=90))
    try:
        result = fn(index, world, *args)
        torch.save(result, Path(out_dir) / f"rank{index}.pt")
    finally:
        fd.cleanup()


def run_ranks(fn, tmp_path: Path, world: int = 2, args: tuple = (), timeout: float = 240.0) -> list:
    """Run ``fn(rank, world, *args)`` in ``world`` gloo processes; returns their results in rank order."""
    out_dir = tmp_path / "ranks"
    out_dir.mkdir(parents=True, exist_ok=True)
    store = tmp_path / "store"
    ctx = mp.start_processes(
        _entry, args=(fn, world, str(store), str(out_dir), args), nprocs=world, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    try:
        # join raises (and terminates the others) as soon as one process fails.
        while not ctx.join(timeout=0.5):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {world} processes did not finish within {timeout:.0f} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join()
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(world)]


# ---------------------------------------------------------------------- without a process group


def test_helpers_without_a_process_group():
    assert not fd.is_distributed() and fd.get_rank() == 0 and fd.get_world_size() == 1 and fd.is_main_process()
    x = torch.randn(4, 3, requires_grad=True)
    g, off = fd.gather_with_grad(x)
    assert g is x and off == 0
    assert fd.gather_no_grad(x) is x
    assert fd.all_gather_object({"a": 1}) == [{"a": 1}]
    assert fd.broadcast_int(7) == 7
    assert fd.sum_over_ranks(x) is x and fd.mean_over_ranks(x) is x
    assert fd.any_rank(True) and not fd.any_rank(False)
    assert float(fd.global_mean_normalizer(torch.tensor(3))) == 3.0
    fd.check_same_size(5)
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    fd.average_gradients([p])
    assert torch.equal(p.grad, torch.full((2,), 3.0))
    assert fd.wrap_loss_ddp(torch.nn.Linear(2, 2)) is None
    fd.barrier()
    fd.cleanup()


def test_init_distributed_is_a_no_op_without_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert fd.init_distributed() is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert fd.init_distributed() is False and not fd.launched_distributed()


def test_init_distributed_names_what_is_missing(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="RANK is not"):
        fd.init_distributed()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR and MASTER_PORT not set"):
        fd.init_distributed()
    assert not fd.is_distributed()


def _collectives(rank: int, world: int) -> dict:
    x = torch.arange(3, dtype=torch.float32).reshape(1, 3) + 10 * rank
    x.requires_grad_(True)
    g, off = fd.gather_with_grad(x)
    (g * (rank + 1)).sum().backward()  # d/dx of sum_r (r + 1) * sum(x_rank) = 1 + 2 on every rank
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.full((2,), float(rank))
    fd.average_gradients([p])
    errors = []
    try:
        fd.check_same_size(4 + rank, "batch size")
    except ValueError as exc:
        errors.append(str(exc))
    return {
        "gathered": g.detach(),
        "offset": off,
        "grad": x.grad,
        "avg": p.grad,
        "seen": fd.all_gather_object(rank * 2),
        "any": fd.any_rank(rank == 1),
        "seed": fd.broadcast_int(5 + rank),
        "errors": errors,
        "world": fd.get_world_size(),
        "main": fd.is_main_process(),
    }


def test_collectives_on_two_processes(tmp_path):
    r0, r1 = run_ranks(_collectives, tmp_path)
    for rank, r in enumerate((r0, r1)):
        assert torch.equal(r["gathered"], torch.tensor([[0.0, 1, 2], [10, 11, 12]]))
        assert r["offset"] == 3 * 0 + rank * 1  # one row per rank
        assert torch.equal(r["grad"], torch.full((1, 3), 3.0))
        assert torch.equal(r["avg"], torch.full((2,), 0.5))
        assert r["seen"] == [0, 2] and r["any"] and r["seed"] == 5 and r["world"] == 2
        assert r["main"] == (rank == 0)
        assert r["errors"] == [r0["errors"][0]]
    assert "ranks disagree on the batch size (rank 0 has 4, rank 1 has 5)" in r0["errors"][0]


def test_estimators_with_a_normalizer_divide_their_sum_by_it():
    """The hook the distributed path uses: grouped NCE-CLUB and SupCon divide by normalizer(count)."""
    import bounds

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 8, generator=g, requires_grad=True)
    groups, cand = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 0, 1, 2, 0, 5, 5, 1])
    plain = bounds.grouped_nce_club(scores, groups, cand, offset=0)
    halved = bounds.grouped_nce_club(scores, groups, cand, offset=0, normalizer=lambda n: 2 * n)
    torch.testing.assert_close(halved, plain / 2)
    # A rank whose rows all lack an in-group negative contributes 0 (with a gradient) when others have some.
    alone = torch.tensor([3, 4, 6, 7])
    cand_alone = torch.tensor([3, 4, 6, 7, 0, 0, 1, 1])
    zero = bounds.grouped_nce_club(scores, alone, cand_alone, offset=0, normalizer=lambda n: n + 4)
    zero.backward()
    assert float(zero.detach()) == 0.0 and torch.equal(scores.grad, torch.zeros_like(scores))
    with pytest.raises(ValueError, match=r"no row of scores has a negative in its own group;.*\(on any rank\)"):
        bounds.grouped_nce_club(scores, alone, cand_alone, offset=0, normalizer=lambda n: n)
    labels = torch.tensor([0, 0, 1, 2])
    sc = bounds.supcon_loss(scores.detach()[:, :4], labels)
    torch.testing.assert_close(bounds.supcon_loss(scores.detach()[:, :4], labels, normalizer=lambda n: n * 4), sc / 4)
