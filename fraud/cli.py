"""The ``fraud`` console command. The only place that reads the environment."""
from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from fraud.errors import FraudError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fraud-graph")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Fraud and anomaly detection: simulate, validate, train, score, serve, review, benchmark."""
    from fraud.config import Settings

    ctx.obj = Settings.from_env()


@main.group()
def bench() -> None:
    """Benchmarks (speed and quality figures)."""


def _register_all() -> None:
    import fraud.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        if hasattr(mod, "register"):
            mod.register(main, bench)


_register_all()


def run() -> int:
    try:
        rv = main(standalone_mode=False)
    except FraudError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())


def entry() -> None:
    """Console-script entry point: FraudError becomes a one-line message and exit code 2."""
    sys.exit(run())
