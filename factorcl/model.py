"""FactorCL on any two encoders: factorised (or single) heads and the MI-bound terms of one method.

:class:`FactorCL` is a facade: its settings are a :class:`~factorcl.model_config.FactorCLConfig`,
its terms come from the objective table (:mod:`factorcl.objectives`, :mod:`factorcl.terms`), and
the batch contract is :class:`~factorcl.batch.Batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import augment
import bounds
from bounds.critics import mlp

from .batch import Batch
from .distributed import check_same_size, is_distributed
from .model_config import CRITICS, SHARED_HEADS, SSL_CONDITIONINGS, SUP_CONDITIONINGS, FactorCLConfig
from .objectives import UPPER_BOUND_TERMS, Objective, get_objective, term_specs
from .scorer import shared_scorer
from .terms import CriticInput, build_estimators, evaluate_terms, supcon_term

__all__ = ["CRITICS", "SHARED_HEADS", "SSL_CONDITIONINGS", "SUP_CONDITIONINGS", "FactorCL", "FactorCLConfig"]


#: The positional order of the settings in the earlier ``FactorCL(...)`` signature (still accepted).
_LEGACY_ORDER = (
    "method",
    "critic",
    "conditioning",
    "augment1",
    "augment2",
    "num_classes",
    "embed_dim",
    "head_layers",
    "critic_hidden",
    "critic_layers",
    "critic_embed",
    "critic_normalize",
    "temperature",
    "supcon_temperature",
    "include_diagonal",
    "critics",
    "concat_views",
    "symmetric_shared_keep",
    "num_negatives",
)


class FactorCL(nn.Module):
    """Contrastive learning of shared (Z_S1, Z_S2) and unique (Z_U1, Z_U2) representations.

    ``encoder1`` and ``encoder2`` map a batch of their modality to ``[B, dim1]`` and ``[B, dim2]``.
    The settings (method, critic, conditioning, widths, ...) are a :class:`FactorCLConfig`
    (its docstring says what each does): pass ``config=``, or its fields as keywords (keywords
    override the config's). ``augment1`` / ``augment2`` make the views X1', X2' of SSL methods on
    the batch's device; ``augment2`` may be a unique augmentation taking ``cond=x1``. Batches that
    already carry ``x1_aug`` / ``x2_aug`` (augmented in data-loader workers) use those instead
    (pass ``augment1="batch"``). ``critics`` replaces the critic of a term by name (e.g. CLIP's
    own logit for ``shared_keep``).
    """

    def __init__(
        self,
        encoder1: nn.Module,
        encoder2: nn.Module,
        dim1: int,
        dim2: int,
        config: FactorCLConfig | Mapping[str, Any] | str | None = None,
        *legacy: Any,
        augment1: Callable | str | None = None,
        augment2: Callable | str | None = None,
        critics: Mapping[str, nn.Module] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        if isinstance(config, str) or legacy:
            # The earlier signature's positional order: FactorCL(enc1, enc2, d1, d2, "simclr", "concat", ...).
            if not isinstance(config, str):
                raise TypeError(
                    "positional arguments after dim2 are the method and then the earlier signature's "
                    "settings, but the first one is not a method name"
                )
            if len(legacy) >= len(_LEGACY_ORDER):
                raise TypeError(f"FactorCL takes at most {4 + len(_LEGACY_ORDER)} positional arguments")
            given = dict(zip(_LEGACY_ORDER, (config, *legacy)))
            augment1 = given.pop("augment1", augment1)
            augment2 = given.pop("augment2", augment2)
            critics = given.pop("critics", critics)
            settings = {**given, **settings}
            config = None
        if isinstance(config, Mapping):
            config = FactorCLConfig.from_dict(dict(config))
        unknown = sorted(set(settings) - set(FactorCLConfig.field_names()))
        if unknown:
            raise TypeError(
                f"FactorCL got unexpected keyword argument(s) {unknown}; the settings are "
                f"{list(FactorCLConfig.field_names())}"
            )
        cfg = (config or FactorCLConfig()).replace(**settings) if settings else (config or FactorCLConfig())
        self.config = cfg
        self.objective: Objective = get_objective(cfg.method)
        obj = self.objective
        if obj.needs_views and augment1 is None:
            raise ValueError(
                f"method {obj.name!r} needs augmented views: pass augment1 (and augment2), "
                "or supply x1_aug / x2_aug in every batch and pass augment1='batch'"
            )
        self.encoder1, self.encoder2 = encoder1, encoder2
        self.dims = (int(dim1), int(dim2))
        if cfg.embed_dim is None and self.dims[0] != self.dims[1]:
            raise ValueError(
                f"embed_dim=None uses the encoders' width, but they differ ({self.dims[0]} and "
                f"{self.dims[1]}); set embed_dim"
            )
        self.embed_dim = self.dims[0] if cfg.embed_dim is None else int(cfg.embed_dim)
        if cfg.shared_heads == "identity" and any(d != self.embed_dim for d in self.dims):
            raise ValueError(
                f"shared_heads='identity' uses the encoder outputs as Z_S, so embed_dim must be their "
                f"width {self.dims[0]} (or None), got {cfg.embed_dim}"
            )
        self.critic_kind = cfg.critic
        self.conditioning = cfg.effective_conditioning
        self.num_classes = None if cfg.num_classes is None else int(cfg.num_classes)
        self.temperature, self.supcon_temperature = float(cfg.temperature), float(cfg.supcon_temperature)
        self.concat_views, self.symmetric_shared_keep = cfg.concat_views, cfg.symmetric_shared_keep
        self.num_negatives = cfg.num_negatives
        self.augment1 = None if augment1 == "batch" else augment1
        self.augment2 = None if augment2 == "batch" else augment2
        self.heads = nn.ModuleDict({key: self._head(key) for key in obj.representation_keys})
        self.terms = term_specs(obj)
        self.estimators = nn.ModuleDict(
            build_estimators(
                self.terms,
                embed_dim=self.embed_dim,
                num_classes=self.num_classes,
                supervised=obj.supervised,
                conditioning=self.conditioning,
                make_critic=self._critic,
                make_aux_critic=lambda a, b: self._critic(a, b, cfg.effective_aux_critic_hidden),
                proposal_hidden=cfg.effective_aux_critic_hidden,
                num_negatives=cfg.num_negatives,
                include_diagonal=cfg.include_diagonal,
                symmetric_shared_keep=cfg.symmetric_shared_keep,
                critics=critics,
                method=obj.name,
            )
        )
        #: The detached inputs of the separately trained critics at the last :meth:`loss`, which
        #: :meth:`critic_loss` trains on (so the critic steps never re-run the encoders).
        self.critic_inputs: list[CriticInput] = []

    # ----------------------------------------------------------------------------------- building
    def _head(self, key: str) -> nn.Module:
        dim = self.dims[0] if key.endswith("1") else self.dims[1]
        head = mlp(dim, dim, self.embed_dim, self.config.head_layers)
        shared = key in ("s1", "s2") or not self.objective.factorized
        # The MLP is drawn even when replaced, so that every other module's random initialisation
        # does not depend on this switch.
        return nn.Identity() if shared and self.config.shared_heads == "identity" else head

    def _critic(self, x_dim: int, y_dim: int, hidden: int | None = None) -> nn.Module:
        cfg = self.config
        kwargs: dict[str, Any] = dict(hidden_dim=hidden or cfg.critic_hidden, layers=cfg.critic_layers)
        if cfg.critic == "separable":
            # Cosine scores with a temperature learn far faster than raw dot products (scores must
            # reach a scale of log B); bounds.SeparableCritic's own defaults stay the plain form.
            kwargs.update(embed_dim=cfg.critic_embed, normalize=cfg.critic_normalize, temperature=cfg.temperature)
        return bounds.critic_from_name(cfg.critic, x_dim, y_dim, **kwargs)

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
    def encode(self, i: int, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encoder ``i``'s features of a batch, ``[B, dim_i]`` (checked)."""
        encoder = self.encoder1 if i == 1 else self.encoder2
        out = encoder(x, mask=mask) if mask is not None else encoder(x)
        if out.dim() != 2 or out.shape[0] != x.shape[0] or out.shape[1] != self.dims[i - 1]:
            raise ValueError(
                f"encoder{i} must return [B, dim{i}] = [{x.shape[0]}, {self.dims[i - 1]}], got shape {tuple(out.shape)}"
            )
        return out

    def _encode_with_view(
        self, i: int, x: Tensor, view: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        if view is None:
            return self.encode(i, x, mask), None
        if self.concat_views and view.shape == x.shape:
            both = self.encode(i, torch.cat([x, view]), None if mask is None else torch.cat([mask, mask]))
            return both[: x.shape[0]], both[x.shape[0] :]
        return self.encode(i, x, mask), self.encode(i, view, mask)

    def represent(self, f1: Tensor, f2: Tensor) -> dict[str, Tensor]:
        """The representations (as :meth:`embed` returns them) from encoder features [B, dim1], [B, dim2]."""
        reps = {key: self.heads[key](f1 if key.endswith("1") else f2) for key in self.heads}
        if self.objective.supcon:
            reps = {key: F.normalize(v, dim=-1) for key, v in reps.items()}
        return reps

    def embed(
        self, x1: Tensor, x2: Tensor, mask1: Tensor | None = None, mask2: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The learned representations: ``{"s1", "s2", "u1", "u2"}`` (Z_S1, Z_S2, Z_U1, Z_U2) when
        factorised, else ``{"z1", "z2"}`` (one Z per modality; L2-normalised for SupCon)."""
        x1, x2 = Batch(x1, x2).check_pair()
        return self.represent(self.encode(1, x1, mask1), self.encode(2, x2, mask2))

    # ------------------------------------------------------------------------------------ batch
    def _read(self, batch: Any) -> Batch:
        """The batch, checked; labels as a long [B] vector in [0, num_classes) for supervised methods."""
        b = Batch.from_any(batch)
        b.check_pair()
        if self.objective.needs_labels:
            if b.y is None:
                raise ValueError(f"method {self.objective.name!r} is supervised: the batch must carry labels 'y'")
            b.y = b.class_labels(self.num_classes)
        return b

    def _views(self, b: Batch) -> tuple[Tensor | None, Tensor | None]:
        if not self.objective.needs_views:
            return None, None
        v1 = b.x1_aug
        if v1 is None:
            if self.augment1 is None:
                raise ValueError("the batch has no 'x1_aug' and the model has no augment1")
            v1 = self._augment(self.augment1, b.x1, b.mask1, None)
        v2 = b.x2_aug
        if v2 is None:
            v2 = self._augment(self.augment2 or self.augment1, b.x2, b.mask2, b.x1)
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
    def forward(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The same as :meth:`loss`, so that DistributedDataParallel(model)(batch) computes the loss."""
        return self.loss(batch)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, metrics): the method's loss and every term's estimate in nats (detached 0-dim tensors).

        Metrics named ``bracket/<term>`` are the bound diagnostics of each NCE-CLUB term: its value
        minus the InfoNCE of its own critic's scores. Below 0 the critic is far from optimal and the
        "upper bound" is not one (the trainer warns once).

        Also sets :attr:`critic_inputs`, the detached inputs of the separately trained critics,
        for :meth:`critic_loss`, so the critic steps never re-run the encoders.

        With an initialised process group, this rank's rows are scored against candidates
        gathered from every rank (with gradient) and the loss is the mean over this rank's rows:
        the mean over ranks of the losses (and of the metrics) equals the loss of one process on
        the concatenated batch, and averaging the parameter gradients over ranks (DDP) gives its
        gradient. Every rank must hold the same batch size.
        """
        b = self._read(batch)
        if is_distributed():
            check_same_size(b.x1.shape[0], "batch size", b.x1.device)
        v1, v2 = self._views(b)
        f1, f1v = self._encode_with_view(1, b.x1, v1, b.mask1)
        f2, f2v = self._encode_with_view(2, b.x2, v2, b.mask2)
        reps = self.represent(f1, f2)
        views = self.represent(f1v, f2v) if f1v is not None else {}
        self.critic_inputs = []
        if self.objective.supcon:
            value = supcon_term(reps["z1"], reps["z2"], b.y, self.supcon_temperature)
            return value, {"supcon": value.detach(), "loss": value.detach()}
        values, self.critic_inputs = evaluate_terms(
            self.terms,
            self.estimators,
            reps,
            views,
            b.y,
            conditioning=self.conditioning,
            num_classes=self.num_classes,
            symmetric_shared_keep=self.symmetric_shared_keep,
        )
        total = sum(spec.sign * values[spec.name] for spec in self.terms)
        metrics = {name: v.detach() for name, v in values.items()}
        metrics["loss"] = total.detach()
        # Every NCE-CLUB estimator records its bracket (value minus its own scores' InfoNCE) as it
        # runs. Sorted, not set order: the trainer averages metrics over ranks by position, and
        # string hashing (so set order) differs between processes.
        for term in sorted(UPPER_BOUND_TERMS & values.keys()):
            metrics[f"bracket/{term}"] = self.estimators[term].last_bracket
        return total, metrics

    def critic_loss(self, inputs: list[CriticInput] | None = None) -> Tensor:
        """The separately trained critics' loss on ``inputs`` (default: :attr:`critic_inputs` of the
        last :meth:`loss`): NCE-CLUB critics' InfoNCE, chain marginals, sampled proposals.

        Trains only :meth:`critic_parameters`; zero (with no graph) when there is nothing to train:
        no inputs, or every part already fitted for this batch (a lower bound's proposals are fitted
        on the first critic step after a loss). Each call counts as a critic step of this batch.
        """
        inputs = self.critic_inputs if inputs is None else inputs
        if not inputs:
            return torch.zeros((), device=self.device)
        losses = [loss for loss in (item.loss() for item in inputs) if loss.requires_grad]
        if not losses:  # every part was fitted on an earlier critic step of this batch: nothing to train
            return torch.zeros((), device=self.device)
        return sum(losses[1:], losses[0])

    def shared_scorer(self) -> Callable[[Tensor, Tensor], Tensor]:
        """A cross-modal scorer for :class:`augment.UniqueAugment` from the shared critic (see
        :func:`factorcl.scorer.shared_scorer`)."""
        return shared_scorer(self)

    @property
    def has_critic_step(self) -> bool:
        """Whether the method has critics trained by :meth:`critic_loss`."""
        return bool(self.critic_parameters())
