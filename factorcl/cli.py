"""The ``factorcl`` command line: every module in :mod:`factorcl.commands` is a subcommand.

A command whose module needs an extra that is not installed (``clip`` without open_clip) stays listed;
using it prints which extra to install, as does any command that reaches a missing extra while it runs.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .extras import MissingExtraError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each module of ``factorcl.commands`` adds its subcommand via ``register``."""
    parser = argparse.ArgumentParser(
        prog="factorcl",
        description="Factorized contrastive learning (FactorCL): benchmarks, training and evaluation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            try:
                module = importlib.import_module(f"{commands.__name__}.{info.name}")
            except MissingExtraError as exc:
                _register_missing(sub, info.name, exc)
            else:
                module.register(sub)
    return parser


def _register_missing(sub: argparse._SubParsersAction, name: str, exc: MissingExtraError) -> None:
    """A stand-in for subcommand ``name`` whose module needs ``exc``'s extra: any use of it raises ``exc``."""
    text = str(exc).replace("%", "%%")  # argparse %-formats help strings
    # No option prefix: every argument (--help included) is taken as is, so each use gets the message.
    p = sub.add_parser(name, help=f"not installed: {text}", description=text, add_help=False, prefix_chars="\0")
    p.add_argument("args", nargs=argparse.REMAINDER)

    def unavailable(args: argparse.Namespace) -> int:
        raise exc

    p.set_defaults(func=unavailable)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except MissingExtraError as exc:
        print(f"factorcl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
