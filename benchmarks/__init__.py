"""Benchmarks: run with `make bench` (all) or `python -m benchmarks.<name>`. Never part of `make test`."""
