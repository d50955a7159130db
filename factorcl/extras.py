"""Optional dependencies: which extra of ``pip install "factorcl[EXTRA]"`` brings what, and :func:`require`.

``pip install factorcl`` is enough for :mod:`bounds`, the tensor augmentations, the model, the trainer
and the commands on vector data (``factorcl synthetic``, ``train``, ``probe``, ``plot``). The extras:

- ``images``: kornia (:class:`augment.ImageAugment`), albumentations
  (:func:`augment.albumentations_pipeline`), timm (``timm:NAME`` encoders);
- ``shards``: webdataset (array pairs in webdataset shards: ``data.kind: shards``, ``factorcl to-shards``);
- ``clip``: open_clip_torch, timm, webdataset, pillow and kornia (:mod:`factorcl.clip`, ``factorcl clip``);
- ``quantify``: cvxpy, scipy (the CVX estimator of ``factorcl quantify``);
- ``wandb``, ``tensorboard``: the run loggers; ``all``: every extra.

Every optional import goes through :func:`require`, whose :class:`MissingExtraError` names the extra;
the command line reports it as an error message. The helper is defined in :mod:`augment` (which cannot
import factorcl) and is the same object here.
"""

from augment._extras import MissingExtraError, require

__all__ = ["MissingExtraError", "require"]
