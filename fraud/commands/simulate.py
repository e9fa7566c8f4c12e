"""fraud simulate; fraud bench simulate (its code: ``benchmarks.simulate``)."""
from __future__ import annotations

import json

import click


def _summary(df) -> str:
    counts = df["scenario"].value_counts().sort_index()
    per = ", ".join(f"{int(k)}={int(v)}" for k, v in counts.items() if k > 0)
    return (f"{len(df)} transactions, {df['customer_id'].nunique()} customers, "
            f"{df['terminal_id'].nunique()} terminals, {int(df['label'].sum())} frauds "
            f"({df['label'].mean():.3%}); per scenario: {per or 'none'}")


def _world_options(f):
    opts = [
        click.option("--customers", default=5000, show_default=True, type=click.IntRange(min=1),
                     help="Number of customers (cards)."),
        click.option("--terminals", default=10000, show_default=True, type=click.IntRange(min=1),
                     help="Number of terminals."),
        click.option("--days", default=183, show_default=True, type=click.IntRange(min=1),
                     help="Number of days."),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def register(main: click.Group, bench: click.Group) -> None:
    @main.command()
    @_world_options
    @click.option("--start", default="2018-04-01", show_default=True, help="First day (UTC).")
    @click.option("--out", required=True, type=click.Path(dir_okay=False),
                  help="Output file (.parquet or .csv).")
    def simulate(customers, terminals, days, seed, start, out):
        """Simulate a labelled world (genuine traffic and fraud scenarios 1-6) and write it."""
        from fraud.errors import ConfigError
        from fraud.io import write_transactions
        from fraud.simulate import simulate as run_sim

        if not str(out).lower().endswith((".parquet", ".pq", ".csv")):
            raise ConfigError(f"--out: {out!r} has unknown file type; use .csv or .parquet")
        df = run_sim(customers=customers, terminals=terminals, days=days, seed=seed, start=start,
                     progress=True)
        path = write_transactions(df, out)
        click.echo(f"wrote {path}: {_summary(df)}")

    @bench.command("simulate")
    @_world_options
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def bench_simulate(customers, terminals, days, seed, as_json):
        """Time the simulator; peak memory = ru_maxrss of a child process that runs it."""
        from rich.console import Console

        from benchmarks.simulate import run_simulate, table

        with Console(stderr=True).status(f"simulating {customers} customers, {terminals} terminals, {days} days"):
            out, raw = run_simulate(customers, terminals, days, seed)
        click.echo(json.dumps(out) if as_json else table(out, raw, customers, terminals, days, seed))
