"""The augmentation calling convention, composition, and the helpers every augmentation shares.

Calling convention (every augmentation in this package):

* unimodal: ``aug(x, generator=None, **kwargs) -> x_aug``
* unique (conditioned on the other modality): ``aug(x2, cond=x1, generator=None) -> x2_aug``

``cond`` and ``generator`` are keyword-only; ``generator`` is a ``torch.Generator``, an ``int`` seed
(turned into a CPU generator once per call) or None. Other keyword arguments given at call time
(``lengths``, ``mask``, ``relevance``, ...) are per sample, ``[B, ...]``: containers that split or
repeat the batch (:class:`RandomChoice`, :class:`RandomApply`, :class:`~augment.unique.UniqueAugment`)
split or repeat them along with it.

Keyword routing: a container (:class:`Compose`, :class:`RandomChoice`, :class:`RandomApply`,
:class:`~augment.unique.UniqueAugment`) hands each child only the keywords that child uses
(:func:`accepts_keyword`; worked out once per class or callable and cached). So one call can carry
keywords meant for different children, e.g.
``Compose([RelevanceMask(p=0.3), GaussianNoise(0.1)])(x, relevance=r)``, and a keyword that no
child uses is dropped. A leaf augmentation called directly takes only its own ``forward``'s
keywords (an unknown one is a ``TypeError``, as for any Python function). Augmentations that do not
look at the other modality accept ``cond`` and ignore it (the trivial case of a unique one), so
unimodal and unique augmentations compose freely. Augmentations never modify their input; outputs
keep the input's device, dtype and (unless documented otherwise) shape.

Randomness: every random draw takes ``generator``; with ``generator=None`` the global torch RNG of
the tensor's device is used. A generator may live on another device than the data (e.g. a CPU
generator for CUDA tensors): draws are made on the generator's device and moved. Libraries that only
use the global RNG (kornia, ``torch.distributions``) are made reproducible by drawing a seed from
the generator and running them under :func:`seeded_global_rng`, which forks and restores the global
RNG state (CPU, and the data's CUDA or MPS device) so the caller's global RNG stream is left
untouched.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import numbers
import operator
import types
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Augmentation",
    "Compose",
    "RandomChoice",
    "RandomApply",
    "Identity",
    "accepts_keyword",
    "seeded_global_rng",
]

# --------------------------------------------------------------------------------------------
# Validation helpers (one message style, one place)
# --------------------------------------------------------------------------------------------


def shape_str(shape: Sequence[int] | torch.Size) -> str:
    """``(3,)`` / ``(2, 5)``: a shape written the way Python writes tuples."""
    return str(tuple(int(s) for s in shape))


def check_tensor(x: object, name: str) -> Tensor:
    """``x`` must be a tensor."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_rank(x: Tensor, name: str, ranks: Sequence[int], layout: str) -> Tensor:
    """``x.dim()`` must be one of ``ranks``; ``layout`` names the expected shape, e.g. ``[B, D]``."""
    if x.dim() not in ranks:
        raise ValueError(f"{name} must be {layout}, got shape {shape_str(x.shape)}")
    return x


def check_nonempty_batch(x: Tensor | Sequence[Any], name: str) -> int:
    """The batch (first dimension / list length) must not be empty; returns B."""
    b = x.shape[0] if isinstance(x, Tensor) else len(x)
    if b == 0:
        raise ValueError(f"{name} has an empty batch (B=0)")
    return int(b)


def check_floating(x: Tensor, name: str) -> Tensor:
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_cond(cond: object, batch: int, x_name: str = "x") -> Tensor:
    """``cond`` (the conditioning modality) must be a tensor with the same batch size as x."""
    cond = check_tensor(cond, "cond")
    if cond.dim() == 0:
        raise ValueError(f"cond must have a batch dimension, got shape {shape_str(cond.shape)}")
    if cond.shape[0] != batch:
        raise ValueError(f"cond has batch {cond.shape[0]} but {x_name} has batch {batch}")
    return cond


def check_probability(p: object, name: str = "p") -> float:
    """A probability in [0, 1]."""
    try:
        value = float(p)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {p!r}") from None
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return value


def check_number(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
) -> float:
    """A finite number with optional bounds ``low <= value <= high`` (``low < value`` if not inclusive)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (v < low or (not low_inclusive and v == low)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}, got {value}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return v


def check_int(value: object, name: str, *, low: int | None = None) -> int:
    """An integer (Python, numpy or one-element integer tensor; bools rejected) with an optional lower bound."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    return v


def check_generator(generator: object) -> torch.Generator | None:
    """A ``torch.Generator`` or None; an ``int`` seed becomes a seeded CPU generator."""
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")
    return generator


def batch_size(x: Tensor | Sequence[Any]) -> int:
    return int(x.shape[0]) if isinstance(x, Tensor) else len(x)


def is_per_sample(value: Any, batch: int) -> bool:
    """Whether a keyword value is per sample: a tensor (rank >= 1) or list whose first dimension is the batch."""
    if isinstance(value, Tensor):
        return value.dim() >= 1 and value.shape[0] == batch
    return isinstance(value, list) and len(value) == batch


def floor_fraction(n: Any, p: float, *, ceil: bool = False) -> Any:
    """``floor(n * p)`` (or ``ceil``) in exact integer arithmetic, for an int or an integer tensor ``n``.

    In floating point ``100 * 0.29 = 28.999999999999996``; ``p`` is read as the nearest fraction
    with a denominator up to 10**6 (0.29 -> 29/100, 1/3 -> 1/3), so counts are what the decimal
    ``p`` says.
    """
    frac = Fraction(p).limit_denominator(10**6)
    num, den = frac.numerator, frac.denominator
    if ceil:
        return -((-n * num) // den)
    return (n * num) // den


# --------------------------------------------------------------------------------------------
# Random draws that honour an optional generator on any device
# --------------------------------------------------------------------------------------------


def _draw(
    fn, shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str, dtype: torch.dtype
) -> Tensor:
    if generator is None:
        # No generator keyword at all: under torch.compile with dynamic shapes, generator=None makes
        # the factory refuse symbolic sizes (a batch size that changed between calls).
        return fn(tuple(shape), device=torch.device(device), dtype=dtype)
    # A generator can only fill tensors on its own device: draw there, then move to the data's.
    return fn(tuple(shape), generator=generator, device=generator.device, dtype=dtype).to(device)


def rand(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Uniform [0, 1) draws of ``shape`` on ``device``, from ``generator`` (or the global RNG)."""
    return _draw(torch.rand, shape, generator, device, dtype)


def randn(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal draws of ``shape`` on ``device``, from ``generator`` (or the global RNG)."""
    return _draw(torch.randn, shape, generator, device, dtype)


def randint(
    high: int,
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
) -> Tensor:
    """Integers uniform in [0, high) of ``shape`` on ``device``."""
    return _draw(functools.partial(torch.randint, high), shape, generator, device, torch.int64)


def draw_seed(generator: torch.Generator | None) -> int:
    """A 63-bit seed drawn from ``generator`` (or the global CPU RNG)."""
    dev = "cpu" if generator is None else generator.device
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=dev).item())


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available() and hasattr(torch, "mps")


@contextlib.contextmanager
def _forked_mps_rng(seed: int) -> Iterator[None]:
    """Seed the MPS global generator for the block and restore its state afterwards."""
    state = torch.mps.get_rng_state()
    torch.mps.manual_seed(seed)
    try:
        yield
    finally:
        torch.mps.set_rng_state(state)


@contextlib.contextmanager
def seeded_global_rng(generator: torch.Generator | None, device: torch.device | str) -> Iterator[None]:
    """Run a block that uses the global torch RNG reproducibly from ``generator``.

    With ``generator=None`` this does nothing (the block uses and advances the global RNG as usual).
    Otherwise a seed is drawn from ``generator``, the global RNG state of the CPU and of ``device``
    (a CUDA device, or MPS, whose own generator kornia uses for MPS tensors) is saved, seeded, and
    restored on exit: the block becomes a deterministic function of the generator and the caller's
    global RNG stream is not disturbed.
    """
    if generator is None:
        yield
        return
    seed = draw_seed(generator)
    device = torch.device(device)
    cuda_devices: list[int] = []
    if device.type == "cuda":
        cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    # Only when MPS is usable: the guard keeps this a no-op on machines without it.
    mps = _forked_mps_rng(seed) if device.type == "mps" and _mps_available() else contextlib.nullcontext()
    with torch.random.fork_rng(devices=cuda_devices), mps:
        # Seed only the generators that fork_rng restores (torch.manual_seed would reseed every
        # CUDA device and leak state into devices fork_rng does not restore).
        torch.default_generator.manual_seed(seed)
        for idx in cuda_devices:
            torch.cuda.default_generators[idx].manual_seed(seed)
        yield


# --------------------------------------------------------------------------------------------
# Keyword routing
# --------------------------------------------------------------------------------------------

_NOT_KEYWORDS = frozenset({"self", "x", "cond"})  # the input and cond (cond: see Augmentation.uses_cond)


def _keywords_of(fn: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    """(parameter names that can be passed by keyword, whether ``**kwargs`` is taken) of ``fn``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): assume it takes only x
        return frozenset(), False
    named = frozenset(
        p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )
    return named, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


@functools.cache
def _forward_keywords(cls: type) -> frozenset[str]:
    """The keywords an Augmentation class's ``forward`` names explicitly (its ``**kwargs`` is not a use)."""
    return _keywords_of(cls.forward)[0] - _NOT_KEYWORDS


_cached_keywords_of = functools.lru_cache(maxsize=1024)(_keywords_of)


def _callable_keywords(fn: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    # Functions, methods and partials carry their own signature; other callables that of their
    # class's __call__ (cached per class, so a per-call lookup costs a dict hit).
    target = fn if isinstance(fn, (types.FunctionType, types.MethodType, functools.partial)) else type(fn).__call__
    try:
        return _cached_keywords_of(target)
    except TypeError:  # unhashable: inspect every time
        return _keywords_of(target)


def accepts_keyword(aug: Callable[..., Any], name: str) -> bool:
    """Whether ``aug`` uses the call-time keyword ``name`` (``mask``, ``lengths``, ``cond``, ...).

    For an :class:`Augmentation` this is :meth:`Augmentation.uses_keyword`: a leaf uses the
    keywords its ``forward`` names (``cond`` only when it looks at the other modality), a container
    those that any child uses. For any other callable it is read from its signature (a named
    parameter, or ``**kwargs``). Callers decide with it whether to pass e.g. ``mask=`` or ``cond=``.
    """
    if isinstance(aug, Augmentation):
        return aug.uses_keyword(name)
    named, var_keyword = _callable_keywords(aug)
    return var_keyword or name in named


def used_keywords(fn: Callable[..., Any], keywords: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``keywords`` that ``fn`` uses (see :func:`accepts_keyword`): what a container passes it."""
    return {k: v for k, v in keywords.items() if accepts_keyword(fn, k)}


# --------------------------------------------------------------------------------------------
# Base class and composition
# --------------------------------------------------------------------------------------------


class Augmentation:
    """Base class of all augmentations: ``aug(x, cond=None, generator=None, **kwargs) -> x_aug``.

    Subclasses implement :meth:`forward`; :meth:`__call__` validates the shared arguments first
    (and turns an ``int`` generator into a seeded ``torch.Generator``). ``input_name`` names the
    input in error messages. Containers list their children in :meth:`children`.
    """

    input_name: str = "x"
    # Containers (Compose, RandomChoice, ...) also accept list (or tuple) batches, e.g. of strings.
    accepts_lists: bool = False
    # Whether forward looks at cond (the other modality). Every forward accepts cond; True is the
    # safe default for subclasses (containers then hand it on), unimodal leaves say False.
    uses_cond: bool = True
    # Whether a sample's output depends on other samples of the batch (Mixup).
    mixes_batch: bool = False

    def __call__(
        self,
        x: Any,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | int | None = None,
        **kwargs: Any,
    ) -> Any:
        generator = check_generator(generator)  # once here, so int seeds work through containers
        if self.accepts_lists and isinstance(x, tuple):
            x = list(x)
        self._check_input(x)
        if cond is not None:
            check_cond(cond, batch_size(x), self.input_name)
        return self.forward(x, cond=cond, generator=generator, **kwargs)

    def _check_input(self, x: Any) -> None:
        if self.accepts_lists and isinstance(x, list):
            check_nonempty_batch(x, self.input_name)
            return
        if self.accepts_lists and not isinstance(x, Tensor):
            raise ValueError(
                f"{self.input_name} must be a torch.Tensor or a list (e.g. of strings), got {type(x).__name__}"
            )
        check_tensor(x, self.input_name)
        if x.dim() == 0:
            raise ValueError(f"{self.input_name} must have a batch dimension, got shape ()")
        check_nonempty_batch(x, self.input_name)

    def forward(self, x: Any, *, cond: Tensor | None, generator: torch.Generator | None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def children(self) -> tuple[Callable[..., Any], ...]:
        """The augmentations this one applies (containers); empty for a leaf."""
        return ()

    def uses_keyword(self, name: str) -> bool:
        """Whether a call-time keyword ``name`` reaches code that reads it.

        A leaf uses the keywords its ``forward`` names (a ``**kwargs`` there is not a use), and
        ``cond`` when :attr:`uses_cond` (True unless a class says it ignores cond); a container uses
        what any child uses. A subclass whose ``forward`` passes ``**kwargs`` on somewhere else
        should override this.
        """
        own = self.uses_cond if name == "cond" else name in _forward_keywords(type(self))
        return own or any(accepts_keyword(child, name) for child in self.children())

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._repr_params().items())
        return f"{type(self).__name__}({params})"

    def _repr_params(self) -> dict[str, Any]:
        return {}


def mixes_batch(aug: Callable[..., Any]) -> bool:
    """Whether ``aug`` (or any augmentation inside it) mixes samples of the batch.

    E.g. :class:`~augment.features.Mixup`.
    """
    if not isinstance(aug, Augmentation):
        return False
    return aug.mixes_batch or any(mixes_batch(child) for child in aug.children())


class Identity(Augmentation):
    """Returns a copy of the input (a copy, so the result never aliases the caller's tensor)."""

    accepts_lists = True
    uses_cond = False

    def forward(
        self, x: Any, *, cond: Tensor | None = None, generator: torch.Generator | None = None, **kwargs: Any
    ) -> Any:
        return x.clone() if isinstance(x, Tensor) else list(x)


def _check_augmentations(augs: object, name: str) -> list[Callable[..., Any]]:
    if isinstance(augs, Augmentation) or callable(augs) and not isinstance(augs, (list, tuple)):
        raise ValueError(f"{name} must be a sequence of augmentations, got a single {type(augs).__name__}")
    try:
        augs = list(augs)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of augmentations, got {type(augs).__name__}") from None
    if not augs:
        raise ValueError(f"{name} must contain at least one augmentation")
    for i, a in enumerate(augs):
        if not callable(a):
            raise ValueError(f"{name}[{i}] must be callable, got {type(a).__name__}")
    return augs


class Compose(Augmentation):
    """Applies ``augmentations`` one after the other.

    Each gets the keywords it uses (``cond``, ``generator``, ``mask``, ...).
    """

    accepts_lists = True
    uses_cond = False  # its children decide

    def __init__(self, augmentations: Sequence[Callable[..., Any]]) -> None:
        self.augmentations = _check_augmentations(augmentations, "augmentations")

    def children(self) -> tuple[Callable[..., Any], ...]:
        return tuple(self.augmentations)

    def forward(
        self, x: Any, *, cond: Tensor | None = None, generator: torch.Generator | None = None, **kwargs: Any
    ) -> Any:
        keywords = {"cond": cond, "generator": generator, **kwargs}
        for aug in self.augmentations:
            x = aug(x, **used_keywords(aug, keywords))
        return x

    def _repr_params(self) -> dict[str, Any]:
        return {"augmentations": self.augmentations}


def _take(value: Any, idx: Tensor, batch: int) -> Any:
    """Rows ``idx`` of a per-sample value (see :func:`is_per_sample`); anything else unchanged."""
    if not is_per_sample(value, batch):
        return value
    if isinstance(value, Tensor):
        return value.index_select(0, idx.to(value.device))
    return [value[i] for i in idx.tolist()]


def apply_per_sample(
    branches: Sequence[Callable[..., Any]],
    choice: Tensor,
    x: Any,
    *,
    cond: Tensor | None,
    generator: torch.Generator | None,
    kwargs: dict[str, Any],
) -> Any:
    """Apply ``branches[choice[i]]`` to sample ``i``: each branch runs once on its samples (vectorised).

    Per-sample arguments are the tensor (or list) keyword arguments whose first dimension is the
    batch (``cond``, ``lengths``, ``mask``, ...): they are sliced along with ``x``. Each branch gets
    only the keywords it uses (:func:`used_keywords`). An
    :class:`Identity` branch is not called (its samples are copied). Running each branch only on the
    samples that chose it keeps the cost at one pass over the batch whatever the number of branches;
    batch-level operations inside a branch (e.g. :class:`~augment.features.Mixup`) then see only
    that branch's samples.
    """
    b = batch_size(x)
    choice_cpu = choice.to("cpu")
    is_tensor = isinstance(x, Tensor)
    pieces: list[tuple[Tensor, Any]] = []  # (sample indices, branch output) of non-identity branches
    any_identity = False
    for i, branch in enumerate(branches):
        idx = (choice_cpu == i).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        if isinstance(branch, Identity):
            any_identity = True
            continue
        used = used_keywords(branch, {"cond": cond, "generator": generator, **kwargs})
        if idx.numel() == b:
            return branch(x, **used)
        sub = {k: _take(v, idx, b) for k, v in used.items()}  # the generator is not per sample: kept
        pieces.append((idx, branch(_take(x, idx, b), **sub)))
    if not is_tensor:
        out = list(x)
        for idx, res in pieces:
            for j, r in zip(idx.tolist(), res):
                out[j] = r
        return out
    if not pieces:
        return x.clone()
    ref = x if any_identity else pieces[0][1]
    for _, res in pieces:
        if not isinstance(res, Tensor) or res.shape[1:] != ref.shape[1:]:
            got = shape_str(res.shape[1:]) if isinstance(res, Tensor) else type(res).__name__
            raise ValueError(
                f"every branch must return the same per-sample shape, got {shape_str(ref.shape[1:])} and {got}"
            )
    # One output allocation: start from a copy of x when identity samples need their rows (so
    # they cost nothing more), write each branch's rows in. Fresh large allocations (page faults)
    # dominate on CPU, so avoiding a concatenate-then-reorder pass matters.
    first = pieces[0][1]
    if any_identity:
        out = x.clone(memory_format=torch.contiguous_format).to(first.dtype)
    else:
        out = first.new_empty((b, *first.shape[1:]))
    for idx, res in pieces:
        out.index_copy_(0, idx.to(out.device), res.to(out.dtype))
    return out


class RandomChoice(Augmentation):
    """Applies one of ``augmentations`` to each sample, chosen independently per sample.

    ``weights`` (optional, non-negative, normalised internally) set the choice probabilities.
    """

    accepts_lists = True
    uses_cond = False  # its children decide

    def __init__(self, augmentations: Sequence[Callable[..., Any]], weights: Sequence[float] | None = None) -> None:
        self.augmentations = _check_augmentations(augmentations, "augmentations")
        if weights is None:
            w = [1.0] * len(self.augmentations)
        else:
            w = [check_number(v, f"weights[{i}]", low=0.0) for i, v in enumerate(weights)]
            if len(w) != len(self.augmentations):
                raise ValueError(f"weights has {len(w)} entries but there are {len(self.augmentations)} augmentations")
            if sum(w) <= 0:
                raise ValueError("weights must not all be zero")
        total = sum(w)
        self.weights = [v / total for v in w]
        self._cum = torch.tensor(self.weights, dtype=torch.float64).cumsum(0)

    def children(self) -> tuple[Callable[..., Any], ...]:
        return tuple(self.augmentations)

    def forward(
        self, x: Any, *, cond: Tensor | None = None, generator: torch.Generator | None = None, **kwargs: Any
    ) -> Any:
        b = batch_size(x)
        # Inverse-CDF sampling of the branch index: one uniform per sample.
        u = rand((b,), generator, "cpu", dtype=torch.float64)
        choice = torch.searchsorted(self._cum, u, right=True).clamp_(max=len(self.augmentations) - 1)
        return apply_per_sample(self.augmentations, choice, x, cond=cond, generator=generator, kwargs=kwargs)

    def _repr_params(self) -> dict[str, Any]:
        return {"augmentations": self.augmentations, "weights": self.weights}


class RandomApply(Augmentation):
    """Applies ``augmentation`` to each sample independently with probability ``p``; other samples are copied."""

    accepts_lists = True
    uses_cond = False  # its children decide

    def __init__(self, augmentation: Callable[..., Any], p: float = 0.5) -> None:
        if not callable(augmentation):
            raise ValueError(f"augmentation must be callable, got {type(augmentation).__name__}")
        self.augmentation = augmentation
        self.p = check_probability(p, "p")
        self._branches = [augmentation, Identity()]

    def children(self) -> tuple[Callable[..., Any], ...]:
        return (self.augmentation,)

    def forward(
        self, x: Any, *, cond: Tensor | None = None, generator: torch.Generator | None = None, **kwargs: Any
    ) -> Any:
        b = batch_size(x)
        choice = (rand((b,), generator, "cpu") >= self.p).long()  # 0 = apply, 1 = identity
        return apply_per_sample(self._branches, choice, x, cond=cond, generator=generator, kwargs=kwargs)

    def _repr_params(self) -> dict[str, Any]:
        return {"augmentation": self.augmentation, "p": self.p}
