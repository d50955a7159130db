"""Encoders for tabular vectors, padded feature sequences and images, built by name.

Every encoder has ``forward(x, mask=None) -> [B, out_dim]``. ``mask`` (bool ``[B, T]``, True =
valid step) marks the valid steps of a sequence in any layout: front padding (MultiBench), end
padding, or holes. Padded steps never influence the output: they are zeroed on the way in,
excluded from attention, pooling and recurrence. (The published FactorCL/MultiBench Transformer
returned the output at the last time step of an end-padded batch, i.e. a padding step for every
sequence shorter than the longest.)

- :class:`MLPEncoder`: vectors ``[B, d]``; sequences are mean-pooled over valid steps (or
  flattened); images are flattened.
- :class:`GRUEncoder`: the hidden state after the last valid step (packed sequences).
- :class:`TransformerEncoder`: ``nn.TransformerEncoder`` with a key padding mask, positions
  counted over valid steps, masked mean pooling.
- :class:`TimmImageEncoder`: any timm model by name, pooled features (random init unless
  ``pretrained=True``, which downloads weights).
- :func:`build_encoder`: ``(module, out_dim)`` from a spec such as ``"gru"``,
  ``{"type": "transformer", "d_model": 40}`` or ``"timm:resnet18"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from bounds.critics import mlp

from .extras import require

ENCODER_TYPES = ("auto", "mlp", "gru", "transformer", "timm")


# ------------------------------------------------------------------------------------ helpers
def _check_mask(x: Tensor, mask: Tensor | None, who: str) -> Tensor | None:
    if mask is None:
        return None
    if x.dim() != 3:
        raise ValueError(f"{who}: mask is only valid for sequences [B, T, d], got x of shape {tuple(x.shape)}")
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"{who}: mask must be [B, T] = {tuple(x.shape[:2])}, got shape {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{who}: mask must be a bool tensor (True = valid step), got dtype {mask.dtype}")
    return mask.to(x.device)


def _zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x`` with padded steps set to 0, so their values (even NaN) cannot reach the output."""
    if mask is None:
        return x
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over time of ``x [B, T, d]`` using only valid steps (zeros for a sequence with none)."""
    if mask is None:
        return x.mean(dim=1)
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def _init_linear(layer: nn.Linear) -> nn.Linear:
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


# ------------------------------------------------------------------------------------ encoders
class MLPEncoder(nn.Module):
    """An MLP with ``layers`` hidden-to-hidden layers of width ``hidden`` (He init, as ``bounds.critics.mlp``).

    Input ``[B, d]``; sequences ``[B, T, d]`` are pooled first: ``pool="mean"`` (masked mean over
    valid steps, any T) or ``"flatten"`` (``[B, T * d]`` with padded steps zeroed; needs
    ``seq_len``); higher-rank inputs (images) are flattened (``in_dim`` is then their size).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 64,
        hidden: int = 128,
        layers: int = 1,
        pool: str = "mean",
        seq_len: int | None = None,
    ) -> None:
        super().__init__()
        if pool not in ("mean", "flatten"):
            raise ValueError(f"pool must be 'mean' or 'flatten', got {pool!r}")
        if pool == "flatten" and seq_len is None:
            raise ValueError("pool='flatten' needs seq_len (the number of time steps T)")
        self.in_dim, self.out_dim, self.pool, self.seq_len = int(in_dim), int(out_dim), pool, seq_len
        width = self.in_dim * (int(seq_len) if pool == "flatten" else 1)
        self.net = mlp(width, int(hidden), self.out_dim, int(layers))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = _check_mask(x, mask, "MLPEncoder")
        if x.dim() == 3:
            x = _zero_padding(x, mask)
            x = masked_mean(x, mask) if self.pool == "mean" else x.flatten(1)
        elif x.dim() > 3:
            x = x.flatten(1)
        elif x.dim() != 2:
            raise ValueError(f"MLPEncoder needs [B, d], [B, T, d] or higher-rank batches, got shape {tuple(x.shape)}")
        return self.net(x)


class GRUEncoder(nn.Module):
    """A GRU over the valid steps; the output is (a linear map of) the hidden state after the last valid step.

    Valid steps may sit anywhere (front padding included): they are moved to the front in time
    order (one gather) and packed, so the recurrence never runs over padding. ``out_dim=None``
    returns the final hidden state itself (``hidden * (2 if bidirectional else 1)`` features).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None = 64,
        hidden: int = 64,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(
            int(in_dim),
            int(hidden),
            num_layers=int(layers),
            batch_first=True,
            bidirectional=bool(bidirectional),
            dropout=float(dropout) if layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        width = int(hidden) * self.directions
        self.proj = _init_linear(nn.Linear(width, int(out_dim))) if out_dim else nn.Identity()
        self.out_dim = int(out_dim) if out_dim else width

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"GRUEncoder needs sequences [B, T, d], got shape {tuple(x.shape)}")
        mask = _check_mask(x, mask, "GRUEncoder")
        if mask is None:
            _, h = self.gru(x)
        else:
            x = _zero_padding(x, mask)
            # Stable sort of "is padding" puts the valid steps first, in time order.
            order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
            x = x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            lengths = mask.sum(dim=1)
            packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
            _, h = self.gru(packed)
        # h: [layers * directions, B, hidden]; the last layer's states (both directions).
        last = h[-self.directions :].transpose(0, 1).reshape(x.shape[0], -1)
        if mask is not None:
            last = last * (mask.any(dim=1, keepdim=True)).to(last.dtype)  # no valid step: zeros
        return self.proj(last)


class _SinusoidalPositions(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        half = (d_model + 1) // 2
        self.register_buffer(
            "freq", torch.exp(-math.log(10000.0) * torch.arange(half).float() * 2 / d_model), persistent=False
        )
        self.d_model = d_model

    def forward(self, pos: Tensor) -> Tensor:
        angles = pos.unsqueeze(-1).to(self.freq.dtype) * self.freq
        return torch.cat([angles.sin(), angles.cos()], dim=-1)[..., : self.d_model]


class TransformerEncoder(nn.Module):
    """Linear input projection, ``nn.TransformerEncoder`` with a key padding mask, masked mean pooling.

    Positions (sinusoidal, ``positional=True``) count valid steps only, so a sequence encodes the
    same whatever padding surrounds it. ``out_dim=None`` returns the pooled ``d_model`` features.
    MultiBench's Transformer for these datasets is ``d_model=40, heads=5, layers=5, ff_dim=2048``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None = 64,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        positional: bool = True,
    ) -> None:
        super().__init__()
        if int(d_model) % int(heads) != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.inp = nn.Linear(int(in_dim), int(d_model))
        self.positions = _SinusoidalPositions(int(d_model)) if positional else None
        layer = nn.TransformerEncoderLayer(
            int(d_model),
            int(heads),
            dim_feedforward=int(ff_dim or 4 * d_model),
            dropout=float(dropout),
            batch_first=True,
        )
        # No nested-tensor fast path: it would make eval outputs at padded positions differ in
        # form from training; pooling ignores them either way.
        self.encoder = nn.TransformerEncoder(layer, int(layers), enable_nested_tensor=False)
        self.proj = _init_linear(nn.Linear(int(d_model), int(out_dim))) if out_dim else nn.Identity()
        self.out_dim = int(out_dim) if out_dim else int(d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"TransformerEncoder needs sequences [B, T, d], got shape {tuple(x.shape)}")
        mask = _check_mask(x, mask, "TransformerEncoder")
        h = self.inp(_zero_padding(x, mask))
        if self.positions is not None:
            if mask is None:
                pos = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
            else:
                pos = (mask.long().cumsum(dim=1) - 1).clamp_min(0)
            h = h + self.positions(pos).to(h.dtype)
        if mask is None:
            h = self.encoder(h)
        else:
            empty = ~mask.any(dim=1, keepdim=True)
            # A row with no valid step would make every attention row -inf (NaN): let it attend
            # to everything; its pooled output is zero anyway.
            h = self.encoder(h, src_key_padding_mask=~(mask | empty))
        return self.proj(masked_mean(h, mask))


class TimmImageEncoder(nn.Module):
    """Pooled features of a timm image model (``timm.create_model(name, pretrained, num_classes=0)``).

    ``pretrained=False`` (default) is a random init and needs no network; ``True`` downloads the
    weights. ``out_dim`` adds a linear projection; None returns the model's ``num_features``.
    Needs timm (``pip install "factorcl[images]"``).
    """

    def __init__(
        self,
        name: str,
        out_dim: int | None = None,
        pretrained: bool = False,
        in_chans: int = 3,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        timm = require("timm", "images", "a timm encoder")

        try:
            self.model = timm.create_model(
                name, pretrained=bool(pretrained), num_classes=0, in_chans=int(in_chans), **dict(model_kwargs or {})
            )
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                close = get_close_matches(name, timm.list_models(), n=3)
                hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise ValueError(f"unknown timm model {name!r}.{hint}") from None
            raise
        self.name = name
        width = int(self.model.num_features)
        self.proj = _init_linear(nn.Linear(width, int(out_dim))) if out_dim else nn.Identity()
        self.out_dim = int(out_dim) if out_dim else width

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"TimmImageEncoder needs images [B, C, H, W], got shape {tuple(x.shape)}")
        return self.proj(self.model(x))


# ------------------------------------------------------------------------------------ by name
_PARAMS: dict[str, dict[str, Any]] = {
    "mlp": {"out_dim": 64, "hidden": 128, "layers": 1, "pool": "mean"},
    "gru": {"out_dim": 64, "hidden": 64, "layers": 1, "bidirectional": False, "dropout": 0.0},
    "transformer": {
        "out_dim": 64,
        "d_model": 64,
        "heads": 4,
        "layers": 2,
        "ff_dim": None,
        "dropout": 0.1,
        "positional": True,
    },
    "timm": {"name": None, "out_dim": None, "pretrained": False, "in_chans": None, "model_kwargs": None},
}


def normalize_spec(spec: str | Mapping[str, Any] | None, where: str = "encoder") -> dict[str, Any]:
    """A spec as a dict with ``type`` (validated: known type, known keys); ``"timm:NAME"`` becomes
    ``{"type": "timm", "name": NAME}``. ``where`` names the spec in error messages."""
    if spec is None:
        spec = "auto"
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower().startswith("timm:"):
            spec = {"type": "timm", "name": text[5:]}
        else:
            spec = {"type": text}
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"{where} must be a name ({', '.join(ENCODER_TYPES)}, timm:NAME) or a mapping with "
            f"'type', got {type(spec).__name__}"
        )
    out = dict(spec)
    kind = str(out.get("type", "auto")).lower()
    if kind.startswith("timm:"):
        out.setdefault("name", kind[5:])
        kind = "timm"
    if kind not in ENCODER_TYPES:
        close = get_close_matches(kind, ENCODER_TYPES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{where}.type must be one of {list(ENCODER_TYPES)} (or 'timm:NAME'), got {out.get('type')!r}{hint}"
        )
    out["type"] = kind
    allowed = set(_PARAMS.get(kind, {})) | {"type"}
    if kind == "auto":
        allowed |= {"out_dim"}
    unknown = sorted(set(out) - allowed)
    if unknown:
        close = get_close_matches(unknown[0], sorted(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown key {where}.{unknown[0]} for a {kind!r} encoder{hint} "
            f"(allowed: {', '.join(sorted(allowed - {'type'}))})"
        )
    if kind == "timm" and not out.get("name"):
        raise ValueError(f"{where}: a timm encoder needs a model name ('timm:resnet18' or name: resnet18)")
    return out


def _auto_type(input_shape: tuple[int, ...]) -> str:
    if len(input_shape) == 1:
        return "mlp"
    if len(input_shape) == 2:
        return "transformer"
    raise ValueError(
        f"no automatic encoder for inputs of per-sample shape {input_shape}: for images give "
        "'timm:NAME' (e.g. timm:resnet18) or 'mlp' to flatten"
    )


def build_encoder(
    spec: str | Mapping[str, Any] | None, input_shape: Sequence[int], where: str = "encoder"
) -> tuple[nn.Module, int]:
    """``(encoder, out_dim)`` for a spec and the per-sample input shape (``(d,)``, ``(T, d)`` or ``(C, H, W)``).

    Types: ``mlp``, ``gru``, ``transformer``, ``timm`` (``"timm:NAME"``) and ``auto`` (mlp for
    vectors, transformer for sequences). Other keys are the encoder's arguments (see ``_PARAMS``).
    """
    s = normalize_spec(spec, where)
    shape = tuple(int(v) for v in input_shape)
    kind = s.pop("type")
    if kind == "auto":
        kind = _auto_type(shape)
    params = {**_PARAMS[kind], **s}
    if kind in ("gru", "transformer") and len(shape) != 2:
        raise ValueError(f"{where}: a {kind!r} encoder needs sequences (per-sample shape (T, d)), got {shape}")
    if kind == "timm" and len(shape) != 3:
        raise ValueError(f"{where}: a timm encoder needs images (per-sample shape (C, H, W)), got {shape}")
    if kind == "mlp":
        if len(shape) == 2:
            module = MLPEncoder(
                shape[1], params["out_dim"], params["hidden"], params["layers"], params["pool"], seq_len=shape[0]
            )
        else:
            module = MLPEncoder(math.prod(shape), params["out_dim"], params["hidden"], params["layers"])
    elif kind == "gru":
        module = GRUEncoder(
            shape[1], params["out_dim"], params["hidden"], params["layers"], params["bidirectional"], params["dropout"]
        )
    elif kind == "transformer":
        module = TransformerEncoder(
            shape[1],
            params["out_dim"],
            params["d_model"],
            params["heads"],
            params["layers"],
            params["ff_dim"],
            params["dropout"],
            params["positional"],
        )
    else:
        module = TimmImageEncoder(
            str(params["name"]),
            params["out_dim"],
            params["pretrained"],
            params["in_chans"] or shape[0],
            params["model_kwargs"],
        )
    return module, int(module.out_dim)


__all__ = [
    "GRUEncoder",
    "MLPEncoder",
    "TimmImageEncoder",
    "TransformerEncoder",
    "build_encoder",
    "masked_mean",
    "normalize_spec",
]
