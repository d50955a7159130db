"""The benchmark scripts: run as ``python benchmarks/NAME.py ...``, imported as ``benchmarks.NAME``.

Not part of the installed package. From the repository root ``import benchmarks.NAME`` works as it
is (the tests do this; pytest puts the root on ``sys.path`` through ``pythonpath`` in
pyproject.toml). A script reaches its siblings (``_common``, the shared helpers; ``_published``, the
published reference code; ...) with the same two-branch import, and no ``sys.path`` edits::

    if __package__:  # imported as benchmarks.NAME
        from . import _common
    else:  # run as python benchmarks/NAME.py: Python put this folder first on sys.path
        import _common
"""
