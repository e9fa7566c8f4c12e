"""Benchmarks: quality and speed figures (``fraud bench ...``)."""
