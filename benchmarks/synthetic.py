"""Synthetic shared/unique benchmark (Figure 4.1, Table 4.1): the full sweep by default.

    python benchmarks/synthetic.py                 # 6 ratios x 3 seeds, all methods, both critics
    python benchmarks/synthetic.py --quick         # the `factorcl synthetic` quickstart sweep
    python benchmarks/synthetic.py --ourcl --out results.json

Prints the accuracy table, the MI-probing table and the PASS/FAIL claims; writes JSON and a PNG.
"""

from __future__ import annotations

import sys

from factorcl.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``--quick`` runs the reduced quickstart sweep instead of the full one."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in argv:
        argv.remove("--quick")
    elif "--full" not in argv:
        argv.insert(0, "--full")
    if "--out" not in argv:
        argv += ["--out", "synthetic_results.json"]
    return cli_main(["synthetic", *argv])


if __name__ == "__main__":
    sys.exit(main())
