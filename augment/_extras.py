"""Optional dependencies, imported on first use: :func:`require` names the extra that installs one.

``pip install factorcl`` brings only what :mod:`bounds`, the tensor augmentations, the model and the
trainer need; the rest comes with the extras of pyproject.toml (``images``, ``shards``, ``clip``, ``quantify``,
``wandb``, ``tensorboard``, ``all``). The helper lives here because :mod:`augment` is the lowest
package that needs it and must not import :mod:`factorcl`; factorcl uses it as :mod:`factorcl.extras`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]

#: Import names whose pip distribution is named otherwise (the rest are installed under their own name).
DISTRIBUTIONS = {"open_clip": "open_clip_torch", "PIL": "pillow"}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """``module`` imported, or a :class:`MissingExtraError` that says which extra brings it.

    ``what`` names the feature that needs it, as the message's subject::

        open_clip = require("open_clip", "clip", "factorcl.clip")
        # MissingExtraError: factorcl.clip needs open_clip_torch: pip install "factorcl[clip]"

    When the module is there but one of its own imports fails, that failure is quoted too.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        message = f'{what} needs {DISTRIBUTIONS.get(top, top)}: pip install "factorcl[{extra}]"'
        if exc.name is None or exc.name.partition(".")[0] != top:
            message += f" (importing {module} failed: {exc})"
        raise MissingExtraError(message) from exc
