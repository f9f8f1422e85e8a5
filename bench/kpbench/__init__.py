"""Helpers shared by the benchmarks in ``bench/``: servers, apps, data, load."""
