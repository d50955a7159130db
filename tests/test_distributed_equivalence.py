"""Two gloo processes, each with half of a batch, against one process with the whole batch.

For every estimator and critic path, and for full FactorCL steps through the trainer's own DDP
wrapping: each rank scores its rows against candidates gathered from both ranks. Expected, to
1e-5 (see factorcl/distributed.py for why):

- the mean over ranks of the rank losses (and metrics) equals the single-process loss;
- a rank's input gradient equals world_size x the single-process gradient of its rows
  (the gather's backward sums every rank's gradient; each rank's loss is a mean over B = N / W rows);
- the mean over ranks of a parameter gradient (DDP's average) equals the single-process gradient.

Grouped NCE-CLUB and SupCon average over a data-dependent subset of rows; the labels below give
the ranks different numbers of such rows (one case: none at all on rank 0).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import bounds
from factorcl.distributed import (
    average_gradients,
    gather_no_grad,
    gather_with_grad,
    get_world_size,
    global_mean_normalizer,
    wrap_loss_ddp,
)
from factorcl_helpers import small_model
from test_distributed_helpers import run_ranks

N, D, K = 8, 6, 3  # global batch, feature width, condition width
WORLD = 2
TOL = dict(rtol=1e-5, atol=1e-5)
UNEVEN = [0, 0, 1, 2, 0, 3, 3, 1]  # rows with another row of their label: rank 0 has 3, rank 1 has 4
EMPTY_ON_RANK0 = [0, 1, 2, 3, 4, 4, 5, 5]  # rank 0: every row alone in its group; rank 1: all 4


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(N, D, generator=g),
        "y": torch.randn(N, D, generator=g),
        "c1": torch.randn(N, K, generator=g),
        "c2": torch.randn(N, K, generator=g),
        "uneven": torch.tensor(UNEVEN),
        "empty0": torch.tensor(EMPTY_ON_RANK0),
    }


def _sep(x_dim=D, y_dim=D):
    torch.manual_seed(1)
    return bounds.SeparableCritic(x_dim, y_dim, hidden_dim=16, embed_dim=8, layers=1, normalize=True, temperature=0.5)


def _concat(x_dim=D, y_dim=D):
    torch.manual_seed(1)
    return bounds.ConcatCritic(x_dim, y_dim, hidden_dim=16, layers=1)


def _marginal():
    torch.manual_seed(2)
    return bounds.SeparableCritic(D, 2 * K, hidden_dim=16, embed_dim=8, layers=1)


# Each case: (module, function of (module, this process's rows)) -> loss. The same code runs in one
# process (gather_* are the identity and offsets 0) and on each rank.
def _g(t):
    return gather_with_grad(t)


def _infonce(m, t):
    yg, off = _g(t["y"])
    return bounds.infonce(m(t["x"], yg), offset=off)


def _symmetric(m, t):
    (yg, off), (xg, _) = _g(t["y"]), _g(t["x"])
    return m(t["x"], yg, offset=off, x_candidates=xg)


def _nce_club(m, t):
    yg, off = _g(t["y"])
    return m(t["x"], yg, offset=off)


def _critic_loss(m, t):
    yg, off = _g(t["y"])
    return m.critic_loss(t["x"], yg, offset=off)


def _grouped_infonce(labels):
    def fn(m, t):
        yg, off = _g(t["y"])
        return bounds.grouped_infonce(m(t["x"], yg), t[labels], gather_no_grad(t[labels]), offset=off)

    return fn


def _grouped_nce_club(labels):
    def fn(m, t):
        yg, off = _g(t["y"])
        scores = bounds.call_frozen(m, t["x"], yg)
        return bounds.grouped_nce_club(
            scores, t[labels], gather_no_grad(t[labels]), offset=off, normalizer=global_mean_normalizer
        )

    return fn


def _cond(kind, critic=False):
    """Conditional estimators as FactorCL calls them: concat conditions the x side with its own rows'
    condition; chain puts the (gathered) conditions with the candidates; grouped uses labels."""

    def fn(m, t):
        yg, off = _g(t["y"])
        if kind == "grouped":
            cx, cy = t["uneven"], gather_no_grad(t["uneven"])
        elif kind == "chain":
            cx, cy = _g(t["c1"])[0], _g(t["c2"])[0]
        else:
            cx, cy = t["c1"], _g(t["c2"])[0]
        if critic:
            return m.critic_loss(t["x"], yg, cx, cy, offset=off)
        if kind == "grouped" and isinstance(m, bounds.ConditionalNCECLUB):
            return m(t["x"], yg, cx, cy, offset=off, normalizer=global_mean_normalizer)
        return m(t["x"], yg, cx, cy, offset=off)

    return fn


def _supcon(labels, two_views):
    def fn(m, t):
        z1 = F.normalize(m(t["x"]), dim=-1)
        (z1g, off) = _g(z1)
        y, yg = t[labels], gather_no_grad(t[labels])
        n, b = z1g.shape[0], z1.shape[0]
        idx = torch.arange(b) + off
        if not two_views:
            return bounds.supcon_loss(z1 @ z1g.T / 0.2, y, yg, self_index=idx, normalizer=global_mean_normalizer)
        z2 = F.normalize(m(t["y"]), dim=-1)
        z2g = _g(z2)[0]
        anchors, cands = torch.cat([z1, z2]), torch.cat([z1g, z2g])
        return bounds.supcon_loss(
            anchors @ cands.T / 0.2,
            torch.cat([y, y]),
            torch.cat([yg, yg]),
            self_index=torch.cat([idx, idx + n]),
            normalizer=global_mean_normalizer,
        )

    return fn


def _linear():
    torch.manual_seed(3)
    return torch.nn.Linear(D, 5)


BOUND_CASES = {
    "infonce/separable": (lambda: _sep(), _infonce),
    "infonce/concat-critic": (lambda: _concat(), _infonce),
    "infonce/symmetric": (lambda: bounds.InfoNCE(_sep(), symmetric=True), _symmetric),
    "nce_club": (lambda: bounds.NCECLUB(_sep()), _nce_club),
    "nce_club/include_diagonal": (lambda: bounds.NCECLUB(_concat(), include_diagonal=True), _nce_club),
    "nce_club/critic_loss": (lambda: bounds.NCECLUB(_sep()), _critic_loss),
    "grouped_infonce/uneven": (lambda: _sep(), _grouped_infonce("uneven")),
    "grouped_infonce/empty-rank": (lambda: _sep(), _grouped_infonce("empty0")),
    "grouped_nce_club/uneven": (lambda: _sep(), _grouped_nce_club("uneven")),
    "grouped_nce_club/empty-rank": (lambda: _sep(), _grouped_nce_club("empty0")),
    "conditional_infonce/grouped": (
        lambda: bounds.ConditionalInfoNCE(_sep(D + 7, D + 7), "grouped", num_classes=7),
        _cond("grouped"),
    ),
    "conditional_nce_club/grouped": (
        lambda: bounds.ConditionalNCECLUB(_sep(D + 7, D + 7), "grouped", num_classes=7),
        _cond("grouped"),
    ),
    "conditional_nce_club/grouped/critic_loss": (
        lambda: bounds.ConditionalNCECLUB(_sep(D + 7, D + 7), "grouped", num_classes=7),
        _cond("grouped", True),
    ),
    "conditional_infonce/concat": (lambda: bounds.ConditionalInfoNCE(_sep(D + K, D + K), "concat"), _cond("concat")),
    "conditional_nce_club/concat": (
        lambda: bounds.ConditionalNCECLUB(_concat(D + K, D + K), "concat"),
        _cond("concat"),
    ),
    "conditional_nce_club/concat/critic_loss": (
        lambda: bounds.ConditionalNCECLUB(_concat(D + K, D + K), "concat"),
        _cond("concat", True),
    ),
    "conditional_infonce/chain": (
        lambda: bounds.ConditionalInfoNCE(_sep(D, D + 2 * K), "chain", marginal_critic=_marginal()),
        _cond("chain"),
    ),
    "conditional_infonce/chain/critic_loss": (
        lambda: bounds.ConditionalInfoNCE(_sep(D, D + 2 * K), "chain", marginal_critic=_marginal()),
        _cond("chain", True),
    ),
    "conditional_nce_club/chain": (
        lambda: bounds.ConditionalNCECLUB(_sep(D, D + 2 * K), "chain", marginal_critic=_marginal()),
        _cond("chain"),
    ),
    "conditional_nce_club/chain/critic_loss": (
        lambda: bounds.ConditionalNCECLUB(_sep(D, D + 2 * K), "chain", marginal_critic=_marginal()),
        _cond("chain", True),
    ),
    "supcon/one-view/uneven": (_linear, _supcon("uneven", two_views=False)),
    "supcon/one-view/empty-rank": (_linear, _supcon("empty0", two_views=False)),
    "supcon/two-views": (_linear, _supcon("uneven", two_views=True)),
}


def _run_bound(name: str, rows: slice) -> dict:
    make, fn = BOUND_CASES[name]
    module = make()
    t = {k: v[rows].clone().requires_grad_(v.is_floating_point()) for k, v in _data().items()}
    loss = fn(module, t)
    loss.backward()
    return {
        "loss": loss.detach(),
        "inputs": {k: v.grad for k, v in t.items() if v.grad is not None},
        "params": {k: p.grad for k, p in module.named_parameters() if p.grad is not None},
    }


# ------------------------------------------------------------------------------- model steps
MODEL_CASES = {
    # The default SSL conditioning ("sampled") draws random negatives per rank and fits its proposal's
    # moments on each rank's rows, so it matches one process in distribution, not exactly; the
    # exact check runs on the deterministic in-batch forms.
    "factorcl-ssl/chain": dict(method="factorcl-ssl", conditioning="chain"),
    "factorcl-ssl/concat-critic-and-conditioning": dict(method="factorcl-ssl", critic="concat", conditioning="concat"),
    "factorcl-sup/grouped": dict(method="factorcl-sup", num_classes=4),
    "ourcl-sup/chain": dict(method="ourcl-sup", num_classes=4, conditioning="chain"),
    "supcon": dict(method="supcon", num_classes=4),
    "simclr/symmetric": dict(method="simclr", symmetric_shared_keep=True),
}


def _batch(rows: slice) -> dict:
    g = torch.Generator().manual_seed(5)
    full = {k: torch.randn(N, 20, generator=g) for k in ("x1", "x2", "x1_aug", "x2_aug")}
    full["y"] = torch.tensor([0, 0, 1, 2, 0, 1, 1, 1])  # label 2 alone: grouped NCE-CLUB rows 3 on rank 0, 4 on rank 1
    return {k: v[rows] for k, v in full.items()}


def _run_model(name: str, rows: slice) -> dict:
    kwargs = {"augment1": "batch", "augment2": "batch", **MODEL_CASES[name]}
    model = small_model(**kwargs)
    model.train()
    ddp = wrap_loss_ddp(model, exclude=model.critic_parameters())  # exactly what the Trainer does
    loss, metrics = (ddp or model.loss)(_batch(rows))
    loss.backward()
    critic = model.critic_loss()
    if critic.requires_grad:
        critic.backward()
        average_gradients(model.critic_parameters())
    return {
        "loss": loss.detach(),
        "metrics": metrics,
        "critic_loss": critic.detach(),
        "params": {k: p.grad for k, p in model.named_parameters() if p.grad is not None},
        "critic_params": sorted(
            k for k, p in model.named_parameters() if any(p is q for q in model.critic_parameters())
        ),
    }


def _worker(rank: int, world: int) -> dict:
    b = N // world
    rows = slice(rank * b, (rank + 1) * b)
    out = {
        "bounds": {name: _run_bound(name, rows) for name in BOUND_CASES},
        "models": {name: _run_model(name, rows) for name in MODEL_CASES},
    }
    # Per-rank batch sizes that differ: a clear error on every rank, not a hang in all_gather.
    model = small_model("simclr")
    try:
        model.loss(_batch(slice(0, 4 - rank)))
        out["mismatch"] = None
    except ValueError as exc:
        out["mismatch"] = str(exc)
    out["world"] = get_world_size()
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(_worker, tmp_path_factory.mktemp("equivalence"), world=WORLD)


@pytest.mark.parametrize("name", list(BOUND_CASES))
def test_bound_loss_and_gradients_match_one_process(ranks, name):
    single = _run_bound(name, slice(None))
    dist = [r["bounds"][name] for r in ranks]
    torch.testing.assert_close(sum(d["loss"] for d in dist) / WORLD, single["loss"], **TOL)
    assert set(single["inputs"]) == set(dist[0]["inputs"])
    for key, grad in single["inputs"].items():
        # world_size x the single-process gradient of the rank's own rows (see the module docstring)
        torch.testing.assert_close(torch.cat([d["inputs"][key] for d in dist]), WORLD * grad, **TOL, msg=key)
    assert set(single["params"]) == set(dist[0]["params"])
    for key, grad in single["params"].items():
        torch.testing.assert_close(sum(d["params"][key] for d in dist) / WORLD, grad, **TOL, msg=key)
    assert single["inputs"] or single["params"]


def test_uneven_valid_rows_really_differ_between_ranks():
    # The grouped / SupCon cases above are only meaningful if ranks average over different row counts.
    labels = torch.tensor(UNEVEN)
    counts = [(labels[r * 4 : (r + 1) * 4, None] == labels[None]).sum(1).gt(1).sum().item() for r in range(WORLD)]
    assert counts == [3, 4]
    labels = torch.tensor(EMPTY_ON_RANK0)
    counts = [(labels[r * 4 : (r + 1) * 4, None] == labels[None]).sum(1).gt(1).sum().item() for r in range(WORLD)]
    assert counts == [0, 4]


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_full_model_step_matches_one_process(ranks, name):
    """Loss, every term, every parameter gradient after DDP (main step) and after the critic step's averaging."""
    single = _run_model(name, slice(None))
    dist = [r["models"][name] for r in ranks]
    torch.testing.assert_close(sum(d["loss"] for d in dist) / WORLD, single["loss"], **TOL)
    for key, value in single["metrics"].items():
        torch.testing.assert_close(sum(d["metrics"][key] for d in dist) / WORLD, value, **TOL, msg=key)
    torch.testing.assert_close(sum(d["critic_loss"] for d in dist) / WORLD, single["critic_loss"], **TOL)
    assert set(single["params"]) == set(dist[0]["params"]) == set(dist[1]["params"])
    for key, grad in single["params"].items():
        # DDP (main parameters) and average_gradients (critics) leave the averaged gradient on every rank.
        for d in dist:
            torch.testing.assert_close(d["params"][key], grad, **TOL, msg=key)
    if name.startswith(("factorcl", "ourcl")):
        assert single["critic_params"] and all(k in single["params"] for k in single["critic_params"])


def test_per_rank_batch_sizes_that_differ_raise_a_clear_error_on_every_rank(ranks):
    for r in ranks:
        assert r["world"] == WORLD
        assert r["mismatch"] is not None
        assert "ranks disagree on the batch size (rank 0 has 4, rank 1 has 3)" in r["mismatch"]
