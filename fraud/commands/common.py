"""Options shared by every command that reads transactions."""
from __future__ import annotations

import functools

import click


def data_options(required: bool = True, rejects: bool = True):
    """--data, --columns, --preset (and --rejects) on a command."""

    def deco(f):
        opts = [
            click.option("--data", "data", type=click.Path(dir_okay=False), required=required,
                         help="Transactions file (.csv or .parquet)."),
            click.option("--columns", "columns", default=None, metavar="MAP",
                         help="Column mapping canonical=SOURCE,... e.g. tx_id=TRANSACTION_ID,timestamp=TX_DATETIME"),
            click.option("--preset", "preset", default=None, type=click.Choice(["handbook", "canonical"]),
                         help="Named column mapping (handbook = the Fraud Detection Handbook's columns)."),
        ]
        if rejects:
            opts.append(click.option("--rejects", "rejects", type=click.Path(dir_okay=False), default=None,
                                     help="Write bad rows (with line and reason) to this .csv/.parquet."))
        for o in reversed(opts):
            f = o(f)
        return functools.wraps(f)(f)

    return deco


def load_or_fail(data, columns, preset, rejects=None, allow_bad: bool = True):
    """Read and validate; print a summary of problems to stderr; return the valid frame."""
    from fraud.io import read_transactions

    report = read_transactions(data, columns=columns, preset=preset, rejects=rejects)
    if not report.ok:
        click.echo(f"{report.n_rejected} bad row(s) of {report.n_rows} in {data} were rejected"
                   f"{' (written to ' + str(rejects) + ')' if rejects else ''}:", err=True)
        for m in report.messages(limit=20):
            click.echo(f"  {m}", err=True)
        if len(report.problems) > 20:
            click.echo(f"  ... and {len(report.problems) - 20} more problem(s)", err=True)
        if not allow_bad:
            raise click.ClickException("input has bad rows")
    return report.valid
