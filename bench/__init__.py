"""Benchmarks: run with ``python -m bench.ingress`` from the repository root."""
