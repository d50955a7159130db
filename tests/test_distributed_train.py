"""The Trainer under DDP (two gloo processes): training equals one process on the concatenated
batches, resume is exact on every rank, the data is sharded, bad configurations fail clearly."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

import factorcl
from factorcl.checkpoint import load
from factorcl.train import CHECKPOINT_NAME, METRICS_NAME, Trainer
from factorcl_helpers import small_data, small_model
from test_distributed_helpers import run_ranks

WORLD, PER_RANK, BATCHES = 2, 4, 6
TRAIN = dict(
    epochs=2,
    accumulate=2,
    critic_steps=2,
    lr=3e-3,
    warmup_steps=1,
    grad_clip=5.0,
    device="cpu",
    progress=False,
    tensorboard=False,
    seed=0,
)


def _batches(rank: int | None) -> list[dict[str, torch.Tensor]]:
    """BATCHES global batches of WORLD * PER_RANK rows with fixed views; rank r's part, or the whole (None)."""
    g = torch.Generator().manual_seed(7)
    n = BATCHES * WORLD * PER_RANK
    full = {k: torch.randn(n, 20, generator=g) for k in ("x1", "x2", "x1_aug", "x2_aug")}
    out = []
    for t in range(BATCHES):
        start = t * WORLD * PER_RANK
        rows = (
            slice(start, start + WORLD * PER_RANK)
            if rank is None
            else slice(start + rank * PER_RANK, start + (rank + 1) * PER_RANK)
        )
        out.append({k: v[rows] for k, v in full.items()})
    return out


def _model():
    model = small_model(
        "factorcl-ssl", augment1="batch", augment2="batch", conditioning="chain"
    )  # exact: in-batch negatives
    model.encoder1[0].weight.requires_grad_(False)  # frozen parameters must be fine under DDP
    return model


def _train_like_one_process(rank: int, world: int, out_dir: str) -> dict:
    model = _model()
    result = factorcl.fit(model, _batches(rank), out_dir=out_dir, **TRAIN)
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "history": [{k: v for k, v in row.items() if k != "time_s"} for row in result.history],
        "checkpoint": result.checkpoint,
    }


def _loader(data):
    return data.split("train").loader(16, shuffle=True, drop_last=True, seed=0)


def _resume_exactly(rank: int, world: int, out_dir: str) -> dict:
    """Random augmentations (per-rank seeds) and a DataLoader the Trainer shards: stop mid-epoch, resume."""
    data = small_data(num_samples=320)
    kw = dict(epochs=2, lr=3e-3, critic_steps=1, device="cpu", progress=False, tensorboard=False, seed=0)
    full = small_model("factorcl-ssl")
    trainer = Trainer(full, _loader(data), out_dir=f"{out_dir}/full", **kw)
    sampler = trainer.loader.sampler
    sampler.set_epoch(0)
    indices = list(iter(sampler))
    trainer.fit()
    part = small_model("factorcl-ssl")
    first = factorcl.fit(part, _loader(data), out_dir=f"{out_dir}/part", stop_after=3, **kw)
    resumed = small_model("factorcl-ssl", seed=123)  # everything must come from the checkpoint
    last = factorcl.fit(resumed, _loader(data), out_dir=f"{out_dir}/part", resume="auto", **kw)
    return {
        "sampler": type(sampler).__name__,
        "indices": indices,
        "batches": trainer.batches_per_epoch,
        "first_step": first.step,
        "last_step": last.step,
        "full": {k: v.detach().clone() for k, v in full.named_parameters()},
        "resumed": {k: v.detach().clone() for k, v in resumed.named_parameters()},
    }


def _worker(rank: int, world: int, out_dir: str) -> dict:
    return {
        "one_process": _train_like_one_process(rank, world, f"{out_dir}/ddp"),
        "resume": _resume_exactly(rank, world, f"{out_dir}/resume"),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp_train")
    return tmp, run_ranks(_worker, tmp, world=WORLD, args=(str(tmp / "out"),))


def test_ddp_training_equals_one_process_on_the_concatenated_batches(runs, tmp_path):
    """Main steps with accumulation (no_sync), critic steps, clipping, schedule, a frozen layer."""
    tmp, ranks = runs
    model = _model()
    single = factorcl.fit(model, _batches(None), out_dir=str(tmp_path), **TRAIN)
    assert single.step == TRAIN["epochs"] * BATCHES // TRAIN["accumulate"]
    for r in ranks:
        got = r["one_process"]
        for name, p in model.named_parameters():
            torch.testing.assert_close(got["params"][name], p.detach(), rtol=1e-4, atol=1e-5, msg=name)
        # logged metrics are the global batch's (averaged over ranks)
        assert len(got["history"]) == len(single.history)
        for row, ref in zip(got["history"], single.history):
            for key, value in row.items():
                assert value == pytest.approx(ref[key], rel=1e-4, abs=1e-5), key
    for name in ranks[0]["one_process"]["params"]:  # every rank holds the same model
        assert torch.equal(ranks[0]["one_process"]["params"][name], ranks[1]["one_process"]["params"][name]), name


def test_rank0_writes_one_checkpoint_with_every_ranks_rng_state(runs):
    tmp, ranks = runs
    path = tmp / "out" / "ddp" / CHECKPOINT_NAME
    assert ranks[0]["one_process"]["checkpoint"] == ranks[1]["one_process"]["checkpoint"] == path
    state = load(path)
    assert state["world_size"] == WORLD and state["step"] == TRAIN["epochs"] * BATCHES // TRAIN["accumulate"]
    assert len(state["rank_rng"]) == WORLD
    assert not torch.equal(state["rank_rng"][0]["rng"]["torch"], state["rank_rng"][1]["rng"]["torch"])  # seed + rank
    assert (tmp / "out" / "ddp" / METRICS_NAME).exists()
    assert not [p for p in (tmp / "out" / "ddp").iterdir() if p.name.endswith(".tmp")]


def test_plain_loader_is_sharded_over_ranks(runs):
    _, ranks = runs
    data = small_data(num_samples=320)
    n = len(data.split("train"))
    per_rank = n // WORLD
    seen = [set(r["resume"]["indices"]) for r in ranks]
    assert all(r["resume"]["sampler"] == DistributedSampler.__name__ for r in ranks)
    assert all(len(s) == per_rank for s in seen) and not seen[0] & seen[1]
    assert all(r["resume"]["batches"] == per_rank // 16 for r in ranks)


def test_resume_continues_exactly_on_every_rank(runs):
    _, ranks = runs
    for r in ranks:
        res = r["resume"]
        assert res["first_step"] == 3 and res["last_step"] == 2 * res["batches"]
        for name, p in res["full"].items():
            torch.testing.assert_close(res["resumed"][name], p, rtol=0, atol=0, msg=name)


def test_resume_with_another_world_size_is_refused(runs):
    tmp, _ = runs
    path = tmp / "out" / "resume" / "part" / CHECKPOINT_NAME
    with pytest.raises(ValueError, match=r"written with world size 2, but this run has 1; resume with the same number"):
        factorcl.fit(
            small_model("factorcl-ssl"),
            _loader(small_data(num_samples=320)),
            resume=str(path),
            progress=False,
            tensorboard=False,
            device="cpu",
        )
