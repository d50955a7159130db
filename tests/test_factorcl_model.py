import copy

import pytest
import torch

import factorcl
from factorcl.objectives import METHODS, SIGNS
from factorcl_helpers import IN_DIM, small_data, small_model

ALL_CONFIGS = [(m, "separable", None) for m in METHODS] + [
    ("factorcl-ssl", "concat", None),
    ("factorcl-ssl", "separable", "chain"),
    ("factorcl-sup", "separable", "concat"),
    ("factorcl-sup", "separable", "chain"),
]


def batch_of(data, n=64, start=0):
    idx = data.indices["train"][start : start + n]
    return {"x1": data.x1[idx], "x2": data.x2[idx], "y": data.y[idx]}


@pytest.mark.parametrize("method,critic,conditioning", ALL_CONFIGS)
def test_every_method_loss_is_finite_and_decreases(method, critic, conditioning):
    data = small_data()
    model = small_model(method, critic, conditioning=conditioning)
    loader = data.split("train").loader(64, shuffle=True, drop_last=True, seed=0)
    result = factorcl.fit(model, loader, epochs=8, lr=3e-3, progress=False, tensorboard=False, device="cpu")
    losses = [row["loss"] for row in result.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    # What the encoders maximise must rise: the lower-bound terms. The loss itself need not fall once
    # a method has NCE-CLUB terms, since their critics (3 steps a batch) tighten the upper bounds,
    # which raises them; SupCon has no terms, its loss must fall.
    lower = [name for name in result.history[0] if SIGNS.get(name.rstrip("12")) == -1]
    gains = [sum(row[n] for n in lower) if lower else -row["loss"] for row in result.history]
    first, last = sum(gains[:5]) / 5, sum(gains[-5:]) / 5
    assert last > first + 0.1, f"{method}: lower-bound terms {lower or ['-loss']} {first:.3f} -> {last:.3f}"


@pytest.mark.parametrize("method", [m for m in METHODS if m != "supcon"])
def test_loss_is_the_signed_sum_of_the_terms(method):
    data = small_data()
    model = small_model(method)
    loss, metrics = model.loss(batch_of(data))
    loss = loss.detach()
    diagnostics = {name for name in metrics if name.startswith("bracket/")}
    values = {name: v for name, v in metrics.items() if name != "loss" and name not in diagnostics}
    expected = sum(SIGNS[name.rstrip("12")] * float(v) for name, v in values.items())
    assert float(loss) == pytest.approx(expected, abs=1e-5)
    terms = {name.rstrip("12") for name in values}
    assert terms == set(METHODS[method].terms)
    # Every NCE-CLUB term reports its bracket diagnostic (value minus its own critic's InfoNCE).
    assert diagnostics == {f"bracket/{t}" for t in ("shared_remove", "unique_remove") if t in terms}
    if "unique_keep" in terms:
        assert {"unique_keep1", "unique_keep2"} <= set(metrics)


def test_embed_shapes_and_keys():
    data = small_data()
    b = batch_of(data, 10)
    reps = small_model("factorcl-ssl").embed(b["x1"], b["x2"])
    assert set(reps) == {"s1", "s2", "u1", "u2"} and all(v.shape == (10, 8) for v in reps.values())
    reps = small_model("simclr").embed(b["x1"], b["x2"])
    assert set(reps) == {"z1", "z2"} and all(v.shape == (10, 8) for v in reps.values())
    reps = small_model("supcon").embed(b["x1"], b["x2"])
    torch.testing.assert_close(reps["z1"].norm(dim=1), torch.ones(10))


def test_main_loss_never_trains_the_nce_club_critics():
    data = small_data()
    model = small_model("factorcl-ssl")
    loss, _ = model.loss(batch_of(data))
    loss.backward()
    critic_ids = {id(p) for p in model.critic_parameters()}
    assert critic_ids, "factorcl-ssl has NCE-CLUB critics"
    for name, p in model.named_parameters():
        if id(p) in critic_ids:
            assert p.grad is None, f"{name} got a gradient from the main loss"
    for name in ("encoder1", "encoder2", "heads", "estimators.shared_keep", "estimators.unique_cond_keep.critic"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name
    # The sampled conditioning's proposals and correction critic (default SSL conditioning) are
    # trained by the critic step only.
    assert model.conditioning == "sampled"
    cond_keep = model.estimators["unique_cond_keep"]
    for part in (cond_keep.proposal, cond_keep.x_proposal, cond_keep.correction_critic):
        assert all(p.grad is None for p in part.parameters())
        assert {id(p) for p in part.parameters()} <= critic_ids
    # ... and the encoders do receive the upper bound's gradient through its frozen critic.
    model.zero_grad(set_to_none=True)
    b = batch_of(data)
    reps = model.embed(b["x1"], b["x2"])
    model.estimators["unique_remove"](reps["u1"], reps["u2"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder1.parameters())
    assert all(p.grad is None for p in model.estimators["unique_remove"].parameters())


def test_critic_loss_trains_only_the_critics_without_a_second_encoder_pass():
    data = small_data()
    model = small_model("factorcl-ssl")
    calls = {"n": 0}
    model.encoder1.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    model.loss(batch_of(data))
    before = calls["n"]
    model.zero_grad(set_to_none=True)
    model.critic_loss().backward()
    assert calls["n"] == before, "critic_loss re-ran the encoder"
    critic_ids = {id(p) for p in model.critic_parameters()}
    for name, p in model.named_parameters():
        if id(p) in critic_ids:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, f"{name} got a gradient from the critic loss"


def test_parameters_that_must_not_move_do_not_move():
    """One trainer step: the critic step leaves encoders untouched; the main step leaves NCE-CLUB critics untouched."""
    data = small_data()
    model = small_model("factorcl-ssl")
    critic_ids = {id(p) for p in model.critic_parameters()}
    main_opt = torch.optim.Adam(model.main_parameters(), lr=1e-2)
    critic_opt = torch.optim.Adam(model.critic_parameters(), lr=1e-2)
    snap = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss, _ = model.loss(batch_of(data))
    loss.backward()
    main_opt.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(p, snap[n])
        assert moved == (id(p) not in critic_ids), n
    snap = {n: p.detach().clone() for n, p in model.named_parameters()}
    main_opt.zero_grad(set_to_none=True)
    model.critic_loss().backward()
    critic_opt.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(p, snap[n])
        assert moved == (id(p) in critic_ids), n


def test_methods_without_upper_bounds_have_no_critic_step():
    model = small_model("simclr")
    assert not model.has_critic_step
    assert float(model.critic_loss()) == 0.0
    assert small_model("factorcl-sup").has_critic_step


def test_batch_views_from_the_loader_are_used_instead_of_augment():
    data = small_data()
    model = small_model("cross+self", augment1="batch", augment2="batch")
    b = batch_of(data, 16)
    with pytest.raises(ValueError, match="no 'x1_aug'"):
        model.loss(b)
    b = {**b, "x1_aug": b["x1"], "x2_aug": b["x2"]}
    loss, metrics = model.loss(b)
    assert torch.isfinite(loss)


def test_unique_augmentation_receives_the_other_modality():
    seen = {}

    def unique_aug(x2, cond=None):
        seen["cond"] = cond
        return x2 + 0.01

    data = small_data()
    model = small_model("factorcl-ssl", augment2=unique_aug)
    b = batch_of(data, 16)
    model.loss(b)
    assert torch.equal(seen["cond"], b["x1"])


def test_bad_input_gives_clear_errors():
    data = small_data()
    model = small_model("factorcl-sup")
    b = batch_of(data, 16)
    with pytest.raises(ValueError, match="x1 and x2 must have the same batch size, got 16 and 15"):
        model.loss({"x1": b["x1"], "x2": b["x2"][:15], "y": b["y"]})
    with pytest.raises(ValueError, match="supervised: the batch must carry labels 'y'"):
        model.loss({"x1": b["x1"], "x2": b["x2"]})
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 2\)"):
        model.loss({**b, "y": b["y"] + 5})
    with pytest.raises(ValueError, match="method must be one of"):
        small_model("simclr++")
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        small_model("factorcl-sup", num_classes=None)
    with pytest.raises(ValueError, match="needs augmented views"):
        small_model("factorcl-ssl", augment1=None, augment2=None)
    with pytest.raises(ValueError, match="conditioning for 'factorcl-ssl'"):
        small_model("factorcl-ssl", conditioning="grouped")
    with pytest.raises(ValueError, match="critics has names"):
        small_model("simclr", critics={"unique_remove": torch.nn.Identity()})
    wrong = factorcl.FactorCL(torch.nn.Linear(IN_DIM, 5), torch.nn.Linear(IN_DIM, 16), 16, 16, method="simclr")
    with pytest.raises(ValueError, match=r"encoder1 must return \[B, dim1\] = \[16, 16\], got shape \(16, 5\)"):
        wrong.loss(b)


def test_custom_critic_replaces_a_term():
    import bounds

    critic = bounds.SeparableCritic(8, 8, hidden_dim=16, normalize=True, temperature=0.05)
    model = small_model("simclr", critics={"shared_keep": critic})
    assert model.estimators["shared_keep"].critic is critic


def test_shared_scorer_drives_the_unique_augmentation():
    """model.shared_scorer() scores candidates of x2 against x1 with the shared critic: it equals the
    critic's score of (Z_S1(x1), Z_S2(candidate)), and UniqueAugment keeps the best candidate."""
    import augment

    data = small_data()
    model = small_model("factorcl-ssl")
    scorer = model.shared_scorer()
    x1, x2 = data.x1[:6], data.x2[:6]
    candidates = torch.stack([x2, x2 + 1.0, torch.zeros_like(x2)], dim=1)  # [6, 3, D]
    scores = scorer(x1, candidates)
    assert scores.shape == (6, 3) and not scores.requires_grad and model.training
    with torch.no_grad():
        model.eval()
        reps = model.embed(x1, candidates[:, 1])
        model.train()
        critic = model.estimators["shared_keep"].critic
        expected = torch.diagonal(critic(reps["s1"], reps["s2"]))
    torch.testing.assert_close(scores[:, 1], expected)
    unique = augment.UniqueAugment(lambda x: x + 0.5 * torch.randn_like(x), scorer, num_candidates=4)
    out = unique(x2, cond=x1)
    assert out.shape == x2.shape
    with pytest.raises(ValueError, match="no shared critic"):
        small_model("supcon").shared_scorer()


def test_critic_inputs_are_what_the_last_loss_left_for_the_critic_step():
    """The critic cache is explicit: model.critic_inputs, one entry per separately trained estimator."""
    data = small_data()
    batch = next(iter(data.split("train").loader(64, shuffle=False)))
    model = small_model("factorcl-ssl")  # sampled conditioning: both conditional terms have critic losses
    assert model.critic_inputs == [] and float(model.critic_loss()) == 0.0
    model.loss(batch)
    names = {model.estimators[n]: n for n in model.estimators}
    assert [names[item.estimator] for item in model.critic_inputs] == [
        "unique_remove",
        "shared_remove",
        "unique_cond_keep",
    ]
    assert all(not a.requires_grad for item in model.critic_inputs for a in item.args if torch.is_tensor(a))
    # critic_loss() trains on the cached inputs: the same value as passing them explicitly (on a copy:
    # the sampled proposals update their running moments when they are fitted).
    twin = copy.deepcopy(model)
    torch.manual_seed(0)
    explicit = twin.critic_loss(twin.critic_inputs)
    torch.manual_seed(0)
    torch.testing.assert_close(model.critic_loss(), explicit)
    simclr = small_model("simclr")
    simclr.loss(batch)
    assert simclr.critic_inputs == []


def test_the_earlier_call_forms_still_work():
    """FactorCL's earlier signature (settings positionally after dim2), dict configs, numpy/tensor numbers."""
    import numpy as np

    enc = lambda: torch.nn.Linear(3, 4)  # noqa: E731
    assert factorcl.FactorCL(enc(), enc(), 4, 4, "simclr", "concat").critic_kind == "concat"
    assert factorcl.FactorCL(enc(), enc(), 4, 4, {"method": "cross+self"}, augment1=lambda x: x).objective.name == (
        "cross+self"
    )
    for value in (np.float32(0.2), torch.tensor(0.2)):
        model = factorcl.FactorCL(enc(), enc(), 4, 4, method="simclr", temperature=value)
        assert model.temperature == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"temperature must be a number > 0, got '0.2' \(str\)"):
        factorcl.FactorCL(enc(), enc(), 4, 4, method="simclr", temperature="0.2")
    with pytest.raises(ValueError, match=r"method 'factorcl-sup' uses labels: num_classes must be an integer >= 2"):
        factorcl.FactorCL(enc(), enc(), 4, 4, method="factorcl-sup", num_classes=1)
    with pytest.raises(ValueError, match=r"critics has names that 'simclr' does not use: \['unique_remove'\]"):
        factorcl.FactorCL(enc(), enc(), 4, 4, method="simclr", critics={"unique_remove": torch.nn.Linear(1, 1)})
    feats, _ = factorcl.extract_features(
        factorcl.FactorCL(enc(), enc(), 4, 4, "simclr"), [(torch.randn(5, 3),) * 2], "cpu"
    )
    assert feats["z1"].shape == (5, 128)
