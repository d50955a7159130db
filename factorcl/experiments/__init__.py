"""Reproductions of the paper's experiments, shared by the command line and ``benchmarks/``."""
