"""fraud validate."""
from __future__ import annotations

import click

from fraud.commands.common import data_options


def register(main: click.Group, bench: click.Group) -> None:
    @main.command()
    @data_options()
    @click.option("--max-problems", default=50, show_default=True, help="Problems to print (all go to --rejects).")
    def validate(data, columns, preset, rejects, max_problems):
        """Check a transaction file: summary and each problem; exit 1 if any row is bad."""
        from fraud.io import read_transactions

        rep = read_transactions(data, columns=columns, preset=preset, rejects=rejects)
        v = rep.valid
        click.echo(f"file: {data}")
        click.echo(f"rows: {rep.n_rows}  valid: {rep.n_valid}  rejected: {rep.n_rejected}")
        if len(v):
            click.echo(f"time span: {v['timestamp'].min()} .. {v['timestamp'].max()}")
            click.echo(f"customers: {v['customer_id'].nunique()}  terminals: {v['terminal_id'].nunique()}")
            if "label" in v:
                click.echo(f"frauds: {int(v['label'].sum())} ({v['label'].mean():.3%})")
            if "scenario" in v:
                counts = v.loc[v["scenario"] > 0, "scenario"].value_counts().sort_index()
                if len(counts):
                    click.echo("scenarios: " + ", ".join(f"{k}={n}" for k, n in counts.items()))
        for m in rep.messages(limit=max_problems):
            click.echo(f"problem: {m}")
        if len(rep.problems) > max_problems:
            click.echo(f"... and {len(rep.problems) - max_problems} more problem(s)")
        if rejects:
            click.echo(f"rejects written to {rejects}")
        if not rep.ok:
            raise click.exceptions.Exit(1)
