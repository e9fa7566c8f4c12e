"""fraud compile (its code: ``fraud.warmup``)."""
from __future__ import annotations

import click


def register(main: click.Group, bench: click.Group) -> None:
    @main.command("compile")
    def compile_kernels():
        """Compile the numba kernels into their on-disk cache (once after install: `make install` and the
        Docker image run it), so a scorer's first start and its restarts load them instead of compiling."""
        from fraud.warmup import warm_kernels

        seconds = warm_kernels()
        click.echo(f"kernels compiled and cached in {seconds:.1f}s")
