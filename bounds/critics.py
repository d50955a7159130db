"""Critics f(x, y): networks that score every (x_i, y_j) pair of a batch as a [B, N] matrix."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from ._checks import check_features

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def _activation(name: str) -> type[nn.Module]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, activation: str = "relu") -> nn.Sequential:
    """An MLP with ``layers`` hidden-to-hidden layers (the published convention).

    ``layers=2`` gives Linear(in, h), act, Linear(h, h), act, Linear(h, h), act, Linear(h, out).
    Weights get He (Kaiming) normal initialisation (Xavier for tanh) and biases start at zero:
    PyTorch's default Linear init shrinks the activation variance about six-fold per ReLU layer,
    so in a stack of encoder, head and critic the random biases swamp the signal, every sample
    looks alike and contrastive training stalls for hundreds of steps.
    """
    for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if int(layers) < 0:
        raise ValueError(f"layers must be >= 0, got {layers}")
    act = _activation(activation)
    seq: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), act()]
    for _ in range(layers):
        seq += [nn.Linear(hidden_dim, hidden_dim), act()]
    seq.append(nn.Linear(hidden_dim, out_dim))
    net = nn.Sequential(*seq)
    for layer in net:
        if isinstance(layer, nn.Linear):
            if activation == "tanh":
                nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain("tanh"))
            else:
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return net


class SeparableCritic(nn.Module):
    """f(x, y) = cos(g(x), h(y)) / temperature by default; g(x)^T h(y) / temperature with ``normalize=False``.

    Cost O((B + N) * MLP + B * N * embed_dim): the scalable critic. CLIP's logit is one such critic.

    Why cosine scores with temperature 0.1 and ``layers=1`` are the defaults (the critic
    ``FactorCL`` uses; CLIP's logit is also a cosine over a temperature): they bound every score
    to [-1/T, 1/T], so no input, however far out, can dominate a logsumexp. The plain dot product
    of two unnormalised embeddings (the old default) is unbounded: on heavy-tailed data
    (multivariate Student-t, 5 + 5 dims, 2 degrees of freedom, true I = 0.45 nats) its held-out
    InfoNCE was -6.4 nats and its NCE-CLUB "upper bound" -2.8, below the true MI; the cosine
    critic reads 0.0 / 0.8 (``benchmarks/heavy_tailed_critics.py``). The price of the bound is NCE-CLUB <= 2 / T and a
    log-density ratio the critic can express only up to a range of 2 / T = 20 nats; use a smaller
    temperature, ``learn_temperature=True`` or ``normalize=False`` to go beyond it. One
    hidden-to-hidden layer instead of the MLP convention's two overfits less: trained on 5,000
    pairs, its held-out InfoNCE was higher on every row of that benchmark.

    ``learn_temperature=True`` makes the temperature a parameter (``log_inv_temperature``, as CLIP's
    logit scale, initialised at ``temperature``), clamped at ``min_temperature`` (default 0.01,
    CLIP's floor, so scores stay within +-100): it appears in ``named_parameters``, so
    :func:`bounds.call_frozen` freezes it with the rest of the critic.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden_dim: int = 512,
        embed_dim: int = 128,
        layers: int = 1,
        activation: str = "relu",
        normalize: bool = True,
        temperature: float = 0.1,
        learn_temperature: bool = False,
        min_temperature: float = 0.01,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        # The floor only binds a learnable temperature; a fixed one may be set below it.
        if learn_temperature and not 0 < min_temperature <= temperature:
            raise ValueError(
                f"min_temperature must be in (0, temperature={temperature}] with learn_temperature, "
                f"got {min_temperature}"
            )
        self.x_dim, self.y_dim = int(x_dim), int(y_dim)
        self.g = mlp(x_dim, hidden_dim, embed_dim, layers, activation)
        self.h = mlp(y_dim, hidden_dim, embed_dim, layers, activation)
        self.normalize = bool(normalize)
        self.learn_temperature = bool(learn_temperature)
        self.min_temperature = float(min_temperature)
        if self.learn_temperature:
            self.log_inv_temperature = nn.Parameter(torch.tensor(-math.log(temperature)))
        else:
            self._temperature = float(temperature)

    @property
    def temperature(self) -> float:
        """The current temperature T (clamped at ``min_temperature`` when learnable)."""
        if self.learn_temperature:
            return 1.0 / float(self.inverse_temperature().detach())
        return self._temperature

    def inverse_temperature(self) -> Tensor | float:
        """1 / T: a tensor (with gradient) when the temperature is learnable, else a float."""
        if self.learn_temperature:
            return self.log_inv_temperature.exp().clamp(max=1.0 / self.min_temperature)
        return 1.0 / self._temperature

    def embed_x(self, x: Tensor) -> Tensor:
        """g(x), normalised when the critic is a cosine critic: [B, embed_dim]."""
        e = self.g(check_features(x, self.x_dim, "x"))
        return F.normalize(e, dim=-1) if self.normalize else e

    def embed_y(self, y: Tensor) -> Tensor:
        """h(y), normalised when the critic is a cosine critic: [N, embed_dim]."""
        e = self.h(check_features(y, self.y_dim, "y"))
        return F.normalize(e, dim=-1) if self.normalize else e

    def score_embeddings(self, gx: Tensor, hy: Tensor) -> Tensor:
        """Scores [B, N] from already embedded x and y (e.g. gathered from other ranks)."""
        scores = gx @ hy.transpose(0, 1)
        if self.learn_temperature:
            return scores * self.inverse_temperature()
        return scores / self._temperature

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Scores [B, N] with scores[i, j] = f(x_i, y_j)."""
        return self.score_embeddings(self.embed_x(x), self.embed_y(y))

    def score_candidates(self, x: Tensor, candidates: Tensor) -> Tensor:
        """Scores [B, M] with scores[i, m] = f(x_i, candidates[i, m]): each row its own M candidates."""
        b, m, d = candidates.shape
        gx = self.embed_x(x)
        hy = self.embed_y(candidates.reshape(b * m, d)).view(b, m, -1)
        return torch.einsum("be,bme->bm", gx, hy) * self.inverse_temperature()

    def extra_repr(self) -> str:
        learn = f", learn_temperature=True, min_temperature={self.min_temperature}" if self.learn_temperature else ""
        return f"normalize={self.normalize}, temperature={self.temperature:.4g}{learn}"


#: ConcatCritic's chunk on a CPU, in pair activations (rows * N * H): 2**20 floats, 4 MiB. Measured at H = 512
#: (``benchmarks/critic_speed.py --chunk-sweep``): at B = 128-1024 it is 1.5-1.7x faster than one 65536-pair
#: chunk; at B = 64 (two 4 MiB chunks against one of 8 MiB) it is 1.1-1.5x slower, where repeats of the one
#: chunk spread 1.3x. The likely reason is the allocator: blocks under glibc's 32 MiB mmap threshold are
#: reused from the heap, larger ones come as fresh pages the kernel must fault in and zero (with mmap forced
#: for every block the default loses its lead). The price is the heap's freed blocks: peak RSS 5.8 GiB
#: against 4.1-4.3 GiB at B = 1024.
CPU_CHUNK_ELEMENTS = 1 << 20
#: ConcatCritic's chunk on other devices (CUDA), in pairs: large chunks keep the kernels few and big.
DEFAULT_CHUNK_PAIRS = 1 << 16


class ConcatCritic(nn.Module):
    """f(x, y) = MLP([x; y]): the critic the paper uses, without tiling [B*N, x_dim + y_dim] inputs.

    The first layer is linear, so W [x; y] + b = W_x x + W_y y + b: both halves are computed once
    ([B, H] and [N, H]) and broadcast-added; the remaining layers run on the [rows, N, H] pair
    activations in row chunks of at most ``chunk_size`` pairs (at least one row). ``self.net`` is the
    plain MLP on [x; y], so the scores equal the naive tiled computation with the same weights.

    ``chunk_size=None`` (the default) picks the chunk by device: on a CPU, :data:`CPU_CHUNK_ELEMENTS`
    pair activations (4 MiB in float32; one row of N pairs when N * H is larger), which the allocator
    recycles instead of faulting in fresh pages (1.5-1.7x faster than one 65536-pair chunk at
    B = 128-1024, for up to 1.4x the peak resident memory at B = 1024); elsewhere
    :data:`DEFAULT_CHUNK_PAIRS` pairs. Pass ``chunk_size=65536`` for the smaller peak, or
    ``checkpoint=True`` to bound it.

    With gradients enabled, autograd keeps every chunk's activations for the backward pass, so
    chunking bounds transient memory only; ``checkpoint=True`` recomputes each chunk in the
    backward pass instead, which bounds peak training memory by ``chunk_size`` at the cost of a
    second forward pass.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden_dim: int = 512,
        layers: int = 2,
        activation: str = "relu",
        chunk_size: int | None = None,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive number of pairs or None (by device), got {chunk_size}")
        self.x_dim, self.y_dim = int(x_dim), int(y_dim)
        self.net = mlp(x_dim + y_dim, hidden_dim, 1, layers, activation)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.checkpoint = bool(checkpoint)

    def chunk_pairs(self, device: torch.device | str) -> int:
        """The pairs per chunk on ``device``: ``chunk_size``, or the device's default when it is None."""
        if self.chunk_size is not None:
            return self.chunk_size
        if torch.device(device).type == "cpu":
            return max(1, CPU_CHUNK_ELEMENTS // self.net[0].out_features)
        return DEFAULT_CHUNK_PAIRS

    def project_x(self, x: Tensor) -> Tensor:
        """W_x x + b: the x half of the first layer, [B, H]."""
        first = self.net[0]
        return F.linear(check_features(x, self.x_dim, "x"), first.weight[:, : self.x_dim], first.bias)

    def project_y(self, y: Tensor) -> Tensor:
        """W_y y: the y half of the first layer, [N, H]."""
        first = self.net[0]
        return F.linear(check_features(y, self.y_dim, "y"), first.weight[:, self.x_dim :])

    def _after_first_layer(self, h: Tensor) -> Tensor:
        """Scores [...] from fresh first-layer pair activations [..., H]: the layers after the first."""
        # The first ReLU runs in place: h is the broadcast add's fresh output, which its backward does not
        # keep, so rewriting [rows, N, H] saves a pass over memory. After a Linear it must not: a Linear on
        # [rows, N, H] returns a view of its [rows * N, H] product, and an in-place op on a view makes
        # autograd copy the whole gradient through CopySlices (the later nn.ReLU modules are out of place).
        act = self.net[1]
        h = torch.relu_(h) if type(act) is nn.ReLU else act(h)
        for layer in self.net[2:]:
            h = layer(h)
        return h.squeeze(-1)

    def _rest(self, hx: Tensor, hy: Tensor) -> Tensor:
        # [rows, 1, H] + [1, N, H] -> [rows, N, H] -> layers after the first -> [rows, N]
        return self._after_first_layer(hx.unsqueeze(1) + hy.unsqueeze(0))

    def score_projections(self, hx: Tensor, hy: Tensor) -> Tensor:
        """Scores [B, N] from the first-layer halves (e.g. gathered from other ranks)."""
        n = hy.shape[0]
        rows = max(1, self.chunk_pairs(hx.device) // max(n, 1))
        use_ckpt = self.checkpoint and torch.is_grad_enabled() and (hx.requires_grad or hy.requires_grad)
        chunks = []
        for start in range(0, hx.shape[0], rows):
            part = hx[start : start + rows]
            if use_ckpt:
                chunks.append(_checkpoint(self._rest, part, hy, use_reentrant=False))
            else:
                chunks.append(self._rest(part, hy))
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=0)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Scores [B, N] with scores[i, j] = MLP([x_i; y_j])."""
        return self.score_projections(self.project_x(x), self.project_y(y))

    def score_candidates(self, x: Tensor, candidates: Tensor) -> Tensor:
        """Scores [B, M] with scores[i, m] = MLP([x_i; candidates[i, m]]): each row its own M candidates."""
        b, m, d = candidates.shape
        h = self.project_x(x).unsqueeze(1) + self.project_y(candidates.reshape(b * m, d)).view(b, m, -1)
        return self._after_first_layer(h)

    def extra_repr(self) -> str:
        chunk = "by device" if self.chunk_size is None else self.chunk_size
        return f"chunk_size={chunk}, checkpoint={self.checkpoint}"


def critic_from_name(kind: str, x_dim: int, y_dim: int, **kwargs) -> nn.Module:
    """Build a critic by name: ``"separable"`` or ``"concat"``; ``kwargs`` go to its constructor.

    Arguments not given take that critic's own defaults, so there is one set of them: a cosine
    ``SeparableCritic`` (temperature 0.1, ``layers=1``; pass ``normalize=False, temperature=1.0``
    for the plain dot product) and a ``ConcatCritic`` with ``layers=2``.
    """
    if kind == "separable":
        return SeparableCritic(x_dim, y_dim, **kwargs)
    if kind == "concat":
        return ConcatCritic(x_dim, y_dim, **kwargs)
    raise ValueError(f"critic must be one of ['concat', 'separable'], got {kind!r}")
