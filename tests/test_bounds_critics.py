import pytest
import torch

import bounds
from bounds.critics import mlp


def tiled_scores(critic: bounds.ConcatCritic, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The naive computation: the MLP on every tiled [x_i; y_j] pair."""
    b, n = x.shape[0], y.shape[0]
    pairs = torch.cat([x.unsqueeze(1).expand(b, n, -1), y.unsqueeze(0).expand(b, n, -1)], dim=-1)
    return critic.net(pairs.reshape(b * n, -1)).reshape(b, n)


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 1 << 16])
def test_concat_critic_equals_tiled_computation(chunk_size):
    torch.manual_seed(0)
    critic = bounds.ConcatCritic(6, 5, hidden_dim=32, layers=2, chunk_size=chunk_size)
    x, y = torch.randn(9, 6), torch.randn(11, 5)
    torch.testing.assert_close(critic(x, y), tiled_scores(critic, x, y), atol=1e-5, rtol=1e-5)


def test_concat_critic_gradients_match_tiled_and_checkpoint():
    torch.manual_seed(1)
    critic = bounds.ConcatCritic(4, 3, hidden_dim=16, chunk_size=10)
    x = torch.randn(8, 4, requires_grad=True)
    y = torch.randn(8, 3, requires_grad=True)
    grads = []
    for fn in (lambda: critic(x, y), lambda: tiled_scores(critic, x, y)):
        critic.zero_grad()
        out = bounds.infonce(fn()) + bounds.nce_club(fn())
        gx, gy = torch.autograd.grad(out, (x, y), retain_graph=True)
        out.backward()
        grads.append((gx, gy, critic.net[0].weight.grad.clone()))
    critic.checkpoint = True
    critic.zero_grad()
    out = bounds.infonce(critic(x, y)) + bounds.nce_club(critic(x, y))
    gx, gy = torch.autograd.grad(out, (x, y), retain_graph=True)
    out.backward()
    grads.append((gx, gy, critic.net[0].weight.grad.clone()))
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_separable_critic_is_inner_product_of_embeddings():
    torch.manual_seed(0)
    critic = bounds.SeparableCritic(5, 7, hidden_dim=16, embed_dim=8, normalize=False, temperature=0.5)
    x, y = torch.randn(4, 5), torch.randn(6, 7)
    expected = critic.g(x) @ critic.h(y).T / 0.5
    torch.testing.assert_close(critic(x, y), expected)
    assert critic(x, y).shape == (4, 6)


def test_separable_cosine_scores_are_bounded_by_inverse_temperature():
    critic = bounds.SeparableCritic(5, 5, hidden_dim=16, normalize=True, temperature=0.1)
    s = critic(torch.randn(10, 5), torch.randn(12, 5))
    assert s.abs().max() <= 10.0 + 1e-4


def test_mlp_layer_convention():
    net = mlp(3, 8, 2, layers=2)
    assert sum(isinstance(m, torch.nn.Linear) for m in net) == 4
    assert net(torch.randn(5, 3)).shape == (5, 2)


@pytest.mark.parametrize("kind", ["separable", "concat"])
def test_critics_follow_input_dtype_and_grad(kind):
    critic = bounds.critic_from_name(kind, 3, 4, hidden_dim=8).double()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    s = critic(x, y)
    assert s.dtype == torch.float64 and s.shape == (5, 5)
    bounds.infonce(s).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is not None and y.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["separable", "concat"])
def test_critics_reject_bad_shapes(kind):
    critic = bounds.critic_from_name(kind, 3, 4, hidden_dim=8)
    with pytest.raises(ValueError, match=r"x must be \[B, 3\]"):
        critic(torch.randn(5, 2), torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"y must be \[B, 4\]"):
        critic(torch.randn(5, 3), torch.randn(5, 4, 1))
    with pytest.raises(ValueError, match="empty batch"):
        critic(torch.randn(0, 3), torch.randn(5, 4))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="activation must be one of"):
        bounds.ConcatCritic(2, 2, activation="swishy")
    with pytest.raises(ValueError, match="critic must be one of"):
        bounds.critic_from_name("bilinear", 2, 2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        bounds.SeparableCritic(2, 2, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        bounds.ConcatCritic(2, 2, chunk_size=0)


def test_concat_critic_default_chunk_is_chosen_by_device():
    critic = bounds.ConcatCritic(3, 3, hidden_dim=512)
    assert critic.chunk_size is None
    assert critic.chunk_pairs(torch.device("cpu")) == bounds.critics.CPU_CHUNK_ELEMENTS // 512 == 2048
    assert critic.chunk_pairs(torch.device("cuda")) == bounds.critics.DEFAULT_CHUNK_PAIRS
    assert bounds.ConcatCritic(3, 3, chunk_size=7).chunk_pairs(torch.device("cpu")) == 7
    assert critic.chunk_pairs("cpu") == 2048  # a device name works too
    assert "chunk_size=by device" in repr(critic)


def test_concat_critic_rejects_non_positive_chunk_size_with_its_name():
    with pytest.raises(
        ValueError, match=r"chunk_size must be a positive number of pairs or None \(by device\), got -3"
    ):
        bounds.ConcatCritic(2, 2, chunk_size=-3)


def test_concat_critic_default_chunks_equal_tiled_computation():
    # 2**20 // 4096 = 256 pairs per chunk: 60 x 50 pairs run in 12 chunks of 5 rows.
    torch.manual_seed(2)
    critic = bounds.ConcatCritic(4, 3, hidden_dim=4096, layers=1)
    x, y = torch.randn(60, 4), torch.randn(50, 3)
    assert critic.chunk_pairs(x.device) // y.shape[0] == 5
    rows_seen = []
    rest = critic._rest

    def counting_rest(hx, hy):
        rows_seen.append(hx.shape[0])
        return rest(hx, hy)

    critic._rest = counting_rest  # scoring must honour the device's chunk, not one big chunk
    torch.testing.assert_close(critic(x, y), tiled_scores(critic, x, y), atol=1e-4, rtol=1e-4)
    assert rows_seen == [5] * 12


@pytest.mark.parametrize(("layers", "activation"), [(0, "relu"), (1, "tanh"), (2, "relu")])
def test_concat_critic_gradients_equal_tiled_mlp(layers, activation):
    # The in-place first ReLU must leave every gradient as the plain MLP on [x; y] gives it, N != B.
    torch.manual_seed(3)
    critic = bounds.ConcatCritic(4, 3, hidden_dim=16, layers=layers, activation=activation, chunk_size=7).double()
    x = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(11, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 11, dtype=torch.float64)
    grads = torch.autograd.grad((critic(x, y) * w).sum(), [x, y, *critic.parameters()])
    tiled = torch.autograd.grad((tiled_scores(critic, x, y) * w).sum(), [x, y, *critic.parameters()])
    for got, want in zip(grads, tiled, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    # score_candidates runs the same layers (in-place first ReLU) on each row's own candidates.
    cand = torch.randn(9, 5, 3, dtype=torch.float64, requires_grad=True)
    own = critic.score_candidates(x, cand)
    full = tiled_scores(critic, x, cand.reshape(45, 3)).view(9, 9, 5)[torch.arange(9), torch.arange(9)]
    torch.testing.assert_close(own, full, atol=1e-10, rtol=1e-10)
    got = torch.autograd.grad(own.square().sum(), [x, cand, *critic.parameters()])
    want = torch.autograd.grad(full.square().sum(), [x, cand, *critic.parameters()])
    for g, w_ in zip(got, want, strict=True):
        torch.testing.assert_close(g, w_, atol=1e-10, rtol=1e-10)


def _graph_nodes(fn) -> set[str]:
    seen, names, stack = set(), set(), [fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


def test_concat_critic_backward_copies_no_pair_gradients():
    # An in-place ReLU on a Linear's [rows, N, H] output (a view) makes autograd copy the whole pair
    # gradient through CopySlices (this test fails on that code). Only the first ReLU is in place.
    critic = bounds.ConcatCritic(3, 3, hidden_dim=8, layers=2)
    x, y = torch.randn(5, 3, requires_grad=True), torch.randn(6, 3, requires_grad=True)
    names = _graph_nodes(critic(x, y).grad_fn)
    assert "CopySlices" not in names
    assert "ReluBackward0" in names  # the later ReLUs are in the graph, out of place
