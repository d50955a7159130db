"""FactorCL on any two encoders: factorised (or single) heads and the MI-bound terms of one method."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import augment
import bounds
from bounds.critics import mlp

from .distributed import (
    check_same_size,
    gather_no_grad,
    gather_with_grad,
    get_rank,
    global_mean_normalizer,
    is_distributed,
)
from .objectives import SIGNS, UPPER_BOUND_TERMS, Objective, get_objective

Batch = Mapping[str, Any] | tuple | list

#: Critic kinds: ``separable`` (the fast default) and ``concat`` (the paper's).
CRITICS: tuple[str, ...] = ("separable", "concat")
#: Conditionings of the SSL methods (on the augmented views); the first is the default.
SSL_CONDITIONINGS: tuple[str, ...] = ("sampled", "chain", "concat")
#: Conditionings of the SUP methods (on labels); the first is the default.
SUP_CONDITIONINGS: tuple[str, ...] = ("grouped", "concat", "chain")


class FactorCL(nn.Module):
    """Contrastive learning of shared (Z_S1, Z_S2) and unique (Z_U1, Z_U2) representations.

    ``encoder1`` and ``encoder2`` map a batch of their modality to ``[B, dim1]`` and ``[B, dim2]``.
    ``method`` picks a row of :data:`factorcl.objectives.METHODS`; ``critic`` ("separable", the
    fast default, or "concat", the paper's) builds every term's critic. ``conditioning`` says how
    the conditional terms condition on C. On the augmented views (SSL): "sampled" (default),
    I(Z1; Z2 | C) with each row's negatives drawn from a learned Gaussian q(Z2 | C) (see
    :mod:`bounds.sampled`), valid when the views fix most of each input (I(Z; C) >> log B, where
    the in-batch forms break); "chain", I(Z1; Z2, C) - I(Z1; C), a difference of two bounds
    capped at log B, valid only while I(Z1; C) << log B; or "concat", the paper's critic on
    [Z1, Z1'] and [Z2, Z2'], which with in-batch negatives estimates I(Z1, Z1'; Z2, Z2') instead
    (it rewards shared information in the unique heads). On labels (SUP): "grouped" (default,
    exact for discrete labels), "concat" or "chain". ``num_negatives`` is the number of sampled
    negatives per row of "sampled". ``augment1`` / ``augment2`` make the views X1', X2' of SSL methods on the
    batch's device; ``augment2`` may be a unique augmentation taking ``cond=x1``. Batches that
    already carry ``x1_aug`` / ``x2_aug`` (augmented in data-loader workers) use those instead.
    ``critics`` replaces the critic of a term by name (e.g. CLIP's own logit for
    ``shared_keep``); ``symmetric_shared_keep`` averages both directions of I_NCE(Z_S1; Z_S2), so
    that with CLIP's logit as critic the term is exactly log B minus the CLIP loss.
    """

    def __init__(
        self,
        encoder1: nn.Module,
        encoder2: nn.Module,
        dim1: int,
        dim2: int,
        method: str = "factorcl-ssl",
        critic: str = "separable",
        conditioning: str | None = None,
        augment1: Callable | None = None,
        augment2: Callable | None = None,
        num_classes: int | None = None,
        embed_dim: int = 128,
        head_layers: int = 0,
        critic_hidden: int = 512,
        critic_layers: int = 1,
        critic_embed: int = 128,
        critic_normalize: bool = True,
        temperature: float = 0.1,
        supcon_temperature: float = 0.07,
        include_diagonal: bool = False,
        critics: Mapping[str, nn.Module] | None = None,
        concat_views: bool = True,
        symmetric_shared_keep: bool = False,
        num_negatives: int = bounds.conditional.DEFAULT_NUM_NEGATIVES,
    ) -> None:
        super().__init__()
        self.objective: Objective = get_objective(method)
        obj = self.objective
        if critic not in CRITICS:
            raise ValueError(f"critic must be one of {list(CRITICS)}, got {critic!r}")
        for name, value in (("temperature", temperature), ("supcon_temperature", supcon_temperature)):
            if not float(value) > 0:  # also refuses NaN
                raise ValueError(f"{name} must be > 0, got {value}")
        if obj.supervised and (num_classes is None or int(num_classes) < 2):
            raise ValueError(f"method {obj.name!r} uses labels: num_classes must be an integer >= 2, got {num_classes!r}")
        if obj.needs_views and augment1 is None:
            raise ValueError(f"method {obj.name!r} needs augmented views: pass augment1 (and augment2), "
                             "or supply x1_aug / x2_aug in every batch and pass augment1='batch'")
        allowed = SUP_CONDITIONINGS if obj.supervised else SSL_CONDITIONINGS
        conditioning = conditioning or allowed[0]
        if conditioning not in allowed:
            kind = "labels" if obj.supervised else "augmented views"
            raise ValueError(f"conditioning for {obj.name!r} (conditions on {kind}) must be one of {list(allowed)}, got {conditioning!r}")
        self.encoder1, self.encoder2 = encoder1, encoder2
        self.dims = (int(dim1), int(dim2))
        self.critic_kind = critic
        self.conditioning = conditioning
        self.num_classes = None if num_classes is None else int(num_classes)
        self.embed_dim = int(embed_dim)
        self.temperature = float(temperature)
        self.supcon_temperature = float(supcon_temperature)
        self.concat_views = bool(concat_views)
        self.symmetric_shared_keep = bool(symmetric_shared_keep)
        self.num_negatives = int(num_negatives)
        self.augment1 = None if augment1 == "batch" else augment1
        self.augment2 = None if augment2 == "batch" else augment2
        self._critic_args = dict(hidden_dim=critic_hidden, layers=critic_layers)
        if critic == "separable":
            # Cosine scores with a temperature learn far faster than raw dot products (scores must
            # reach a scale of log B); bounds.SeparableCritic's own defaults stay the plain form.
            self._critic_args.update(embed_dim=critic_embed, normalize=critic_normalize, temperature=temperature)

        self.heads = nn.ModuleDict(
            {key: mlp(self.dims[int(key[1]) - 1], self.dims[int(key[1]) - 1], self.embed_dim, head_layers)
             for key in obj.representation_keys}
        )
        self.estimators = nn.ModuleDict(self._build_estimators(dict(critics or {}), include_diagonal))
        self._critic_cache: list[tuple[nn.Module, tuple, int]] = []
        self._diagnostics: dict[str, Tensor] = {}

    # ----------------------------------------------------------------------------------- building
    def _critic(self, x_dim: int, y_dim: int) -> nn.Module:
        return bounds.critic_from_name(self.critic_kind, x_dim, y_dim, **self._critic_args)

    def _build_estimators(self, custom: dict[str, nn.Module], include_diagonal: bool) -> dict[str, nn.Module]:
        obj, e, k = self.objective, self.embed_dim, self.num_classes or 0
        pick = lambda name, x_dim, y_dim: custom.pop(name, None) or self._critic(x_dim, y_dim)  # noqa: E731
        out: dict[str, nn.Module] = {}
        if "shared_keep" in obj.terms:
            out["shared_keep"] = bounds.InfoNCE(pick("shared_keep", e, e), symmetric=self.symmetric_shared_keep)
        if "unique_keep" in obj.terms:
            y_dim = k if obj.supervised else e
            out["unique_keep1"] = bounds.InfoNCE(pick("unique_keep1", e, y_dim))
            out["unique_keep2"] = bounds.InfoNCE(pick("unique_keep2", e, y_dim))
        if "unique_remove" in obj.terms:
            out["unique_remove"] = bounds.NCECLUB(pick("unique_remove", e, e), include_diagonal=include_diagonal)
        for term, cls in (("shared_remove", bounds.ConditionalNCECLUB), ("unique_cond_keep", bounds.ConditionalInfoNCE)):
            if term not in obj.terms:
                continue
            c = k if obj.supervised else 2 * e  # width of the condition: one-hot Y, or [Z1', Z2']
            kwargs: dict[str, Any] = {"conditioning": self.conditioning, "num_classes": self.num_classes}
            if self.conditioning == "chain":
                main = pick(term, e, e + c)
                kwargs["marginal_critic"] = pick(term + "_marginal", e, c)
            elif self.conditioning == "sampled":
                # f(z1 | c, z2 | c) on z standardised by q(z | c); K negatives from q(z2 | c), shared by the rows.
                main = pick(term, e, e)
                kwargs.update(proposal=bounds.GaussianProposal(c, e, self._critic_args["hidden_dim"]),
                              x_proposal=bounds.GaussianProposal(c, e, self._critic_args["hidden_dim"]),
                              correction_critic=pick(term + "_correction", c, e), num_negatives=self.num_negatives)
            elif self.conditioning == "grouped":
                main = pick(term, e + k, e + k)
            else:  # concat: [z1, c1] against [z2, c2]
                side = e + (k if obj.supervised else e)
                main = pick(term, side, side)
            if cls is bounds.ConditionalNCECLUB:
                kwargs["include_diagonal"] = include_diagonal
            out[term] = cls(main, **kwargs)
        if custom:
            raise ValueError(f"critics has names that {obj.name!r} does not use: {sorted(custom)}; it uses {sorted(out)}")
        return out

    # ------------------------------------------------------------------------------- parameters
    def critic_parameters(self) -> list[nn.Parameter]:
        """Parameters trained only by :meth:`critic_loss` (NCE-CLUB critics, chain-rule marginals)."""
        params: list[nn.Parameter] = []
        for name, est in self.estimators.items():
            if name in UPPER_BOUND_TERMS:
                params += list(est.parameters())
            elif getattr(est, "has_critic_loss", False):
                params += est.critic_loss_parameters()
        return params

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The two encoders' parameters (trained by the main loss; ``TrainConfig.encoder_lr`` sets their lr)."""
        return list(self.encoder1.parameters()) + list(self.encoder2.parameters())

    def main_parameters(self) -> list[nn.Parameter]:
        """Everything the main loss trains: encoders, heads and the lower-bound critics."""
        skip = {id(p) for p in self.critic_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.parameters()).device

    # --------------------------------------------------------------------------------- encoding
    def _encode(self, i: int, x: Tensor, mask: Tensor | None) -> Tensor:
        encoder = self.encoder1 if i == 1 else self.encoder2
        out = encoder(x, mask=mask) if mask is not None else encoder(x)
        if out.dim() != 2 or out.shape[0] != x.shape[0] or out.shape[1] != self.dims[i - 1]:
            raise ValueError(
                f"encoder{i} must return [B, dim{i}] = [{x.shape[0]}, {self.dims[i - 1]}], got shape {tuple(out.shape)}"
            )
        return out

    def _encode_with_view(self, i: int, x: Tensor, view: Tensor | None, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if view is None:
            return self._encode(i, x, mask), None
        if self.concat_views and view.shape == x.shape:
            both = self._encode(i, torch.cat([x, view]), None if mask is None else torch.cat([mask, mask]))
            return both[: x.shape[0]], both[x.shape[0] :]
        return self._encode(i, x, mask), self._encode(i, view, mask)

    def represent(self, f1: Tensor, f2: Tensor) -> dict[str, Tensor]:
        """The representations (as :meth:`embed` returns them) from encoder features [B, dim1], [B, dim2]."""
        reps = {key: self.heads[key](f1 if key.endswith("1") else f2) for key in self.heads}
        if self.objective.supcon:
            reps = {key: F.normalize(v, dim=-1) for key, v in reps.items()}
        return reps

    def embed(self, x1: Tensor, x2: Tensor, mask1: Tensor | None = None, mask2: Tensor | None = None) -> dict[str, Tensor]:
        """The learned representations: ``{"s1", "s2", "u1", "u2"}`` (Z_S1, Z_S2, Z_U1, Z_U2) when
        factorised, else ``{"z1", "z2"}`` (one Z per modality; L2-normalised for SupCon)."""
        x1, x2 = self._check_pair(x1, x2)
        return self.represent(self._encode(1, x1, mask1), self._encode(2, x2, mask2))

    # ------------------------------------------------------------------------------------ batch
    @staticmethod
    def _check_pair(x1: Any, x2: Any) -> tuple[Tensor, Tensor]:
        for name, x in (("x1", x1), ("x2", x2)):
            if not isinstance(x, Tensor):
                raise ValueError(f"{name} must be a tensor batch, got {type(x).__name__}")
            if x.dim() == 0 or x.shape[0] == 0:
                raise ValueError(f"{name} must be a non-empty batch [B, ...], got shape {tuple(x.shape)}")
        if x1.shape[0] != x2.shape[0]:
            raise ValueError(f"x1 and x2 must have the same batch size, got {x1.shape[0]} and {x2.shape[0]}")
        return x1, x2

    def _unpack(self, batch: Batch) -> dict[str, Any]:
        if isinstance(batch, Mapping):
            if "x1" not in batch or "x2" not in batch:
                raise ValueError(f"batch must hold 'x1' and 'x2', got keys {sorted(batch)}")
            b = dict(batch)
        elif isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
            b = {"x1": batch[0], "x2": batch[1], "y": batch[2] if len(batch) == 3 else None}
        else:
            raise ValueError("batch must be a dict with 'x1', 'x2' (optional 'y', 'x1_aug', 'x2_aug', 'mask1', 'mask2') "
                             "or a tuple (x1, x2) / (x1, x2, y)")
        self._check_pair(b["x1"], b["x2"])
        y = b.get("y")
        if self.objective.needs_labels:
            if y is None:
                raise ValueError(f"method {self.objective.name!r} is supervised: the batch must carry labels 'y'")
            y = torch.as_tensor(y, device=b["x1"].device).reshape(-1)
            if y.is_floating_point():
                if not bool((y == y.round()).all()):
                    raise ValueError("y must hold integer class labels, got non-integer values")
                y = y.long()
            if y.shape[0] != b["x1"].shape[0]:
                raise ValueError(f"y must have one label per sample: got {y.shape[0]} labels for a batch of {b['x1'].shape[0]}")
            if bool((y < 0).any()) or bool((y >= self.num_classes).any()):
                raise ValueError(f"y must hold labels in [0, {self.num_classes}), got values in "
                                 f"[{int(y.min())}, {int(y.max())}]")
            b["y"] = y
        return b

    def _views(self, b: dict[str, Any]) -> tuple[Tensor | None, Tensor | None]:
        if not self.objective.needs_views:
            return None, None
        x1, x2 = b["x1"], b["x2"]
        v1 = b.get("x1_aug")
        if v1 is None:
            if self.augment1 is None:
                raise ValueError("the batch has no 'x1_aug' and the model has no augment1")
            v1 = self._augment(self.augment1, x1, b.get("mask1"), None)
        v2 = b.get("x2_aug")
        if v2 is None:
            aug2 = self.augment2 or self.augment1
            v2 = self._augment(aug2, x2, b.get("mask2"), x1)
        return v1, v2

    @staticmethod
    def _augment(aug: Callable, x: Tensor, mask: Tensor | None, cond: Tensor | None) -> Tensor:
        kwargs: dict[str, Any] = {}
        if mask is not None and augment.accepts_keyword(aug, "mask"):
            kwargs["mask"] = mask
        if cond is not None and augment.accepts_keyword(aug, "cond"):
            kwargs["cond"] = cond  # a unique augmentation: X2' made from X2 given X1
        return aug(x, **kwargs)

    # ------------------------------------------------------------------------------------- loss
    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """The same as :meth:`loss`, so that DistributedDataParallel(model)(batch) computes the loss."""
        return self.loss(batch)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, metrics): the method's loss and every term's estimate in nats (detached 0-dim tensors).

        Metrics named ``bracket/<term>`` are the bound diagnostics of each NCE-CLUB term: its value
        minus the InfoNCE of its own critic's scores. Below 0 the critic is far from optimal and the
        "upper bound" is not one (the trainer warns once).

        Also caches the detached inputs of the NCE-CLUB critics for :meth:`critic_loss`, so the
        critic steps never re-run the encoders.

        With an initialised process group, this rank's rows are scored against candidates
        gathered from every rank (with gradient) and the loss is the mean over this rank's rows:
        the mean over ranks of the losses (and of the metrics) equals the loss of one process on
        the concatenated batch, and averaging the parameter gradients over ranks (DDP) gives its
        gradient. Every rank must hold the same batch size.
        """
        b = self._unpack(batch)
        if is_distributed():
            check_same_size(b["x1"].shape[0], "batch size", b["x1"].device)
        v1, v2 = self._views(b)
        f1, f1v = self._encode_with_view(1, b["x1"], v1, b.get("mask1"))
        f2, f2v = self._encode_with_view(2, b["x2"], v2, b.get("mask2"))
        reps = self.represent(f1, f2)
        views = self.represent(f1v, f2v) if f1v is not None else {}
        self._critic_cache = []
        if self.objective.supcon:
            value = self._supcon(reps["z1"], reps["z2"], b["y"])
            return value, {"supcon": value.detach(), "loss": value.detach()}
        self._diagnostics = {}
        values = self._terms(reps, views, b.get("y"))
        total = sum(SIGNS[name.rstrip("12")] * v for name, v in values.items())
        metrics = {name: v.detach() for name, v in values.items()}
        metrics["loss"] = total.detach()
        metrics.update(self._diagnostics)
        return total, metrics

    def _terms(self, reps: dict[str, Tensor], views: dict[str, Tensor], y: Tensor | None) -> dict[str, Tensor]:
        fact = self.objective.factorized
        s1, s2 = (reps["s1"], reps["s2"]) if fact else (reps["z1"], reps["z2"])
        u1, u2 = (reps["u1"], reps["u2"]) if fact else (reps["z1"], reps["z2"])
        gather = _Gatherer()
        est = self.estimators
        out: dict[str, Tensor] = {}
        if "shared_keep" in est:
            s2g, off = gather(s2)
            s1g = gather(s1)[0] if self.symmetric_shared_keep else None
            out["shared_keep"] = est["shared_keep"](s1, s2g, offset=off, x_candidates=s1g)
        if "unique_keep1" in est:
            onehot = F.one_hot(y, self.num_classes).to(u1.dtype) if self.objective.supervised else None
            for i, u in ((1, u1), (2, u2)):
                if onehot is not None:
                    target, off = gather(onehot)
                else:
                    target, off = gather(views["u" + str(i)] if fact else views["z" + str(i)])
                out[f"unique_keep{i}"] = est[f"unique_keep{i}"](u, target, offset=off)
        if "unique_remove" in est:
            u2g, off = gather(u2)
            out["unique_remove"] = est["unique_remove"](u1, u2g, offset=off)
            self._cache(est["unique_remove"], (u1, u2g), off)
        for term, (a, b_) in (("shared_remove", (s1, s2)), ("unique_cond_keep", (u1, u2))):
            if term not in est:
                continue
            part = "s" if term == "shared_remove" else "u"
            bg, off = gather(b_)
            if self.objective.supervised:
                yg = gather(y)[0]
                cx, cy = (yg, None) if self.conditioning == "chain" else (y, yg)
            else:
                key1, key2 = (part + "1", part + "2") if fact else ("z1", "z2")
                c1, c2 = views[key1], views[key2]
                if self.conditioning == "chain":  # the chain rule's condition belongs to the candidates
                    cx, cy = gather(c1)[0], gather(c2)[0]
                elif self.conditioning == "sampled":  # one condition per local row; negatives from q
                    cx, cy, bg, off = c1, c2, b_, 0
                else:
                    cx, cy = c1, gather(c2)[0]
            if term == "shared_remove" and self.conditioning == "grouped":
                # Grouped NCE-CLUB averages over the rows with an in-group negative: normalise by their
                # global count so that the ranks' mean is the global batch's mean.
                out[term] = est[term](a, bg, cx, cy, offset=off, normalizer=gather.normalizer)
            else:
                out[term] = est[term](a, bg, cx, cy, offset=off)
            if term in UPPER_BOUND_TERMS or getattr(est[term], "has_critic_loss", False):
                self._cache(est[term], (a, bg, cx, cy), off)
        # Every NCE-CLUB estimator records its bracket (value minus its own scores' InfoNCE) as it runs.
        # Sorted, not set order: the trainer averages metrics over ranks by position, and string
        # hashing (so set order) differs between processes.
        for term in sorted(UPPER_BOUND_TERMS & out.keys()):
            self._diagnostics[f"bracket/{term}"] = est[term].last_bracket
        return out

    def _supcon(self, z1: Tensor, z2: Tensor, y: Tensor) -> Tensor:
        gather = _Gatherer()
        (z1g, off), (z2g, _) = gather(z1), gather(z2)
        yg = gather(y)[0]
        n, b = z1g.shape[0], z1.shape[0]
        anchors = torch.cat([z1, z2])
        candidates = torch.cat([z1g, z2g])
        idx = torch.arange(b, device=z1.device) + off
        scores = anchors @ candidates.T / self.supcon_temperature
        return bounds.supcon_loss(scores, torch.cat([y, y]), torch.cat([yg, yg]), self_index=torch.cat([idx, idx + n]),
                                  normalizer=gather.normalizer)

    def _cache(self, estimator: nn.Module, args: tuple, offset: int) -> None:
        detached = tuple(a.detach() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
        self._critic_cache.append((estimator, detached, offset))

    def critic_loss(self) -> Tensor:
        """The NCE-CLUB critics' InfoNCE learning loss on the features cached by the last :meth:`loss`.

        Trains only :meth:`critic_parameters`; zero (with no graph) when the method has no such critic.
        """
        if not self._critic_cache:
            return torch.zeros((), device=self.device)
        return sum(est.critic_loss(*args, offset=off) for est, args, off in self._critic_cache)

    def shared_scorer(self) -> Callable[[Tensor, Tensor], Tensor]:
        """A cross-modal scorer for :class:`augment.UniqueAugment` (Eq. 4.18) from the model's own
        shared critic: ``scorer(x1 [B, ...], candidates [B, K, ...]) -> [B, K]``, the critic's score
        of (Z_S1(x1_i), Z_S2(candidate_ik)), or of (Z1, Z2) without factorisation. Higher = the
        candidate keeps more of what x1 refers to. Runs without gradients in eval mode.
        """
        if "shared_keep" not in self.estimators:
            raise ValueError(f"method {self.objective.name!r} has no shared critic (shared_keep) to score with")
        k1, k2 = ("s1", "s2") if self.objective.factorized else ("z1", "z2")

        @torch.no_grad()
        def scorer(x1: Tensor, candidates: Tensor) -> Tensor:
            b, k = candidates.shape[:2]
            was_training = self.training
            self.eval()
            try:
                z1 = self.heads[k1](self._encode(1, x1, None))
                z2 = self.heads[k2](self._encode(2, candidates.reshape(b * k, *candidates.shape[2:]), None))
                return bounds.score_candidates(self.estimators["shared_keep"].critic, z1, z2.view(b, k, -1))
            finally:
                self.train(was_training)

        return scorer

    @property
    def has_critic_step(self) -> bool:
        """Whether the method has critics trained by :meth:`critic_loss`."""
        return bool(self.critic_parameters())


class _Gatherer:
    """Gathers candidate tensors across ranks once per tensor per step (identity without a process group)."""

    def __init__(self) -> None:
        # Keyed by id; the tensor itself is kept so that its id cannot be reused within the step.
        self._done: dict[int, tuple[Tensor, tuple[Tensor, int]]] = {}

    @property
    def normalizer(self):
        """For estimators that average over a data-dependent subset of rows: the global count's share
        per rank under a process group (see :func:`factorcl.distributed.global_mean_normalizer`), else None."""
        return global_mean_normalizer if is_distributed() else None

    def __call__(self, t: Tensor) -> tuple[Tensor, int]:
        key = id(t)
        if key not in self._done:
            if t.is_floating_point():
                result = gather_with_grad(t)
            else:
                result = (gather_no_grad(t), get_rank() * t.shape[0])
            self._done[key] = (t, result)
        return self._done[key][1]
