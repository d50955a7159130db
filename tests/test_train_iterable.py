"""The Trainer on loaders without a length: ``steps_per_epoch`` and ``max_steps``, schedule, resume."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import factorcl
from factorcl.train import METRICS_NAME, TrainConfig, _lr_lambda
from factorcl_helpers import small_data, small_model

KW = dict(lr=3e-3, warmup_steps=2, critic_steps=2, progress=False, tensorboard=False, device="cpu")


class Stream(IterableDataset):
    """An endless stream of the train split's rows, in an order drawn from (seed, epoch): no ``len``."""

    def __init__(self, tensors: dict[str, torch.Tensor], seed: int = 0) -> None:
        self.tensors, self.seed, self.epoch, self.epochs_seen = tensors, seed, 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __iter__(self):
        gen = torch.Generator().manual_seed(1000 * self.seed + self.epoch)
        n = len(self.tensors["x1"])
        while True:
            for i in torch.randperm(n, generator=gen).tolist():
                yield {k: v[i] for k, v in self.tensors.items()}


class Finite(IterableDataset):
    """One pass over the rows, in order, without ``len``: the trainer must iterate it again when it ends."""

    def __init__(self, tensors: dict[str, torch.Tensor], rows: int) -> None:
        self.tensors, self.rows, self.passes = tensors, rows, 0

    def __iter__(self):
        self.passes += 1
        for i in range(self.rows):
            yield {k: v[i] for k, v in self.tensors.items()}


def stream_loader(seed: int = 0) -> DataLoader:
    return DataLoader(Stream(small_data(num_samples=640).split("train").tensors(), seed), batch_size=64)


def params_of(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_a_loader_without_length_needs_steps_per_epoch_or_max_steps():
    with pytest.raises(ValueError, match="no length.*steps_per_epoch.*max_steps"):
        factorcl.fit(small_model(), stream_loader(), epochs=1, **KW)


def test_steps_per_epoch_sets_the_epochs_and_the_schedule(tmp_path):
    loader = stream_loader()
    result = factorcl.fit(small_model(), loader, epochs=3, steps_per_epoch=4, out_dir=str(tmp_path), **KW)
    assert result.step == 12 and result.epoch == 3
    assert loader.dataset.epochs_seen == [0, 1, 2]  # each epoch asked the stream for its order
    rows = list(csv.DictReader((tmp_path / METRICS_NAME).open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert [int(r["epoch"]) for r in rows] == [0] * 4 + [1] * 4 + [2] * 4
    # The cosine schedule spans the 12 steps: the lr of step k is lr * lambda(k - 1).
    fn = _lr_lambda(TrainConfig(epochs=3, warmup_steps=2), 12)
    for row in rows:
        assert float(row["lr"]) == pytest.approx(3e-3 * fn(int(row["step"]) - 1))


def test_max_steps_ends_the_run_and_the_schedule_spans_it(tmp_path):
    result = factorcl.fit(small_model(), stream_loader(), epochs=99, max_steps=5, out_dir=str(tmp_path), **KW)
    assert result.step == 5
    rows = list(csv.DictReader((tmp_path / METRICS_NAME).open()))
    fn = _lr_lambda(TrainConfig(warmup_steps=2), 5)
    assert [float(r["lr"]) for r in rows] == pytest.approx([3e-3 * fn(k) for k in range(5)])
    # With a sized loader, max_steps cuts the epochs short: 7 batches per epoch, 10 steps = 1 epoch + 3.
    data = small_data(num_samples=640).split("train")
    sized = data.loader(64, shuffle=True, drop_last=True, seed=0)
    assert len(sized) == 7
    result = factorcl.fit(small_model(), sized, epochs=99, max_steps=10, **KW)
    assert result.step == 10 and [r["epoch"] for r in result.history] == [0] * 7 + [1] * 3


def test_a_finite_stream_is_iterated_again_within_an_epoch():
    tensors = small_data(num_samples=640).split("train").tensors()
    dataset = Finite(tensors, rows=128)  # 2 batches per pass
    result = factorcl.fit(small_model(), DataLoader(dataset, batch_size=64), epochs=2, steps_per_epoch=3, **KW)
    # Each epoch starts a fresh pass: epoch 0 takes 2 + 1 batches of two passes, epoch 1 the same.
    assert result.step == 6 and dataset.passes == 4
    with pytest.raises(ValueError, match="yielded no batches"):
        factorcl.fit(small_model(), DataLoader(Finite(tensors, rows=0), batch_size=64), max_steps=2, **KW)


@pytest.mark.parametrize("stop_after", [3, 4])  # mid-epoch, and at the boundary of the 4-step epochs
def test_resume_of_a_stream_continues_exactly(tmp_path, stop_after):
    kw = dict(epochs=3, steps_per_epoch=4, **KW)
    full = small_model()
    factorcl.fit(full, stream_loader(), out_dir=str(tmp_path / "full"), **kw)
    part = small_model()
    first = factorcl.fit(part, stream_loader(), out_dir=str(tmp_path / "part"), stop_after=stop_after, **kw)
    assert first.step == stop_after
    resumed = small_model(seed=123)
    result = factorcl.fit(resumed, stream_loader(), out_dir=str(tmp_path / "part"), resume="auto", **kw)
    assert result.step == 12
    expected = params_of(full)
    for name, p in resumed.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=0, msg=name)


def test_resume_of_a_max_steps_run_that_finished_trains_no_further(tmp_path):
    kw = dict(max_steps=5, out_dir=str(tmp_path), **KW)
    model = small_model()
    factorcl.fit(model, stream_loader(), **kw)
    before = params_of(model)
    again = factorcl.fit(model, stream_loader(), resume="auto", **kw)
    assert again.step == 5 and not again.history
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    assert math.isfinite(again.metrics["loss"])


@pytest.mark.parametrize("stop_after", [2, 5, 9])  # in the first pass, inside the second, in epoch 1
def test_resume_inside_a_later_pass_of_an_epoch_is_exact(tmp_path, stop_after):
    """steps_per_epoch longer than the loader: each pass's order must not depend on whether the run resumed."""
    data = small_data(num_samples=640).split("train")
    rows = [{k: v[i] for k, v in data.tensors().items()} for i in range(256)]  # 4 batches of 64 per pass

    def loader():  # no generator of its own: the order comes from the global RNG
        return DataLoader(rows, batch_size=64, shuffle=True)

    kw = dict(epochs=2, steps_per_epoch=7, **KW)
    full = small_model()
    factorcl.fit(full, loader(), out_dir=str(tmp_path / "full"), **kw)
    factorcl.fit(small_model(), loader(), out_dir=str(tmp_path / "part"), stop_after=stop_after, **kw)
    resumed = small_model(seed=5)
    factorcl.fit(resumed, loader(), out_dir=str(tmp_path / "part"), resume="auto", **kw)
    expected = params_of(full)
    for name, p in resumed.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=0, msg=name)
