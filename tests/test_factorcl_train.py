import csv
import math

import pytest
import torch

import factorcl
from factorcl.checkpoint import load, save_atomic
from factorcl.train import CHECKPOINT_NAME, METRICS_NAME, NonFiniteLossError, TrainConfig, _lr_lambda
from factorcl_helpers import small_data, small_model


def loader_of(data, seed=0, batch_size=64):
    return data.split("train").loader(batch_size, shuffle=True, drop_last=True, seed=seed)


def params_of(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("stop_after", [3, 7])  # 7 batches per epoch: mid-epoch and at the epoch boundary
def test_resume_continues_exactly(tmp_path, stop_after):
    """A run stopped at step k and resumed ends with the parameters of an uninterrupted run."""
    data = small_data(num_samples=640)
    kw = dict(epochs=3, lr=3e-3, warmup_steps=2, critic_steps=2, progress=False, tensorboard=False, device="cpu")
    full = small_model("factorcl-ssl")
    factorcl.fit(full, loader_of(data), out_dir=str(tmp_path / "full"), **kw)

    part = small_model("factorcl-ssl")
    first = factorcl.fit(part, loader_of(data), out_dir=str(tmp_path / "part"), stop_after=stop_after, **kw)
    assert first.step == stop_after
    resumed = small_model("factorcl-ssl", seed=123)  # different init: everything must come from the checkpoint
    result = factorcl.fit(resumed, loader_of(data), out_dir=str(tmp_path / "part"), resume="auto", **kw)
    assert result.step == 3 * 7
    expected = params_of(full)
    for name, p in resumed.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=0, msg=name)
    with (tmp_path / "part" / METRICS_NAME).open() as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == list(range(1, 22))


def test_metrics_csv_and_checkpoint_contents(tmp_path):
    data = small_data()
    model = small_model("factorcl-ssl")
    loader = loader_of(data)
    result = factorcl.fit(
        model, loader, epochs=2, progress=False, tensorboard=False, device="cpu", out_dir=str(tmp_path)
    )
    with (tmp_path / METRICS_NAME).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result.step == 2 * len(loader)
    for column in (
        "step",
        "lr",
        "loss",
        "shared_keep",
        "shared_remove",
        "unique_keep1",
        "unique_keep2",
        "unique_remove",
        "unique_cond_keep",
        "critic_loss",
    ):
        assert column in rows[0]
    state = load(tmp_path / CHECKPOINT_NAME)
    for key in ("model", "main_opt", "critic_opt", "main_sched", "main_scaler", "rng", "step", "epoch"):
        assert key in state
    assert state["step"] == result.step and state["method"] == "factorcl-ssl"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    data = small_data(num_samples=640)
    model = small_model("simclr")
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 4 else output

    model.encoder1.register_forward_hook(poison)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5 .*the last good checkpoint is"):
        factorcl.fit(
            model,
            loader_of(data),
            epochs=2,
            checkpoint_every=1,
            progress=False,
            tensorboard=False,
            device="cpu",
            out_dir=str(tmp_path),
        )
    state = load(tmp_path / CHECKPOINT_NAME)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_schedule_warmup_then_cosine():
    fn = _lr_lambda(TrainConfig(warmup_steps=4, min_lr_ratio=0.1), total=14)
    assert [round(fn(s), 3) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert fn(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert fn(14) == pytest.approx(0.1)
    assert _lr_lambda(TrainConfig(schedule="constant"), 10)(7) == 1.0


def test_bf16_autocast_on_cpu_and_grad_clip():
    data = small_data()
    result = factorcl.fit(
        small_model("factorcl-ssl"),
        loader_of(data),
        epochs=1,
        amp="bf16",
        grad_clip=1.0,
        progress=False,
        tensorboard=False,
        device="cpu",
    )
    assert math.isfinite(result.metrics["loss"])


def test_gradient_accumulation_counts_optimizer_steps():
    data = small_data(num_samples=640)
    loader = loader_of(data)
    assert len(loader) == 7
    result = factorcl.fit(
        small_model("simclr"), loader, epochs=1, accumulate=2, progress=False, tensorboard=False, device="cpu"
    )
    assert result.step == math.ceil(7 / 2)


def test_bad_configuration_and_data():
    data = small_data()
    with pytest.raises(ValueError, match="epochs=0 is not valid"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="loader is empty"):
        factorcl.fit(small_model("simclr"), data.split("train").loader(10_000, drop_last=True), progress=False)
    with pytest.raises(ValueError, match="amp must be one of"):
        factorcl.fit(small_model("simclr"), loader_of(data), amp="fp8", progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        factorcl.fit(small_model("simclr"), loader_of(data), resume="/nonexistent/ckpt.pt", progress=False)


def test_resume_refuses_another_method(tmp_path):
    data = small_data()
    factorcl.fit(
        small_model("simclr"), loader_of(data), epochs=1, progress=False, tensorboard=False, out_dir=str(tmp_path)
    )
    with pytest.raises(ValueError, match="written by method 'simclr'"):
        factorcl.fit(
            small_model("cross+self"), loader_of(data), epochs=1, progress=False, out_dir=str(tmp_path), resume="auto"
        )


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_atomic({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"a": Unpicklable()}, path)
    assert load(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_encoder_lr_puts_the_encoders_in_their_own_group():
    data = small_data()
    model = small_model("simclr")
    trainer = factorcl.Trainer(
        model, loader_of(data), epochs=1, lr=1e-3, encoder_lr=0.0, progress=False, tensorboard=False, device="cpu"
    )
    encoders = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("encoder")}
    heads = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("heads")}
    trainer.fit()
    groups = trainer.main_opt.param_groups
    assert [g["lr"] for g in groups] == [0.0, 0.0]  # the cosine schedule ended both at min_lr_ratio * lr
    assert groups[0]["initial_lr"] == 0.0 and groups[1]["initial_lr"] == 1e-3
    for n, p in model.named_parameters():
        if n in encoders:
            assert torch.equal(p, encoders[n]), f"{n} moved with encoder_lr=0"
        if n in heads:
            assert not torch.equal(p, heads[n]), f"{n} did not train"
    with pytest.raises(ValueError, match="encoder_lr=-1"):
        TrainConfig(encoder_lr=-1)


def test_check_bounds_names_each_broken_bound():
    from factorcl.train import check_bounds

    assert check_bounds({"shared_remove": 0.3, "bracket/shared_remove": 0.1, "bracket/unique_remove": 0.0}) == {}
    broken = check_bounds({"shared_remove": -0.4, "bracket/unique_remove": -0.2, "unique_keep1": -3.0})
    assert set(broken) == {"shared_remove", "bracket/unique_remove"}
    assert "below its own critic's InfoNCE" in broken["bracket/unique_remove"]
    assert "-0.400" in broken["shared_remove"]


def test_fit_warns_once_per_broken_bound(monkeypatch):
    import warnings

    import bounds
    import factorcl.train as train_module

    monkeypatch.setattr(train_module, "check_bounds", lambda row: {"shared_remove": "broken for the test"})
    data = small_data()
    model = small_model("factorcl-ssl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factorcl.fit(model, loader_of(data), epochs=1, progress=False, device="cpu", seed=0)
    mine = [w for w in caught if issubclass(w.category, bounds.BrokenBracketWarning)]
    assert len(mine) == 1 and "broken for the test" in str(mine[0].message)


def test_adamw_is_fused_on_cpu_and_takes_the_same_steps_as_the_default():
    from factorcl.train import adamw

    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    fused, plain = (
        adamw(a.parameters(), lr=1e-2, weight_decay=0.1),
        torch.optim.AdamW(b.parameters(), 1e-2, weight_decay=0.1),
    )
    assert fused.defaults["fused"] is True
    x = torch.randn(16, 4)
    for _ in range(5):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    groups = [
        {"params": [torch.nn.Parameter(torch.zeros(2))]},
        {"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 1.0},
    ]
    assert adamw(groups, lr=0.1).param_groups[1]["lr"] == 1.0


def test_critic_steps_fit_the_proposals_once_per_batch_and_the_nce_club_critics_every_step():
    """critic_steps=3: the sampled proposals' running moments count each batch once (they are an
    average over batches), while the NCE-CLUB critics take all three steps."""
    import warnings

    model = small_model("factorcl-ssl")
    loader = small_data(num_samples=256).split("train").loader(32, shuffle=True, drop_last=True, seed=0)
    calls = []
    critic = model.estimators["unique_remove"].critic
    critic.register_forward_hook(lambda *_: calls.append(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = factorcl.fit(model, loader, epochs=1, critic_steps=3, progress=False, tensorboard=False, seed=0)
    for name in ("shared_remove", "unique_cond_keep"):
        est = model.estimators[name]
        assert int(est.proposal.fitted_batches) == result.step, name
        assert int(est.x_proposal.fitted_batches) == result.step, name
    assert len(calls) == result.step * (1 + 3)  # the main step's forward, then each critic step


def test_critic_steps_stop_when_nothing_is_left_to_train_even_with_a_grad_scaler(monkeypatch):
    """factorcl-ssl-no-remove's only separately trained parts are its proposals and correction
    critic, fitted on the first critic step of a batch: the later steps have nothing to train and
    must not reach the scaler (an fp16 GradScaler step without gradients fails). The scaler is
    enabled on the CPU here to stand in for fp16 on CUDA."""
    import warnings

    import factorcl.train as train

    real = torch.amp.GradScaler
    monkeypatch.setattr(train.torch.amp, "GradScaler", lambda device, enabled=False: real(device, enabled=True))
    loader = small_data(num_samples=256).split("train").loader(32, shuffle=True, drop_last=True, seed=0)
    model = small_model("factorcl-ssl-no-remove")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = factorcl.fit(model, loader, epochs=1, critic_steps=3, progress=False, tensorboard=False, seed=0)
    assert int(model.estimators["unique_cond_keep"].proposal.fitted_batches) == result.step
    assert math.isfinite(result.metrics["loss"])
    model.loss(next(iter(loader)))
    assert model.critic_loss().requires_grad  # the first critic step of a batch trains the proposals
    second = model.critic_loss()
    assert not second.requires_grad and float(second) == 0.0
