"""Benchmarks: `make bench` runs every `bench/bench_*.py` (each has `run() -> dict[str, float]`)."""
