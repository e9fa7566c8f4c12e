"""Benchmarks that live outside the product: harnesses that drive the product from the outside
(``benchmarks.faults``: ``fraud bench faults``, issue 13's acceptance benchmark)."""
