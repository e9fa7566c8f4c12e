"""Benchmarks and ablations, outside the product: each module runs the product from the outside and
measures it (``fraud bench ...``; the click commands in ``fraud.commands`` only parse options and call
here). Benchmarks may import ``fraud``, ``models`` and ``streaming``; never the reverse. Result tables:
docs/benchmarks.md."""
