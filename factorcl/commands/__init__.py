"""Subcommands of the ``factorcl`` command line.

Each module defines ``register(subparsers)`` that adds one subcommand whose parser sets
``func=callable(args) -> int``. Modules are imported only to build the parser, so they keep heavy
imports (open_clip, timm) inside their ``func``. A module whose import needs an extra that is not
installed (:class:`factorcl.extras.MissingExtraError`) is listed as such, and using it names the extra.
"""
